"""``python -m hybridai`` is the ``hybridai`` command."""

from hybridai.cli.main import cli

cli()
