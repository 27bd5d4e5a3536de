"""The settings an edge obeys from the cloud: one typed model, and how levels of it merge.

An operator sets them for the fleet, a site, a tag (``line=3``) or a device; the cloud merges
the levels that apply to a device (``merge``) and sends the result as the desired state's
``settings`` (``DeviceSettings``: the operator's knobs plus what only the cloud computes, the
site peers and the token verification key). Every field is optional: None means "not set at
this level", so the next less specific level, and finally the edge's own setting, applies.
Unknown keys are refused (``extra="forbid"``): a typo is an error, not a silently ignored knob.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from hybridai.protocol.alerts import HealingOrders
from hybridai.protocol.placement import SitePeer
from hybridai.protocol.policy import STREAM_PATTERN

CompressionMethod = Literal["deadband", "swinging_door"]

Priority = Literal["high", "normal", "low"]
Level = Literal["default", "fleet", "site", "tag", "device"]
LEVELS: tuple[Level, ...] = ("default", "fleet", "site", "tag", "device")  # least specific first
StreamName = Annotated[str, Field(pattern=STREAM_PATTERN)]
MAP_FIELDS = ("stream_priorities", "stream_compression")  # merged stream by stream
_WINDOW_PART = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def window_spans(text: str) -> tuple[tuple[int, int], ...]:
    """``"22:00-06:00[,HH:MM-HH:MM...]"`` as (start, end) minutes of the day; end may wrap."""
    spans: list[tuple[int, int]] = []
    for part in text.split(","):
        m = _WINDOW_PART.match(part)
        if m is None:
            raise ValueError(f"sync window {part.strip()!r}: write HH:MM-HH:MM, e.g. 22:00-06:00")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"sync window {part.strip()!r}: not a time of day")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise ValueError(f"sync window {part.strip()!r} is empty")
        spans.append((start, end))
    return tuple(spans)


def _check_window(text: str) -> str:
    if text.strip():  # empty: sync at any time (overrides a window set at a lower level)
        window_spans(text)
    return text


class _Settings(BaseModel):
    """Dumps without the unset (None) fields: the wire shape and the ETag see only what is set."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class StreamCompression(_Settings):
    """Deadband or swinging-door compression of one stream's slow numeric fields."""

    method: CompressionMethod = "swinging_door"
    fields: dict[str, Annotated[float, Field(ge=0)]] = Field(min_length=1)  # absolute tolerance
    key: list[str] = Field(default_factory=list)  # fields naming a series (e.g. machine)
    max_gap_s: float | None = Field(default=None, gt=0)  # keep a point at least this often


class EdgeConfig(_Settings):
    """Every knob an operator may set for edges, at any level (fleet, site, tag, device)."""

    sync_interval_s: float | None = Field(default=None, gt=0, description="Pause between drains.")
    heartbeat_interval_s: float | None = Field(
        default=None, gt=0, description="Pause between status reports."
    )
    retention_interval_s: float | None = Field(
        default=None, gt=0, description="How often the edge applies its retention periods."
    )
    stream_priorities: dict[StreamName, Priority] | None = Field(
        default=None, description="Sync priority class per stream: high, normal or low."
    )
    stream_compression: dict[StreamName, StreamCompression] | None = Field(
        default=None, description="Deadband / swinging-door compression per stream."
    )
    store_quota_bytes: int | None = Field(
        default=None, ge=1, description="Disk quota of the local store's records."
    )
    batch_max_bytes: int | None = Field(
        default=None, ge=1, description="Most payload bytes per sync batch."
    )
    batch_max_records: int | None = Field(
        default=None, ge=1, description="Most records per sync batch."
    )
    batch_max_wait_s: float | None = Field(
        default=None, ge=0, description="Longest a normal/low batch waits to fill."
    )
    sync_bandwidth_bytes_per_s: float | None = Field(
        default=None, gt=0, description="Cap on the sync upload rate, bytes/s."
    )
    sync_window: Annotated[str, AfterValidator(_check_window)] | None = Field(
        default=None, description="Local times bulk sync may run, e.g. 22:00-06:00."
    )


class DeviceSettings(EdgeConfig):
    """What one device receives: the merged operator knobs and what only the cloud computes.

    Keys this edge does not know are ignored rather than refused, so a newer cloud can add a
    knob without older edges rejecting their whole desired state mid-upgrade.
    """

    model_config = ConfigDict(extra="ignore")

    site_peers: list[SitePeer] | None = None  # the device's site's other devices, as reported
    token_public_key: str | None = None  # PEM: the edge checks admin access tokens with it
    healing: HealingOrders | None = None  # what active self-healing actions ask of it


class Merged(BaseModel):
    """Settings merged over levels, and the level each came from (``stream_priorities.x``)."""

    settings: EdgeConfig = Field(default_factory=EdgeConfig)
    sources: dict[str, str] = Field(default_factory=dict)


def merge(levels: Sequence[tuple[str, EdgeConfig]]) -> Merged:
    """Overlay ``levels``, least specific first: a later level's set field wins.

    ``stream_priorities`` and ``stream_compression`` merge stream by stream (a site may tune one
    stream and keep the fleet's others); every other field is replaced whole. ``sources`` names,
    per field (per ``field.stream`` for the maps), the label of the level it came from.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, config in levels:
        for name in EdgeConfig.model_fields:  # a DeviceSettings' cloud-only fields are not merged
            value = getattr(config, name)
            if value is None:
                continue
            if name in MAP_FIELDS:
                values.setdefault(name, {}).update(value)
                sources.update({f"{name}.{stream}": label for stream in value})
            else:
                values[name] = value
                sources[name] = label
    return Merged(settings=EdgeConfig.model_validate(values), sources=dict(sorted(sources.items())))


def tag_order(tags: dict[str, str]) -> list[str]:
    """The order a device's tag levels apply in, least specific first.

    Several matching tags may set the same key; the tag whose key sorts first wins (``line=3``
    over ``zone=a``), so they are applied in reverse key order. Documented in docs/fleet-config.md.
    """
    return [f"{k}={tags[k]}" for k in sorted(tags, reverse=True)]


class SettingsLevel(BaseModel):
    """One level's stored settings, as an operator set them."""

    level: Level
    name: str = ""  # "" for the fleet; the site, ``key=value`` tag or device id otherwise
    settings: EdgeConfig
    updated_at: float
    updated_by: str


class EffectiveSettings(BaseModel):
    """The settings a device (or the fleet) gets, with the level each came from."""

    device_id: str | None = None
    settings: EdgeConfig
    sources: dict[str, str] = Field(default_factory=dict)  # field -> "fleet", "site:a", ...


class AppliedSetting(BaseModel):
    """One setting as an edge runs it: the value, and whether it came from the cloud."""

    value: Any
    source: Literal["local", "cloud"]
