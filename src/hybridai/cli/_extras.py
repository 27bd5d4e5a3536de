"""Installs by role: which extra a command needs, and a plain error when it is missing.

``pip install hybridai`` is the shared core (the CLI, protocol/, serving/, link/,
orchestrator/); ``[edge]`` adds what only an agent imports and ``[cloud]`` the control plane.
A command that runs a tier in this process checks for it first, and any other import of a
tier's package that fails is turned into the same sentence instead of a traceback.
"""

from __future__ import annotations

from importlib.util import find_spec

import typer

from hybridai.cli._api import fail
from hybridai.protocol.placement import Variant as Tier  # a tier's words, declared once

# The top-level modules each extra brings (pyproject.toml's [edge] and [cloud] lists).
TIER_MODULES: dict[Tier, tuple[str, ...]] = {
    "edge": ("paho",),
    "cloud": (
        "sqlalchemy",
        "alembic",
        "deltalake",
        "duckdb",
        "sklearn",
        "skl2onnx",
        "onnx",
        "argon2",
        "pyotp",
        "jinja2",
        "fastapi_offline",
    ),
}


def missing(tier: Tier) -> list[str]:
    """The modules of ``tier`` this Python cannot import (none when the extra is installed)."""
    return [name for name in TIER_MODULES[tier] if find_spec(name) is None]


def tier_of(module: str | None) -> Tier | None:
    """The extra that brings ``module`` (a dotted name), or None when no extra does."""
    top = (module or "").partition(".")[0]
    for tier, modules in TIER_MODULES.items():
        if top in modules:
            return tier
    return None


def not_installed(tier: Tier, modules: list[str]) -> str:
    """What is absent and the command that fixes it (``fail`` prints it as text, not markup)."""
    return (
        f"the {tier} tier is not installed (no module named {modules[0]}): "
        f"pip install 'hybridai[{tier}]' (or 'hybridai[all]')"
    )


def require(*tiers: Tier) -> None:
    """Exit 1 with the install command unless every one of ``tiers`` is installed."""
    for tier in tiers:
        absent = missing(tier)
        if absent:
            raise fail(not_installed(tier, absent))


def run(app: typer.Typer, args: list[str] | None = None) -> None:
    """Run the command line (``args``, else sys.argv); a missing extra's import: its sentence."""
    try:
        app(args=args)
    except ModuleNotFoundError as exc:
        tier = tier_of(exc.name)
        if tier is None:
            raise
        raise SystemExit(fail(not_installed(tier, [str(exc.name)])).exit_code) from None
