"""Hard examples close the loop: edge quality before and after one retraining round.

Per seed: an edge model (MLP(16)) and a cloud model (gradient boosting) are trained on 800 rows
of a noisy 3-class problem (a circle and a sine boundary, 8% of labels rotated); the edge
escalates its least confident 30% of field traffic, each escalation becomes a hard example in
the lake exactly as an edge records it, and the edge is retrained with them
(``TrainingSpec.hard_examples``). Three arms, same number of added rows, same pipeline:
- ``hard_cloud``: the escalated rows, labelled by the cloud model (label_source cloud);
- ``random_cloud`` (the baseline): as many field rows drawn at random, labelled by the cloud;
- ``hard_human``: the escalated rows labelled with the truth, as a person would
  (label_source human, labels added through ``hard_examples.add_labels``).
Each arm is judged on 4,000 ground-truth rows no arm saw: accuracy of the edge model where v1
doubted (its least confident 30%: ``*.hard_region_accuracy``) and overall (``*.accuracy``);
``v1.*`` is the model before retraining. Medians over seeds.

Usage: python bench/hard_examples.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import onnxruntime as ort
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, show, write

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines import hard_examples
from hybridai.cloud.pipelines.training import train
from hybridai.edge.routing.hard_examples import hard_example
from hybridai.orchestrator import CascadeRule, Measure
from hybridai.protocol.registry import HardExampleLabel, HardExamplesSpec, TrainingSpec
from hybridai.protocol.tensors import encode
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse, RequestInput

Array = np.ndarray[Any, Any]
RULE = CascadeRule(Measure.MARGIN)
SHARE = 0.3


def query(rows: int, seed: int) -> str:
    x = f"((((i + {seed}) * 7919) % 1000) / 100.0 - 5.0)"
    z = f"((((i + {seed}) * 104729) % 997) / 99.7 - 5.0)"
    clean = (
        f"CASE WHEN {x} * {x} + {z} * {z} < 6.0 THEN 0 WHEN sin({x}) * 2.0 > {z} THEN 1 ELSE 2 END"
    )
    noisy = (
        f"CASE WHEN ((i + {seed}) * 2654435761) % 100 < 8 THEN ({clean} + 1) % 3 ELSE {clean} END"
    )
    return f"SELECT {x} AS x, {z} AS z, {noisy} AS y FROM range({rows}) t(i)"


def rows(n: int, seed: int) -> tuple[Array, Array]:
    got = duckdb.sql(query(n, seed)).fetchnumpy()
    return np.column_stack([got["x"], got["z"]]).astype(np.float32), got["y"].astype(np.int64)


def spec(seed: int, hard: HardExamplesSpec | None = None) -> TrainingSpec:
    return TrainingSpec.model_validate(
        {
            "model_name": "tri",
            "query": query(800, seed),
            "features": ["x", "z"],
            "label": "y",
            "edge_family": "mlp",
            "cloud_family": "gbm",
            "params": {"edge": {"hidden_layer_sizes": [16], "max_iter": 3000}},
            "seed": seed,
            "hard_examples": hard,
        }
    )


def run(artifact: bytes, x: Array) -> tuple[Array, Array]:
    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    label, probabilities = session.run(None, {"input": x})
    return np.asarray(label), np.asarray(probabilities)


def escalate(lake: Lake, artifacts: dict[str, bytes], x: Array) -> None:
    """Commit one hard example per row of ``x``, as the edge agent records an escalation."""
    now = time.time()
    day = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")
    answers = {v: run(artifacts[v], x) for v in ("edge", "cloud")}
    records = []
    for i, row in enumerate(x):
        request = InferenceRequest(
            id=f"req-{i}",
            inputs=[RequestInput(name="input", shape=[1, 2], datatype="FP32", data=row.tolist())],
        )
        responses = {
            v: InferenceResponse(
                model_name="tri",
                model_version="1",
                outputs=[encode("label", label[i : i + 1]), encode("probabilities", p[i : i + 1])],
            )
            for v, (label, p) in answers.items()
        }
        record = hard_example(
            "gw-1", "tri", request, responses["edge"], responses["cloud"], 0.0, RULE, "edge"
        )
        records.append(
            {**record, "record_id": f"gw-1:{i}", "device_id": "gw-1", "site": "a", "date": day}
        )
    lake.commit_batch(hard_examples.STREAM, "gw-1", 1, pa.Table.from_pylist(records))


def one_seed(seed: int, field: int) -> dict[str, float]:
    x_field, y_field = rows(field, 10_000 + seed)
    x_eval, y_eval = rows(4000, 20_000 + seed)
    v1 = train(Lake(tempfile.mkdtemp(prefix="hard-v1-")), spec(seed))
    confidence = RULE.confidences(run(v1.artifacts["edge"], x_field)[1])
    hard = confidence < np.quantile(confidence, SHARE)
    chosen = {
        "hard_cloud": hard,
        "random_cloud": np.random.default_rng(seed).permutation(hard),
        "hard_human": hard,
    }
    eval_confidence = RULE.confidences(run(v1.artifacts["edge"], x_eval)[1])
    region = eval_confidence < np.quantile(eval_confidence, SHARE)

    def judge(name: str, artifact: bytes) -> dict[str, float]:
        label = run(artifact, x_eval)[0]
        return {
            f"{name}.hard_region_accuracy": float((label[region] == y_eval[region]).mean()),
            f"{name}.accuracy": float((label == y_eval).mean()),
        }

    out = judge("v1", v1.artifacts["edge"])
    for arm, mask in chosen.items():
        lake = Lake(tempfile.mkdtemp(prefix=f"hard-{arm}-"))
        escalate(lake, v1.artifacts, x_field[mask])
        source = "cloud"
        if arm == "hard_human":
            truth = [
                HardExampleLabel(request_id=f"req-{i}", label=int(y))
                for i, y in enumerate(y_field[mask])
            ]
            hard_examples.add_labels(lake, "tri", truth, "bench", time.time())
            source = "human"
        v2 = train(lake, spec(seed, HardExamplesSpec(label_source=source)))
        out.update(judge(arm, v2.artifacts["edge"]))
        out[f"{arm}.rows_added"] = float(v2.lineage["hard_examples"]["rows"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 2,000 field rows")
    args = parser.parse_args()
    seeds = [0] if args.quick else [0, 1, 2, 3, 4]
    field = 2000 if args.quick else 6000
    per_seed = [one_seed(seed, field) for seed in seeds]
    metrics = {key: median([s[key] for s in per_seed]) for key in per_seed[0]}
    for arm in ("hard_cloud", "random_cloud", "hard_human"):
        metrics[f"{arm}.hard_region_gain"] = (
            metrics[f"{arm}.hard_region_accuracy"] - metrics["v1.hard_region_accuracy"]
        )
    show("edge accuracy before (v1) and after one retraining round, per arm", metrics)
    notes = {"seeds": seeds, "field_rows": field, "escalated_share": SHARE, "per_seed": per_seed}
    print(write("hard_examples", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
