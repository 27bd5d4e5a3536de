"""Stream schemas as the cloud declares them and edges report them, and what may change.

An operator declares a stream's record schema for the whole fleet or for one site
(``PUT /api/v1/streams/{stream}/schema``); each device's desired state carries the schema that
applies to it (its site's, else the fleet's), and the edge enforces it from then on. Schemas
may evolve by gaining fields; a field never changes type, because records already stored, and
the lake column they fill, have that type. The one change allowed is ``number`` to ``integer``:
every integer is a number, so the existing column still holds what comes next.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from hybridai.protocol.policy import FIELD_PATTERN, STREAM_PATTERN
from hybridai.protocol.sync import TIMESTAMP

FieldType = Literal["string", "number", "integer", "boolean"]
FIELD_TYPES: tuple[FieldType, ...] = ("string", "number", "integer", "boolean")
SITE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"  # the same as a device id (protocol.fleet)
_FIELD = re.compile(FIELD_PATTERN)


class SchemaSpec(BaseModel):
    """The shape every record of one stream must have (``ts`` is the store's, never named)."""

    fields: dict[str, FieldType] = Field(description="Field name -> type (ts excluded).")
    required: list[str] = Field(
        default_factory=list, description="Fields every record carries, not null."
    )
    closed: bool = Field(default=False, description="Refuse fields not named in ``fields``.")


class DeclaredSpec(SchemaSpec):
    """What an operator declares: field names checked, required fields typed."""

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, FieldType]) -> dict[str, FieldType]:
        for name in value:
            if name == TIMESTAMP:
                raise ValueError(f"'{TIMESTAMP}' is every record's timestamp: do not declare it")
            if not _FIELD.match(name):
                raise ValueError(f"field name {name!r} must match {FIELD_PATTERN}")
        return value

    @model_validator(mode="after")
    def _required_are_fields(self) -> DeclaredSpec:
        untyped = [name for name in self.required if name not in self.fields]
        if untyped:
            raise ValueError(f"required field(s) {untyped} must also be declared with a type")
        return self


class StreamSchemaDeclaration(DeclaredSpec):
    """A declared schema as stored and listed: the spec, where it applies and who set it."""

    stream: str = Field(pattern=STREAM_PATTERN)
    site: str | None = Field(default=None, description="The site it applies to; None: fleet.")
    updated_at: float = 0.0
    updated_by: str = ""


class StreamSchemaState(BaseModel):
    """How one edge holds the schema its desired state declares for a stream (in status)."""

    applied: bool = Field(description="The declared schema is the one enforced now.")
    error: str | None = Field(
        default=None, description="Why the declaration was refused (the old schema stays)."
    )
    enforced: SchemaSpec | None = Field(
        default=None, description="The schema the edge enforces for the stream now."
    )


class StreamSchemaView(BaseModel):
    """One stream's declarations and how the fleet's devices took them."""

    stream: str
    fleet: StreamSchemaDeclaration | None = None
    sites: dict[str, StreamSchemaDeclaration] = Field(default_factory=dict)
    devices: dict[str, StreamSchemaState] = Field(
        default_factory=dict, description="Per device, from its last status report."
    )


def type_change_allowed(old: FieldType, new: FieldType) -> bool:
    """Whether a field of type ``old`` may be declared ``new`` without breaking stored data."""
    return old == new or (old == "number" and new == "integer")


def conflicts(current: Mapping[str, FieldType], declared: Mapping[str, FieldType]) -> list[str]:
    """Each field whose declared type is not a compatible change of its current one, said why.

    Fields only in ``declared`` are schema evolution (allowed); fields only in ``current`` are
    not touched by the declaration.
    """
    return [
        f"field '{name}' is {current[name]}, cannot become {kind}"
        for name, kind in sorted(declared.items())
        if name in current and not type_change_allowed(current[name], kind)
    ]


def applicable(
    declarations: list[StreamSchemaDeclaration], site: str | None
) -> dict[str, SchemaSpec]:
    """The schema each stream has on a device of ``site``, by stream.

    The site's declaration, else the fleet's: a site's declaration replaces the fleet's for
    that stream whole.
    """
    chosen: dict[str, StreamSchemaDeclaration] = {}
    for declaration in declarations:
        if declaration.site is None:
            chosen.setdefault(declaration.stream, declaration)
        elif declaration.site == site:
            chosen[declaration.stream] = declaration
    return {
        stream: SchemaSpec(fields=d.fields, required=d.required, closed=d.closed)
        for stream, d in sorted(chosen.items())
    }
