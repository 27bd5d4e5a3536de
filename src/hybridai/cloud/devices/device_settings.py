"""Edge settings service: an operator sets them per level; each device gets its merged view.

Levels, least specific first: the cloud's defaults (its own settings), the fleet, the device's
site, its tags (``tag:key=value``; where two tags set one key, the tag key that sorts first
wins, see ``protocol.edge_settings.tag_order``) and the device itself. The merged settings ride
in the device's desired state, whose generation (the ETag) changes with them, so a change wakes
every affected device's long-poll without any in-process signal (correct across replicas).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.settings import CloudSettings
from hybridai.protocol.edge_settings import (
    MAP_FIELDS,
    DeviceSettings,
    EdgeConfig,
    EffectiveSettings,
    Level,
    Merged,
    SettingsLevel,
    merge,
    tag_order,
)
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import DEVICE_ID_PATTERN, check_tags
from hybridai.storage.tables import DeviceRow, FleetSettingsRow

FLEET = "fleet"
_NAME = re.compile(DEVICE_ID_PATTERN)  # sites and devices share the pattern
_CLOUD_ONLY = frozenset(DeviceSettings.model_fields) - frozenset(EdgeConfig.model_fields)
_SCOPE_HELP = "use fleet, site:SITE, tag:KEY=VALUE or device:DEVICE"


def defaults(settings: CloudSettings) -> EdgeConfig:
    """The level below the fleet's: what the cloud's own settings say edges should do."""
    return EdgeConfig(
        sync_interval_s=settings.sync_interval_s,
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )


def parse_scope(scope: str) -> tuple[Level, str]:
    """``fleet``, ``site:plant-a``, ``tag:line=3`` or ``device:gw-1`` as (level, name)."""
    if scope == FLEET:
        return "fleet", ""
    kind, sep, name = scope.partition(":")
    if sep and kind in ("site", "device") and _NAME.match(name):
        return ("site" if kind == "site" else "device"), name
    if sep and kind == "tag":
        key, eq, value = name.partition("=")
        if eq:
            try:
                check_tags({key: value})
            except ValueError as exc:
                raise ApiError(400, ErrorCode.INVALID_INPUT, str(exc)) from None
            return "tag", f"{key}={value}"
    raise ApiError(400, ErrorCode.INVALID_INPUT, f"scope {scope!r} is not valid: {_SCOPE_HELP}")


def label(level: str, name: str) -> str:
    """How a level is named in ``sources`` and the CLI: ``fleet``, ``site:plant-a``, ..."""
    return level if not name else f"{level}:{name}"


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            if where in _CLOUD_ONLY:
                parts.append(f"{where} is computed by the cloud and cannot be set")
            else:
                parts.append(f"unknown setting {where!r}")
        else:
            parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate(raw: Mapping[str, Any]) -> EdgeConfig:
    """An operator's settings, or a 422 naming each bad key and what it needs."""
    try:
        return EdgeConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ApiError(
            422,
            ErrorCode.INVALID_INPUT,
            f"settings refused, nothing changed: {_problems(exc)}. Known settings: "
            f"{', '.join(EdgeConfig.model_fields)} (see docs/fleet-config.md)",
        ) from None


def _view(row: FleetSettingsRow) -> SettingsLevel:
    return SettingsLevel.model_validate(
        {
            "level": row.level,
            "name": row.name,
            "settings": row.settings,
            "updated_at": row.updated_at,
            "updated_by": row.updated_by,
        }
    )


def _require_device(session: Session, level: str, name: str) -> None:
    if level == "device" and session.get(DeviceRow, name) is None:
        raise ApiError(
            404,
            ErrorCode.UNKNOWN_DEVICE,
            f"device {name!r} is not enrolled: see `hybridai fleet list` for the devices",
        )


def set_level(
    session: Session, level: Level, name: str, config: EdgeConfig, actor: str, now: float
) -> SettingsLevel:
    """Set the given (non-None) settings at one level; the level's other settings stay."""
    _require_device(session, level, name)
    row = session.get(FleetSettingsRow, (level, name))
    stored = {} if row is None else dict(row.settings)
    given = config.model_dump(mode="json")
    for field in MAP_FIELDS:  # per stream, like the merge: setting one keeps the others
        if field in given and isinstance(stored.get(field), dict):
            given[field] = {**stored[field], **given[field]}
    merged = EdgeConfig.model_validate({**stored, **given})
    data = merged.model_dump(mode="json")
    if row is None:
        row = FleetSettingsRow(
            level=level, name=name, settings=data, updated_at=now, updated_by=actor
        )
        session.add(row)
    else:
        row.settings, row.updated_at, row.updated_by = data, now, actor
    session.commit()
    return _view(row)


def unset_level(
    session: Session, level: Level, name: str, keys: Iterable[str], actor: str, now: float
) -> SettingsLevel | None:
    """Drop ``keys`` at one level (none given: all of them); None when the level is left empty.

    A key is a setting (``sync_window``) or one stream of a per-stream one
    (``stream_priorities.telemetry``).
    """
    keys = list(keys)
    unknown = sorted(
        k
        for k in keys
        if k.partition(".")[0] not in EdgeConfig.model_fields
        or ("." in k and k.partition(".")[0] not in MAP_FIELDS)
    )
    if unknown:
        raise ApiError(
            422,
            ErrorCode.INVALID_INPUT,
            f"unknown setting {', '.join(unknown)}: known settings are "
            f"{', '.join(EdgeConfig.model_fields)} (per stream: "
            f"{', '.join(f'{m}.STREAM' for m in MAP_FIELDS)})",
        )
    row = session.get(FleetSettingsRow, (level, name))
    if row is None:
        return None
    left = dict(row.settings) if keys else {}
    for key in keys:
        field, _, stream = key.partition(".")
        if stream and isinstance(left.get(field), dict):
            left[field] = {s: v for s, v in left[field].items() if s != stream}
            if not left[field]:
                del left[field]
        elif not stream:
            left.pop(field, None)
    if not left:
        session.delete(row)
        session.commit()
        return None
    row.settings, row.updated_at, row.updated_by = left, now, actor
    session.commit()
    return _view(row)


def list_levels(session: Session) -> list[SettingsLevel]:
    """Every level that sets something, in merge order (fleet, sites, tags, devices)."""
    rows = list(session.scalars(select(FleetSettingsRow)))
    order = {"fleet": 0, "site": 1, "tag": 2, "device": 3}
    return [_view(r) for r in sorted(rows, key=lambda r: (order.get(r.level, 9), r.name))]


def levels_for(
    session: Session, device: DeviceRow | None, defaults: EdgeConfig
) -> list[tuple[str, EdgeConfig]]:
    """The levels that apply to ``device`` (None: the fleet's own), least specific first."""
    stored = {(r.level, r.name): r for r in session.scalars(select(FleetSettingsRow))}
    wanted: list[tuple[str, str]] = [("fleet", "")]
    if device is not None:
        wanted.append(("site", device.site))
        wanted += [("tag", tag) for tag in tag_order(dict(device.tags or {}))]
        wanted.append(("device", device.device_id))
    levels: list[tuple[str, EdgeConfig]] = [("default", defaults)]
    for level, name in wanted:
        row = stored.get((level, name))
        if row is not None:
            levels.append((label(level, name), EdgeConfig.model_validate(row.settings)))
    return levels


def merged_for(
    session: Session,
    device: DeviceRow | None,
    defaults: EdgeConfig,
    above: Sequence[tuple[str, EdgeConfig]] = (),
) -> Merged:
    """``above``: levels over the device's own (self-healing overlays, ``healing:RULE``)."""
    return merge([*levels_for(session, device, defaults), *above])


def effective(
    session: Session,
    device_id: str | None,
    defaults: EdgeConfig,
    above: Sequence[tuple[str, EdgeConfig]] = (),
) -> EffectiveSettings:
    """What ``device_id`` gets (None: what a device with no site, tag or own setting gets)."""
    device = None
    if device_id is not None:
        _require_device(session, "device", device_id)
        device = session.get(DeviceRow, device_id)
    result = merged_for(session, device, defaults, above)
    return EffectiveSettings(device_id=device_id, settings=result.settings, sources=result.sources)


def describe(config: EdgeConfig) -> str:
    """``key=value, ...`` of what a change sets, for the audit log (settings, not records)."""
    data = config.model_dump(mode="json")
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(data.items()))
