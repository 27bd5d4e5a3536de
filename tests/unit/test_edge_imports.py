"""What an edge agent process imports: its own layers, never the cloud's heavy libraries.

An edge is a small device; every library it imports and never uses costs memory for the
process's whole life (SQLAlchemy and Alembic alone are some 30 MB). The check runs the edge's
entry point's imports (``hybridai edge run``: the CLI and the edge app) in a fresh interpreter
and reads its ``sys.modules``; the edge's idle RSS is measured by ``bench/serving.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

CLOUD_ONLY = (
    "sqlalchemy",  # the metadata store
    "alembic",
    "mako",
    "duckdb",  # the lake
    "deltalake",
    "pandas",
    "sklearn",  # training
    "scipy",
    "torch",
    "onnx",  # export, variants
    "grpc",  # only with HYBRIDAI_EDGE_GRPC_PORT set
    "fsspec",  # blob stores
    "argon2",  # people's passwords
)
# Edge libraries loaded only when their work comes: pyarrow (some 40 MB resident) when a
# record chunk, an Arrow body or a sync batch is built; an edge that only serves does neither.
LAZY = ("pyarrow",)

EDGE_ENTRY = """
import json, sys
import hybridai.cli.main
import hybridai.cli.edge
from hybridai.edge.app import create_app
print(json.dumps(sorted(m for m in sys.modules)))
"""


def test_the_edge_imports_none_of_the_clouds_libraries() -> None:
    out = subprocess.run(
        [sys.executable, "-c", EDGE_ENTRY], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}

    assert sorted(loaded & set(CLOUD_ONLY)) == []
    assert sorted(loaded & set(LAZY)) == []
    assert {"onnxruntime", "uvicorn", "hybridai"} <= loaded  # what it does need is there
