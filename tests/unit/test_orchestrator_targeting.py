"""Rollout targets, pure: which devices a selector picks and which of them can run the model."""

from __future__ import annotations

import inspect

import pytest

import hybridai.orchestrator as orchestrator
from hybridai.orchestrator import rollout, targeting
from hybridai.orchestrator.targeting import (
    MB,
    DeviceFacts,
    ModelNeeds,
    Selector,
    Skipped,
    select_targets,
    unknown_devices,
    unmet,
)

FLEET = (
    DeviceFacts(
        "gw-1", "north", "sensor-gateway", {"line": "3"}, 2, 512, ("CPUExecutionProvider",)
    ),
    DeviceFacts(
        "gw-2", "north", "sensor-gateway", {"line": "4"}, 2, 512, ("CPUExecutionProvider",)
    ),
    DeviceFacts(
        "srv-1",
        "north",
        "edge-server",
        {"line": "3", "zone": "a"},
        16,
        32768,
        ("CUDAExecutionProvider", "CPUExecutionProvider"),
        "nvidia-t4",
    ),
    DeviceFacts(
        "srv-2", "south", "edge-server", {"line": "3"}, 8, 16384, ("CPUExecutionProvider",)
    ),
)


def _picked(selector: Selector, needs: ModelNeeds | None = None) -> tuple[str, ...]:
    return select_targets(selector, FLEET, needs or ModelNeeds()).devices


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (Selector(), ("gw-1", "gw-2", "srv-1", "srv-2")),
        (Selector(sites=frozenset({"north"})), ("gw-1", "gw-2", "srv-1")),
        (Selector(kinds=frozenset({"edge-server"})), ("srv-1", "srv-2")),
        (Selector(tags={"line": "3"}), ("gw-1", "srv-1", "srv-2")),
        # sites, kinds and tags narrow together
        (Selector(sites=frozenset({"north"}), tags={"line": "3"}), ("gw-1", "srv-1")),
        (
            Selector(sites=frozenset({"north"}), kinds=frozenset({"edge-server"})),
            ("srv-1",),
        ),
        (Selector(tags={"line": "3", "zone": "a"}), ("srv-1",)),  # every tag must match
        (Selector(tags={"line": "9"}), ()),
        (Selector(tags={"zone": "3"}), ()),  # a value under another key is no match
        # within one selector, several sites or kinds are alternatives
        (
            Selector(sites=frozenset({"north", "south"}), kinds=frozenset({"edge-server"})),
            ("srv-1", "srv-2"),
        ),
        # named devices add to the rest, and alone select only themselves
        (Selector(devices=frozenset({"gw-2"})), ("gw-2",)),
        (Selector(tags={"zone": "a"}, devices=frozenset({"gw-2"})), ("gw-2", "srv-1")),
    ],
)
def test_selectors(selector: Selector, expected: tuple[str, ...]) -> None:
    assert _picked(selector) == expected


def test_devices_that_cannot_run_the_model_are_skipped_with_the_reason() -> None:
    needs = ModelNeeds(weights_mb=600.0)
    selection = select_targets(Selector(tags={"line": "3"}), FLEET, needs)
    assert selection.devices == ("srv-1", "srv-2")
    assert selection.skipped == (
        Skipped(
            "gw-1",
            "has 512 MB of memory, the model needs 600.0 MB (600.0 MB weights)",
        ),
    )


@pytest.mark.parametrize(
    ("needs", "device", "reason"),
    [
        (ModelNeeds(), "gw-1", None),
        (ModelNeeds(accelerator="nvidia-t4"), "srv-1", None),
        (ModelNeeds(accelerator="nvidia-t4"), "srv-2", "lacks accelerator nvidia-t4 (has none)"),
        (ModelNeeds(execution_provider="CUDAExecutionProvider"), "srv-1", None),
        (
            ModelNeeds(execution_provider="CUDAExecutionProvider"),
            "gw-1",
            "lacks ONNX Runtime provider CUDAExecutionProvider (offers CPUExecutionProvider)",
        ),
        (ModelNeeds(min_cores=4), "gw-2", "has 2 cores, the model needs 4"),
        (ModelNeeds(min_cores=4), "srv-2", None),
        # weights and working memory add up; exactly enough is enough
        (ModelNeeds(weights_mb=500, min_memory_mb=12), "gw-1", None),
        (
            ModelNeeds(weights_mb=500, min_memory_mb=13),
            "gw-1",
            "has 512 MB of memory, the model needs 513.0 MB "
            "(500.0 MB weights + 13 MB working memory)",
        ),
        (
            ModelNeeds(min_memory_mb=1024),
            "gw-2",
            "has 512 MB of memory, the model needs 1024.0 MB (1024 MB working memory)",
        ),
    ],
)
def test_unmet_says_why(needs: ModelNeeds, device: str, reason: str | None) -> None:
    facts = next(d for d in FLEET if d.device_id == device)
    assert unmet(needs, facts) == reason


def test_a_device_that_reports_no_providers_cannot_meet_a_provider_need() -> None:
    bare = DeviceFacts("old", memory_mb=1024)
    assert unmet(ModelNeeds(execution_provider="CPUExecutionProvider"), bare) == (
        "lacks ONNX Runtime provider CPUExecutionProvider (offers none reported)"
    )
    assert unmet(ModelNeeds(weights_mb=3 * 1024**3 / MB), bare) is not None


def test_every_selected_device_is_either_chosen_or_skipped_once() -> None:
    for needs in (ModelNeeds(), ModelNeeds(min_cores=8), ModelNeeds(weights_mb=1e9)):
        for selector in (
            Selector(),
            Selector(tags={"line": "3"}),
            Selector(kinds=frozenset({"x"})),
        ):
            selection = select_targets(selector, reversed(FLEET), needs)
            skipped = tuple(s.device_id for s in selection.skipped)
            assert selection.devices == tuple(sorted(selection.devices))
            assert skipped == tuple(sorted(skipped))
            assert sorted(selection.devices + skipped) == sorted(_picked(selector))
            assert not set(selection.devices) & set(skipped)


def test_unknown_named_devices_are_reported() -> None:
    selector = Selector(devices=frozenset({"gw-1", "ghost", "alien"}))
    assert unknown_devices(selector, FLEET) == ["alien", "ghost"]
    assert unknown_devices(Selector(), FLEET) == []
    assert Selector().everything() and not Selector(tags={"a": "b"}).everything()


@pytest.mark.parametrize("module", [rollout, targeting])
def test_the_package_re_exports_the_public_names(module: object) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == getattr(module, "__name__", None)
    }
    assert public <= set(orchestrator.__all__), public - set(orchestrator.__all__)
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None
