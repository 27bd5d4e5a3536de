"""How records enter the edge: HTTP bodies (JSON, MessagePack, Arrow IPC), MQTT, the SDK.

Every carrier goes through ``intake.Ingest``, which checks records against the stream's
schema (``schemas``, ``schema_columns``; declared by the cloud: ``declared_schemas``) and
appends them to the store.
"""
