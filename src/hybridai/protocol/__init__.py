"""The contract: everything that crosses a process boundary, as pydantic schemas.

Imports nothing else of hybridai, so edge, cloud, CLI and any third-party client can share it.
"""
