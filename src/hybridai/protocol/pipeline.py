"""Training pipelines declared in a file: a ``pipeline.yaml`` document mapped onto TrainingSpec.

The file reads the way a data scientist thinks about a run (dataset, features, label, model,
edge variant, split, metrics); the cloud receives the flat ``TrainingSpec`` it maps to, so the
API, ``--spec JSON`` and the YAML form all train exactly the same way. Unknown keys are refused:
a misspelt ``edge_budjet`` must not silently train without a budget.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hybridai.protocol.registry import TrainingSpec

EXAMPLE = """\
name: pm
dataset:
  query: SELECT vibration, temperature, pressure, rpm, machine_id, label FROM labelled
features: [vibration, temperature, pressure, rpm]
label: label
group: machine_id           # held-out rows come from unseen machines
model:                      # the cloud variant
  family: mlp               # logistic, tree, forest, gbm, mlp, mlp-torch ([torch] extra)
  params: {hidden_layer_sizes: [64, 32]}
edge:                       # the edge variant: quantize the cloud model, or a smaller family
  quantize: dynamic         # dynamic | static   (or: family: tree)
edge_budget: {metric: accuracy, max_drop: 0.01}
split: {test: 0.25, validation: 0.2, seed: 0}
metrics: [accuracy, f1, roc_auc]
deploy: true
"""

_TOP = {
    "name",
    "dataset",
    "features",
    "label",
    "group",
    "model",
    "edge",
    "edge_budget",
    "split",
    "metrics",
    "deploy",
}


class PipelineError(ValueError):
    """The pipeline file does not describe a run; the message names the key to fix."""


def _section(doc: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise PipelineError(f"'{key}' must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise PipelineError(
            f"unknown key(s) under '{key}': {', '.join(unknown)} "
            f"(known: {', '.join(sorted(allowed))})"
        )
    return value


def pipeline_spec(doc: Any) -> TrainingSpec:
    """Map a parsed pipeline document onto the TrainingSpec the cloud runs."""
    if not isinstance(doc, dict):
        raise PipelineError("a pipeline file is a YAML mapping; see `hybridai model train --help`")
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise PipelineError(
            f"unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(_TOP))})"
        )
    dataset = _section(doc, "dataset", {"query"})
    model = _section(doc, "model", {"family", "params"})
    edge = _section(doc, "edge", {"quantize", "family", "params", "budget"})
    split = _section(doc, "split", {"test", "validation", "seed"})
    if "query" not in dataset:
        raise PipelineError("'dataset.query' is required: DuckDB SQL over the lake's datasets")
    if edge.get("quantize") and edge.get("family"):
        raise PipelineError("'edge' takes either 'quantize' or 'family', not both")
    budget = doc.get("edge_budget", edge.get("budget"))
    cloud_family = model.get("family", "gbm")
    body: dict[str, Any] = {
        "model_name": doc.get("name"),
        "query": dataset["query"],
        "features": doc.get("features"),
        "label": doc.get("label"),
        "group": doc.get("group"),
        "cloud_family": cloud_family,
        "edge_family": edge.get("family", cloud_family if edge.get("quantize") else "tree"),
        "edge_variant": edge.get("quantize", "family"),
        "edge_budget": budget,
        "params": {"cloud": model.get("params") or {}, "edge": edge.get("params") or {}},
        "metrics": doc.get("metrics") or [],
        "deploy": doc.get("deploy", True),
    }
    for key, field in (
        ("test", "test_share"),
        ("validation", "validation_share"),
        ("seed", "seed"),
    ):
        if key in split:
            body[field] = split[key]
    try:
        return TrainingSpec.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PipelineError(f"{where}: {first['msg']}") from None
