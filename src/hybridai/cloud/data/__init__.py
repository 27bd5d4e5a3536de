"""The central lake (Delta tables, queried with DuckDB) and the stream schemas declared for it."""
