"""A seeded predictive-maintenance plant: machines that wear out, fail and get repaired.

Each machine carries a hidden wear level that grows every tick at its own rate. The sensors see
wear only through non-linear, noisy, machine-offset readings, so a small tree predicts failures
decently and a bigger gradient-boosted model clearly better: the edge/cloud split the demo shows.
The same seed always gives the same plant, so runs, tests and benchmarks are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hybridai.protocol.registry import TrainingSpec

FEATURES: tuple[str, ...] = ("vibration", "temperature", "pressure", "rpm")
HORIZON_TICKS = 30
TICK_S = 60.0
HORIZON_S = HORIZON_TICKS * TICK_S  # a reading is positive if its machine fails this soon

# Wear grows by 1/400 .. 1/150 per tick: with noise, a machine fails every ~150-400 ticks.
_RATE_RANGE = (1 / 400, 1 / 150)


@dataclass
class _Machine:
    machine_id: str
    rate: float
    wear: float
    vibration: float
    temperature: float
    pressure: float
    rpm: float


def _readings(machine: _Machine, rng: np.random.Generator) -> dict[str, float]:
    """Read the sensors at this wear: sharp, curved or noisy, never a plain copy of it."""
    w = machine.wear
    noise = rng.normal(size=4)
    vibration = machine.vibration * (1 + 0.1 * w) + 1.5 * np.exp(25 * (w - 1)) + 0.15 * noise[0]
    temperature = machine.temperature + 8 * w**3 + 1.5 * noise[1]
    pressure = machine.pressure + 0.4 * w + (0.05 + 0.6 * w**4) * noise[2]
    rpm = machine.rpm - 40 * w**4 + 10 * noise[3]
    values = (vibration, temperature, pressure, rpm)
    return {name: round(float(v), 4) for name, v in zip(FEATURES, values, strict=True)}


def _shifted(readings: dict[str, float], factor: float) -> dict[str, float]:
    if not factor:
        return readings
    return {
        **readings,
        "vibration": round(readings["vibration"] * (1 + factor), 4),
        "temperature": round(readings["temperature"] + 10 * factor, 4),
        "rpm": round(readings["rpm"] - 50 * factor, 4),
    }


class Plant:
    """A set of machines stepped tick by tick; all randomness comes from ``seed``."""

    def __init__(
        self, machine_ids: list[str], seed: int, start_ts: float, tick_s: float = TICK_S
    ) -> None:
        if not machine_ids:
            raise ValueError("a plant needs at least one machine")
        if len(set(machine_ids)) != len(machine_ids):
            raise ValueError("machine ids must be unique")
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self._rng = np.random.default_rng(seed)
        self._tick_s = tick_s
        self._start_ts = start_ts
        self._ticks = 0
        self._machines = [self._new_machine(machine_id) for machine_id in machine_ids]
        self._drift = 0.0

    def drift(self, factor: float) -> None:
        """Shift the sensors from now on (recalibrated, aged or swapped): 0 is no drift.

        Vibration reads ``1 + factor`` times higher, temperature ``10 * factor`` degrees hotter
        and rpm ``50 * factor`` lower; wear and failures are unchanged, so a model trained
        before the shift sees inputs unlike its training data for the same machine states.
        """
        self._drift = float(factor)

    def _new_machine(self, machine_id: str) -> _Machine:
        rng = self._rng
        return _Machine(
            machine_id=machine_id,
            rate=float(rng.uniform(*_RATE_RANGE)),
            wear=float(rng.uniform(0.0, 0.8)),  # staggered, so failures do not all coincide
            vibration=float(rng.normal(1.0, 0.15)),
            temperature=float(rng.normal(60.0, 3.0)),
            pressure=float(rng.normal(5.0, 0.3)),
            rpm=float(rng.normal(1500.0, 25.0)),
        )

    @property
    def ts(self) -> float:
        """The timestamp the next ``step`` will carry."""
        return self._start_ts + self._ticks * self._tick_s

    def step(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Advance one tick: one telemetry record per machine, and any failure events.

        A machine whose wear crosses 1.0 fails at this tick and is repaired at once, so its
        reading at this tick already shows the repaired machine.
        """
        ts = self.ts
        telemetry: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for machine in self._machines:
            growth = machine.rate * (1 + 0.5 * self._rng.normal())
            machine.wear += max(growth, 0.0)
            if machine.wear >= 1.0:
                failures.append({"ts": ts, "machine_id": machine.machine_id, "kind": "failure"})
                machine.wear = float(self._rng.uniform(0.0, 0.05))
            record: dict[str, Any] = {"ts": ts, "machine_id": machine.machine_id}
            record.update(_shifted(_readings(machine, self._rng), self._drift))
            telemetry.append(record)
        self._ticks += 1
        return telemetry, failures


def labelled_holdout(
    seed: int, machines: int = 12, ticks: int = 1500, horizon_ticks: int = HORIZON_TICKS
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], np.ndarray[Any, np.dtype[np.int64]]]:
    """Features [n, 4] and labels from the simulator's ground truth, for offline evaluation.

    A reading is positive when its machine fails within the next ``horizon_ticks`` ticks; the
    last ``horizon_ticks`` ticks are dropped because their future is not known.
    """
    if ticks <= horizon_ticks:
        raise ValueError("ticks must exceed horizon_ticks, or nothing can be labelled")
    ids = [f"m{i:03d}" for i in range(machines)]
    plant = Plant(ids, seed=seed, start_ts=0.0)
    features = np.zeros((ticks, machines, len(FEATURES)), dtype=np.float32)
    failed = np.zeros((ticks, machines), dtype=bool)
    index = {machine_id: i for i, machine_id in enumerate(ids)}
    for tick in range(ticks):
        telemetry, failures = plant.step()
        for record in telemetry:
            features[tick, index[record["machine_id"]]] = [record[f] for f in FEATURES]
        for event in failures:
            failed[tick, index[event["machine_id"]]] = True
    usable = ticks - horizon_ticks
    labels = np.zeros((usable, machines), dtype=np.int64)
    for tick in range(usable):
        labels[tick] = failed[tick + 1 : tick + 1 + horizon_ticks].any(axis=0)
    return features[:usable].reshape(-1, len(FEATURES)), labels.reshape(-1)


def pm_training_query(horizon_s: float = HORIZON_S) -> str:
    """DuckDB SQL over ``telemetry`` and ``failures`` that labels each reading.

    A reading is positive when the same machine fails in ``(ts, ts + horizon_s]``. Each machine's
    readings in the last ``horizon_s`` of its telemetry are left out: their label is not known
    yet. Rows are ordered so that the same data always gives the same training split.
    """
    return f"""
WITH last_seen AS (
    SELECT machine_id, max(ts) AS last_ts FROM telemetry GROUP BY machine_id
)
SELECT
    t.vibration, t.temperature, t.pressure, t.rpm, t.machine_id,
    CAST(EXISTS (
        SELECT 1 FROM failures f
        WHERE f.machine_id = t.machine_id AND f.ts > t.ts AND f.ts <= t.ts + {horizon_s!r}
    ) AS INTEGER) AS label
FROM telemetry t JOIN last_seen l ON t.machine_id = l.machine_id
WHERE t.ts <= l.last_ts - {horizon_s!r}
ORDER BY t.machine_id, t.ts
""".strip()


PM_TRAINING_QUERY = pm_training_query()


def pm_training_spec(model_name: str = "pm", seed: int = 0) -> TrainingSpec:
    """Describe the demo's model: a tree for the gateway, gradient boosting in the cloud."""
    return TrainingSpec(
        model_name=model_name,
        query=PM_TRAINING_QUERY,
        features=list(FEATURES),
        label="label",
        group="machine_id",
        edge_family="tree",
        cloud_family="gbm",
        seed=seed,
    )
