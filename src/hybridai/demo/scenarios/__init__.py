"""The use cases ``hybridai demo --scenario NAME`` plays and ``bench/usecases.py`` measures.

Each is one module with a ``UseCase`` (``base.py``); adding one is adding a module and a line
to ``SCENARIOS``. ``pm`` is also the default demo's story (``demo/scenario.py``), which tells
more of the platform (rollouts, an outage); ``--scenario pm`` runs that story.
"""

from __future__ import annotations

from hybridai.demo.scenarios.base import UseCase
from hybridai.demo.scenarios.fraud import Fraud
from hybridai.demo.scenarios.maintenance import Maintenance
from hybridai.demo.scenarios.network import Network

__all__ = ["SCENARIOS", "UseCase", "get"]

SCENARIOS: dict[str, type[UseCase]] = {"pm": Maintenance, "fraud": Fraud, "network": Network}


def get(name: str) -> UseCase:
    """The named use case; ``KeyError`` names the known ones."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    return SCENARIOS[name]()
