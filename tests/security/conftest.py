"""Adversarial tests against real processes: a cloud and an edge shared by the suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _hostile import DEVICE, SITE

from _fleet import local_fleet
from hybridai.demo.fleet import LocalFleet


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """A cloud and one enrolled edge, shared by the security suite."""
    workspace = tmp_path_factory.mktemp("security") / "fleet"
    with local_fleet(workspace) as fleet:
        fleet.start_edge(DEVICE, SITE)
        fleet.wait_enrolled(1)
        yield fleet
