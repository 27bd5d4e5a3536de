"""The edge's local store: records on disk (SQLite, WAL) until the cloud has acknowledged them.

``edge_store`` is the store itself; ``records`` and ``columns`` the forms records take;
``config`` how each stream is treated; ``batch_selection`` which records form the next sync
batch; ``compression`` deadband and swinging-door; ``quota`` what goes when the disk is full;
``crypto`` encryption at rest; ``metrics`` its Prometheus view. Underscored modules are its
private parts (chunk rows, the dedup index, the SQLite schema, upgrades).
"""

from hybridai.edge.store.edge_store import EdgeStore, InvalidRecord, PendingBatch, StoredRecord

__all__ = ["EdgeStore", "InvalidRecord", "PendingBatch", "StoredRecord"]
