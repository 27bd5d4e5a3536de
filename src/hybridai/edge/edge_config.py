"""The settings the agent runs with: its own (local) overlaid by the cloud's, with provenance.

The edge's settings (``EdgeSettings``: flags, environment) are the defaults; whatever the
cloud's desired state sets (``protocol.edge_settings.DeviceSettings``, already merged over fleet,
site, tag and device) wins. ``hybridai edge status`` shows each value and where it came from.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hybridai.edge.settings import EdgeSettings
from hybridai.protocol.edge_settings import AppliedSetting, EdgeConfig, Merged, merge

LOCAL, CLOUD = "local", "cloud"


def local_config(settings: EdgeSettings) -> EdgeConfig:
    """The edge's own values of every cloud-settable knob; one it cannot hold is left out.

    (The data plane reports such a value when it applies the store's rules.)
    """
    values: dict[str, Any] = {}
    for name in EdgeConfig.model_fields:
        value = getattr(settings, name)
        try:
            EdgeConfig.model_validate({name: value})
        except ValidationError:
            continue
        values[name] = value
    return EdgeConfig.model_validate(values)


def effective(local: EdgeConfig, cloud: EdgeConfig | None) -> Merged:
    """``local`` overlaid by ``cloud`` (per stream for the per-stream maps)."""
    levels = [(LOCAL, local)] + ([] if cloud is None else [(CLOUD, cloud)])
    return merge(levels)


def applied(merged: Merged) -> dict[str, AppliedSetting]:
    """Each setting in force, keyed as in ``Merged.sources`` (``stream_priorities.alerts``)."""
    values = merged.settings.model_dump(mode="json")
    out: dict[str, AppliedSetting] = {}
    for key, source in merged.sources.items():
        name, _, stream = key.partition(".")
        value = values.get(name)
        if stream and isinstance(value, dict):
            value = value.get(stream)
        out[key] = AppliedSetting(value=value, source="cloud" if source == CLOUD else "local")
    return out
