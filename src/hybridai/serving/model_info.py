"""``<prefix>_model_info``: which model versions a server holds, and what each runs on.

An info gauge (always 1) in the Prometheus convention, read from the repository when scraped,
so the execution provider a version really runs on (``serving.providers``) can be joined onto
any other series of that model, and a version that fell back to the CPU is one query away.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hybridai.serving.repository import ModelRepository


class ModelInfoCollector(Collector):
    """One series per loaded version: ``{model, version, provider} 1``."""

    def __init__(self, prefix: str, repository: ModelRepository) -> None:
        self.name = f"{prefix}_model_info"
        self.repository = repository  # replaceable: ``watch`` points it at a newer server's

    def describe(self) -> Iterator[Any]:
        return iter(())  # read at scrape time only

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily(
            self.name,
            "Model versions loaded, with the ONNX Runtime execution provider each runs on.",
            labels=["model", "version", "provider"],
        )
        for model in self.repository.loaded():
            info.add_metric([model.name, model.version, model.provider], 1.0)
        yield info


_WATCHING: weakref.WeakKeyDictionary[CollectorRegistry, ModelInfoCollector] = (
    weakref.WeakKeyDictionary()
)


def watch(registry: CollectorRegistry, prefix: str, repository: ModelRepository) -> None:
    """Report ``repository`` on ``registry``; a later server on the same registry replaces it."""
    collector = _WATCHING.get(registry)
    if collector is None:
        collector = _WATCHING[registry] = ModelInfoCollector(prefix, repository)
        registry.register(collector)
    collector.repository = repository
