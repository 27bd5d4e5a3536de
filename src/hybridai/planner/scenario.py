"""The scenario file: sites, devices, links, cloud, models, workloads and policies to compare.

One YAML document, validated by the pydantic models below. ``load`` reports every problem with
the line it sits on (YAML node marks mapped to pydantic's error locations), so a person can fix
a long file without guessing where ``sites.3.devices.0.kind`` is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hybridai.planner.distributions import Dist
from hybridai.protocol.fleet import DeviceKind
from hybridai.protocol.placement import PolicyKind
from hybridai.protocol.policy import DataClass

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Power(_Strict):
    """Electrical draw of a device: idle, and with every core busy (watts)."""

    idle_w: NonNegative = 5.0
    busy_w: NonNegative = 15.0


class Device(_Strict):
    name: str
    kind: DeviceKind
    cores: Annotated[int, Field(ge=1)] = 1  # requests it runs at once
    memory_mb: Positive = 2048
    accelerator: str | None = None
    speed: Positive = 1.0  # service times are divided by this (1: the models' reference device)
    power: Power = Field(default_factory=Power)
    models: list[str] = Field(default_factory=list)  # edge variants it hosts


class Outage(_Strict):
    start_s: NonNegative
    duration_s: Positive


class Link(_Strict):
    """A site's WAN link to the cloud."""

    rtt_ms: Dist = Field(default_factory=lambda: Dist(kind="constant", value=40.0))
    bandwidth_mbps: Positive = 20.0  # uplink; the downlink is taken as the same
    loss: Annotated[float, Field(ge=0, lt=1)] = 0.0  # a lost transfer costs a retransmission
    retransmit_ms: NonNegative = 200.0
    lan_rtt_ms: NonNegative = 0.5  # between devices of the site
    outages: list[Outage] = Field(default_factory=list)


class Site(_Strict):
    name: str
    count: Annotated[int, Field(ge=1)] = 1  # identical sites of this shape (name-1, name-2, ...)
    devices: list[Device] = Field(min_length=1)
    link: Link = Field(default_factory=Link)


class Autoscaling(_Strict):
    min_instances: Annotated[int, Field(ge=1)] = 1
    max_instances: Annotated[int, Field(ge=1)] = 1
    target_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.6
    interval_s: Positive = 60.0
    startup_s: NonNegative = 60.0


class Cloud(_Strict):
    instances: Annotated[int, Field(ge=1)] = 1  # at the start
    workers_per_instance: Annotated[int, Field(ge=1)] = 4
    autoscaling: Autoscaling | None = None
    cost_per_call: NonNegative = 0.0
    cost_per_instance_hour: NonNegative = 0.0
    egress_cost_per_gb: NonNegative = 0.0
    timeout_s: Positive = 2.0  # the edge gives up on a cloud call after this


class Confidence(_Strict):
    """The edge variant's confidence profile: the cascade escalates below its threshold.

    Confidence per answer ~ Beta(alpha, beta), or drawn from measured ``samples``; an answer
    of confidence c is right with probability ``accuracy_at_0 + (accuracy_at_1 -
    accuracy_at_0) * c``.
    """

    alpha: Positive = 4.0
    beta: Positive = 1.5
    accuracy_at_0: Annotated[float, Field(ge=0, le=1)] = 0.5
    accuracy_at_1: Annotated[float, Field(ge=0, le=1)] = 0.99
    # Measured confidences (e.g. the model's on validation rows): drawn from instead of Beta.
    samples: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=list)

    def draw(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        if self.samples:
            return rng.choice(np.asarray(self.samples, dtype=np.float64), n)
        return rng.beta(self.alpha, self.beta, n)

    def accuracy(self, confidence: float) -> float:
        return self.accuracy_at_0 + (self.accuracy_at_1 - self.accuracy_at_0) * confidence

    @property
    def mean_accuracy(self) -> float:
        if self.samples:
            return self.accuracy(float(np.mean(self.samples)))
        return self.accuracy(self.alpha / (self.alpha + self.beta))


class EdgeVariant(_Strict):
    service_ms: Dist
    size_mb: Positive = 5.0
    confidence: Confidence = Field(default_factory=Confidence)


class CloudVariant(_Strict):
    service_ms: Dist
    size_mb: Positive = 500.0
    quality: Annotated[float, Field(ge=0, le=1)] = 0.97


class Model(_Strict):
    name: str
    edge: EdgeVariant
    cloud: CloudVariant
    cascade_threshold: Annotated[float, Field(ge=0)] = 0.5  # escalate when confidence < this
    response_bytes: Annotated[int, Field(ge=0)] = 512


class Burst(_Strict):
    every_s: Positive
    duration_s: Positive
    factor: Positive  # the rate is multiplied by this during a burst


class Arrival(_Strict):
    process: Literal["poisson", "constant"] = "poisson"
    rate_per_s: Positive
    # 24 hourly multipliers of the rate (a working day, a night shift); empty: flat
    daily: list[NonNegative] = Field(default_factory=list)
    bursts: Burst | None = None

    @model_validator(mode="after")
    def _hours(self) -> Arrival:
        if self.daily and len(self.daily) != 24:
            raise ValueError(f"daily needs 24 hourly multipliers, got {len(self.daily)}")
        return self


class Workload(_Strict):
    name: str
    model: str
    device: str  # the device of each site that receives the requests
    sites: list[str] | None = None  # site shapes it runs at; None: every site with that device
    arrival: Arrival
    payload_bytes: Dist = Field(default_factory=lambda: Dist(kind="constant", value=2048.0))
    data_class: DataClass = "internal"
    latency_budget_ms: Positive | None = None


class Sync(_Strict):
    """Edge-to-cloud sync: records kept per request, shipped in batches over the WAN."""

    bytes_per_request: NonNegative = 200.0
    hard_example_bytes: NonNegative = 4096.0  # an escalated input kept for retraining
    interval_s: Positive = 60.0


class Simulation(_Strict):
    probe_interval_s: Positive = 2.0
    queue_budget: Annotated[int, Field(ge=0)] | None = 16
    budget_margin_ms: NonNegative = 250.0
    # A simulated site stands for up to this many identical ones (see docs/planner.md); None:
    # every site is simulated request by request.
    max_sites_per_shape: Annotated[int, Field(ge=1)] | None = None


class Scenario(_Strict):
    name: str
    seed: int = 0
    duration_s: Positive = 3600.0
    sites: list[Site] = Field(min_length=1)
    cloud: Cloud = Field(default_factory=Cloud)
    models: list[Model] = Field(min_length=1)
    workloads: list[Workload] = Field(min_length=1)
    sync: Sync = Field(default_factory=Sync)
    policies: list[PolicyKind] = Field(default_factory=lambda: list(PolicyKind), min_length=1)
    simulation: Simulation = Field(default_factory=Simulation)

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)


class ScenarioError(ValueError):
    """A scenario that cannot be used; ``problems`` are ``(line or None, where, message)``."""

    def __init__(self, source: str, problems: list[tuple[int | None, str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [
            f"{source}:{line if line is not None else '?'}: {where}: {message}"
            for line, where, message in problems
        ]
        super().__init__("\n".join(lines))


Loc = tuple[str | int, ...]


def _lines(node: yaml.Node, path: Loc = (), out: dict[Loc, int] | None = None) -> dict[Loc, int]:
    """Every path in the YAML tree -> its 1-based line (keys point at the key's line)."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            out[child] = key.start_mark.line + 1
            _lines(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)
    return out


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of the deepest part of ``loc`` the file has (a missing key: its parent)."""
    for end in range(len(loc), -1, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None


def _where(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def _cross_references(s: Scenario) -> list[tuple[Loc, str]]:
    """Names that must refer to something declared elsewhere in the file."""
    problems: list[tuple[Loc, str]] = []
    models = {m.name for m in s.models}
    shapes = {site.name: site for site in s.sites}
    for i, site in enumerate(s.sites):
        for j, device in enumerate(site.devices):
            for k, name in enumerate(device.models):
                if name not in models:
                    problems.append((("sites", i, "devices", j, "models", k), _unknown(name)))
    for i, w in enumerate(s.workloads):
        if w.model not in models:
            problems.append((("workloads", i, "model"), _unknown(w.model)))
        for k, name in enumerate(w.sites or []):
            if name not in shapes:
                problems.append((("workloads", i, "sites", k), f"no site named '{name}' in sites"))
        targets = [shapes[n] for n in (w.sites or shapes) if n in shapes]
        if not any(d.name == w.device for site in targets for d in site.devices):
            problems.append(
                (("workloads", i, "device"), f"no site it runs at has a device '{w.device}'")
            )
    for what, names in (("site", [x.name for x in s.sites]), ("model", list(models))):
        if len(set(names)) != len(names):
            problems.append(((f"{what}s",), f"{what} names must be unique"))
    return problems


def _unknown(name: str) -> str:
    return f"no model named '{name}' in models"


def parse(text: str, source: str = "scenario.yaml") -> Scenario:
    """Validate a scenario given as YAML text; raises ``ScenarioError`` naming lines."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        raise ScenarioError(source, [(line, "(yaml)", str(exc).splitlines()[0])]) from None
    lines = {} if root is None else _lines(root)
    if not isinstance(data, dict):
        raise ScenarioError(source, [(1, "(top)", "a scenario is a mapping (name:, sites:, ...)")])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = [(_line_of(e["loc"], lines), _where(e["loc"]), e["msg"]) for e in exc.errors()]
        raise ScenarioError(source, problems) from None
    found = _cross_references(scenario)
    if found:
        raise ScenarioError(source, [(_line_of(loc, lines), _where(loc), m) for loc, m in found])
    return scenario


def load(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        text = path.read_text()
    except OSError as exc:
        problem = (None, "(file)", f"cannot read it: {exc.strerror}")
        raise ScenarioError(str(path), [problem]) from None
    return parse(text, str(path))
