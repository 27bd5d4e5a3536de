"""A three-class problem the lake can serve without any table: a query over ``range``.

Two features on a grid scrambled by multiplicative hashing, three classes cut by a circle and a
sine boundary, and 8% of labels rotated to the next class, so a linear edge model is clearly
weaker than a boosted cloud model and the cascade has real errors to escalate.
"""

from __future__ import annotations

from typing import Any

from hybridai.protocol.registry import TrainingSpec

FEATURES = ["x", "z"]
CLASSES = 3


def three_class_query(rows: int = 3000, seed: int = 0) -> str:
    x = f"((((i + {seed}) * 7919) % 1000) / 100.0 - 5.0)"
    z = f"((((i + {seed}) * 104729) % 997) / 99.7 - 5.0)"
    clean = (
        f"CASE WHEN {x} * {x} + {z} * {z} < 6.0 THEN 0 WHEN sin({x}) * 2.0 > {z} THEN 1 ELSE 2 END"
    )
    noisy = (
        f"CASE WHEN ((i + {seed}) * 2654435761) % 100 < 8 THEN ({clean} + 1) % 3 ELSE {clean} END"
    )
    return f"SELECT {x} AS x, {z} AS z, {noisy} AS y FROM range({rows}) t(i)"


def three_class_spec(name: str = "tri", **update: Any) -> TrainingSpec:
    return TrainingSpec.model_validate(
        {
            "model_name": name,
            "query": three_class_query(),
            "features": FEATURES,
            "label": "y",
            "edge_family": "logistic",
            "cloud_family": "gbm",
            **update,
        }
    )
