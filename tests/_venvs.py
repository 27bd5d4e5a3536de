"""Installs by role, built for real: a fresh venv holding one extra of this checkout, its size.

The venv is made with ``python -m venv`` and filled by pip from the package registry (pip's
own cache in ~/.cache/pip is reused); the sources are copied next to it first, so building the
wheel writes nothing into the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What pip leaves in every venv that a running agent never imports (an image drops them).
INSTALLER_DIRS = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel")


def build_venv(where: Path, extra: str | None, timeout_s: float = 900) -> Path:
    """``where/venv`` with ``pip install '.[extra]'`` (the bare package when None); its python."""
    source = where / "source"
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    target = f"{source}[{extra}]" if extra else str(source)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", target],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install '{target}' failed:\n{done.stdout}\n{done.stderr}")
    return python


def tree_bytes(path: Path, skip: tuple[str, ...] = ()) -> int:
    """Disk use of ``path`` as ``du`` counts it (allocated blocks, hard links once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(skip)]
        for name in [*files, *dirs]:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def venv_mb(venv: Path) -> dict[str, float]:
    """The venv's size in MiB as pip left it, and lean: without bytecode caches and pip itself.

    Lean is what a container image built with ``pip install --no-compile`` that then removes
    pip holds (deploy/Dockerfile.edge does both).
    """
    full = tree_bytes(venv)
    lean = tree_bytes(venv, skip=("__pycache__", *INSTALLER_DIRS))
    return {"mb": round(full / 2**20, 1), "lean_mb": round(lean / 2**20, 1)}
