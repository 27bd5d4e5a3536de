"""Rollout targets: which devices a selector picks, and which of those can run the model.

Pure: device facts and the model's needs go in, the chosen devices and the skipped ones (each
with its reason) come out. The cloud driver feeds it the fleet registry at a rollout's start,
so a device that could never load the version is left out up front instead of timing out in a
wave; ``desired_state`` asks the same ``unmet`` question of a model's declared needs.

Selection: ``sites``, ``kinds`` and ``tags`` narrow together (a device must be at one of the
sites, of one of the kinds, and carry every tag); ``devices`` adds devices by name; nothing
given selects the whole fleet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MB = 2**20


@dataclass(frozen=True)
class DeviceFacts:
    """What the registry knows of one device: where it is, its tags, what it offers."""

    device_id: str
    site: str = ""
    kind: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    cores: int = 1
    memory_mb: float = 0.0
    execution_providers: tuple[str, ...] = ()
    accelerator: str | None = None


@dataclass(frozen=True)
class Selector:
    sites: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    tags: Mapping[str, str] = field(default_factory=dict)
    devices: frozenset[str] = frozenset()

    def everything(self) -> bool:
        return not (self.sites or self.kinds or self.tags or self.devices)

    def matches(self, device: DeviceFacts) -> bool:
        if self.everything() or device.device_id in self.devices:
            return True
        if not (self.sites or self.kinds or self.tags):
            return False  # only named devices were asked for
        return (
            (not self.sites or device.site in self.sites)
            and (not self.kinds or device.kind in self.kinds)
            and all(device.tags.get(key) == value for key, value in self.tags.items())
        )


@dataclass(frozen=True)
class ModelNeeds:
    """What a device must offer to run one version's artifact.

    ``weights_mb`` is the artifact the device would load (a floor on the memory it takes);
    ``min_memory_mb`` is the working memory the model's policy declares on top of it.
    """

    weights_mb: float = 0.0
    min_memory_mb: float = 0.0
    accelerator: str | None = None
    execution_provider: str | None = None
    min_cores: int = 0


@dataclass(frozen=True)
class Skipped:
    device_id: str
    reason: str


@dataclass(frozen=True)
class Selection:
    devices: tuple[str, ...]  # selected and able to run the model, sorted
    skipped: tuple[Skipped, ...] = ()  # selected but unable, sorted by device


def unmet(needs: ModelNeeds, device: DeviceFacts) -> str | None:
    """Why ``device`` cannot run the model, in words for the operator; None when it can."""
    if needs.accelerator is not None and device.accelerator != needs.accelerator:
        return f"lacks accelerator {needs.accelerator} (has {device.accelerator or 'none'})"
    provider = needs.execution_provider
    if provider is not None and provider not in device.execution_providers:
        offered = ", ".join(device.execution_providers) or "none reported"
        return f"lacks ONNX Runtime provider {provider} (offers {offered})"
    if device.cores < needs.min_cores:
        return f"has {device.cores} cores, the model needs {needs.min_cores}"
    needed = needs.weights_mb + needs.min_memory_mb
    if device.memory_mb < needed:
        parts = [f"{needs.weights_mb:.1f} MB weights"] if needs.weights_mb else []
        parts += [f"{needs.min_memory_mb:g} MB working memory"] if needs.min_memory_mb else []
        return (
            f"has {device.memory_mb:g} MB of memory, the model needs {needed:.1f} MB "
            f"({' + '.join(parts)})"
        )
    return None


def unknown_devices(selector: Selector, devices: Iterable[DeviceFacts]) -> list[str]:
    """Devices the selector names that the fleet does not hold, sorted."""
    return sorted(selector.devices - {d.device_id for d in devices})


def select_targets(
    selector: Selector, devices: Iterable[DeviceFacts], needs: ModelNeeds
) -> Selection:
    """The devices ``selector`` picks, split into those that can run the model and the rest."""
    chosen: list[str] = []
    skipped: list[Skipped] = []
    for device in sorted(devices, key=lambda d: d.device_id):
        if not selector.matches(device):
            continue
        reason = unmet(needs, device)
        if reason is None:
            chosen.append(device.device_id)
        else:
            skipped.append(Skipped(device.device_id, reason))
    return Selection(tuple(chosen), tuple(skipped))
