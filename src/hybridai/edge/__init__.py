"""The edge layer: the agent that runs next to the data and keeps working offline.

Model host, router, local store, ingest, sync uploader and desired-state reconciler live here.
The edge meets the cloud only through ``hybridai.protocol`` over the wire, never by import.
Its public face for programs is the SDK: ``hybridai.edge.Client``.
"""

from hybridai.edge.client import Client, EdgeError, WriteResult

__all__ = ["Client", "EdgeError", "WriteResult"]
