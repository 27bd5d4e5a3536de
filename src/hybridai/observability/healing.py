"""Self-healing rules: which alert leads to which action, how often, and when it is undone.

Rules are declarative YAML (the cloud's ``healing_rules_file``; the defaults ship beside this
module as ``healing_rules.yaml``). This module parses them and decides, with no I/O and no
clock: which rules an alert triggers, and whether a rule may act again now. Rate limits, two
ways: per rule and subject (``limit``: at most ``max_actions`` in ``window_s``) and fleet-wide
(``max_actions_per_hour``), so a storm of alerts cannot become a storm of restarts. The cloud's
store (``cloud.operations.healing``) carries decisions out, records and audits them.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hybridai.protocol.alerts import ActionKind, Alert, AlertKind, RevertPolicy, Severity

SEVERITY_ORDER: dict[Severity, int] = {"info": 0, "warning": 1, "critical": 2}
RULE_NAME = r"^[a-z][a-z0-9-]{0,62}$"
# Actions that need to know which model they act on
MODEL_ACTIONS: frozenset[ActionKind] = frozenset(
    {"restart_model", "rollback", "route_to_cloud", "route_to_edge"}
)


class HealingRulesError(ValueError):
    """The rules file cannot be used; the message names the file and the problem."""


class RuleLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_actions: int = Field(default=3, ge=1, le=1000)
    window_s: float = Field(default=3600.0, gt=0)


class HealingRule(BaseModel):
    """One rule: on these alert kinds (at least this severe), take this action."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=RULE_NAME)
    when: list[AlertKind] = Field(min_length=1)  # alert kinds (not "on": YAML reads it as true)
    action: ActionKind
    min_severity: Severity = "info"
    revert: RevertPolicy = "on_resolve"
    limit: RuleLimit = Field(default_factory=RuleLimit)
    dry_run: bool = False  # record what it would do, do nothing
    # raise_sync_priority: the sync bandwidth cap (if any) is multiplied by this
    bandwidth_factor: float = Field(default=4.0, gt=1.0, le=1000.0)
    # on_resolve: orders stay this long after the alert resolves (a fault the action only
    # masks comes back at once when lifted); an alert it serves within the hold takes it over
    hold_s: float = Field(default=0.0, ge=0.0, le=86400.0)
    # rollback: only a rollout that started at most this long before the alert is blamed
    rollout_window_s: float = Field(default=3600.0, gt=0)


class HealingRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[HealingRule] = Field(default_factory=list)
    max_actions_per_hour: int = Field(default=60, ge=0)  # fleet-wide; 0 turns healing off

    @model_validator(mode="after")
    def _unique_names(self) -> HealingRules:
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rule names must be unique: {', '.join(twice)} appear(s) twice")
        return self


def parse(text: str, source: str) -> HealingRules:
    """Rules from YAML text; ``source`` names the file in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HealingRulesError(f"{source}: not valid YAML: {exc}") from None
    try:
        return HealingRules.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise HealingRulesError(
            f"{source}: {problems} (see docs/alerts.md for the rule format)"
        ) from None


def default_rules() -> HealingRules:
    text = resources.files(__package__).joinpath("healing_rules.yaml").read_text("utf-8")
    return parse(text, "healing_rules.yaml (built in)")


def load_rules(path: Path | None) -> HealingRules:
    """The rules in ``path``, else the built-in ones."""
    if path is None:
        return default_rules()
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise HealingRulesError(f"{path}: cannot read the healing rules: {exc.strerror}") from None
    return parse(text, str(path))


def matching(rules: HealingRules, alert: Alert) -> list[HealingRule]:
    """The rules ``alert`` triggers, in file order."""
    level = SEVERITY_ORDER[alert.severity]
    return [
        r for r in rules.rules if alert.kind in r.when and level >= SEVERITY_ORDER[r.min_severity]
    ]


def refusal(
    rule: HealingRule,
    taken: Sequence[float],
    fleet_last_hour: int,
    max_per_hour: int,
    now: float,
) -> str | None:
    """Why ``rule`` may not act now (None: it may).

    ``taken``: when this rule acted on this subject before; ``fleet_last_hour``: how many
    actions every rule took in the last hour.
    """
    if fleet_last_hour >= max_per_hour:
        return f"the fleet-wide limit of {max_per_hour} actions an hour is reached"
    recent = sum(1 for t in taken if now - t < rule.limit.window_s)
    if recent >= rule.limit.max_actions:
        return (
            f"rule {rule.name} acted {recent} times on this subject in the last "
            f"{rule.limit.window_s:g} s (limit {rule.limit.max_actions})"
        )
    return None
