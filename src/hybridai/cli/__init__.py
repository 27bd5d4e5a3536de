"""The ``hybridai`` command: the top floor, one module per command group."""
