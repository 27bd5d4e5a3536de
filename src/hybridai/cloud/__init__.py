"""The cloud layer: fleet and model registries, rollout, lake, training and inference backends.

Service modules take their stores (a SQLAlchemy ``Session``, a ``BlobStore``) and the current
time explicitly; routes and commands are thin adapters around them.
"""
