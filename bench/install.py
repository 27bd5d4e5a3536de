"""Installs by role: how big an edge-only venv is next to the whole platform's.

Builds fresh venvs from this checkout with pip (``python -m venv``, ``pip install '.[edge]'``
and, the baseline, ``'.[all]'``) and measures them as ``du`` does: ``*_venv_mb`` as pip leaves
them, ``*_lean_mb`` without bytecode caches and pip itself (what deploy/Dockerfile.* ship).
Target: edge_venv_mb <= 350. ``--quick`` builds only the edge venv; its baseline is then the
installed size (RECORD files) of hybridai[all]'s dependency closure in the running venv.
Usage: python bench/install.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the venv builder
from _common import show, write

from _venvs import build_venv, venv_mb


def closure_mb(extras: set[str]) -> float:
    """Installed size of hybridai with ``extras`` and everything it pulls, in this venv."""
    seen: set[str] = set()
    total = 0
    todo = [("hybridai", frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        total += sum(f.size or 0 for f in dist.files or [])
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                if req.name.lower() == "hybridai":
                    todo.append(("hybridai", frozenset(req.extras)))
                    seen.discard("hybridai")
                else:
                    todo.append((req.name, frozenset(req.extras)))
    return round(total / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="edge venv only (under a minute)")
    args = parser.parse_args()
    metrics: dict[str, float] = {}
    notes: dict[str, object] = {"target_edge_venv_mb": 350}
    with tempfile.TemporaryDirectory(prefix="hybridai-install-") as tmp:
        started = time.perf_counter()
        edge = venv_mb(build_venv(Path(tmp) / "edge", "edge").parents[1])
        metrics["edge_build_s"] = round(time.perf_counter() - started, 1)
        metrics["edge_venv_mb"] = edge["mb"]
        metrics["edge_venv_lean_mb"] = edge["lean_mb"]
        if args.quick:
            metrics["full_venv_mb"] = closure_mb({"all"})
            notes["baseline"] = "installed size of hybridai[all]'s closure in the running venv"
        else:
            started = time.perf_counter()
            full = venv_mb(build_venv(Path(tmp) / "all", "all").parents[1])
            metrics["full_build_s"] = round(time.perf_counter() - started, 1)
            metrics["full_venv_mb"] = full["mb"]
            metrics["full_venv_lean_mb"] = full["lean_mb"]
            notes["baseline"] = "a fresh venv with pip install '.[all]'"
    metrics["edge_over_full"] = round(metrics["edge_venv_mb"] / metrics["full_venv_mb"], 3)
    notes["edge_target_met"] = metrics["edge_venv_mb"] <= 350
    show("installs by role (MiB)", metrics)
    print(write("install", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
