"""The stream schemas of the cloud's desired state, applied at the edge and reported back.

Each declared schema is merged onto what the stream enforces already (``schema.merge``) and
enforced from the next batch on. One that would change a field's type is refused: the stream
keeps its schema and ingest goes on as before, and the status report says which declaration
was refused and why (``StatusReport.stream_schemas``), so the operator sees it in the fleet
view rather than finding records refused. Streams the cloud stops declaring are withdrawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from hybridai.edge.ingest.intake import Ingest
from hybridai.edge.ingest.schemas import SchemaConflict
from hybridai.protocol.streams import SchemaSpec, StreamSchemaState

log = logging.getLogger(__name__)


class DeclaredSchemas:
    """Keeps ``Ingest``'s schemas in line with the desired state; ``apply`` after each one."""

    def __init__(
        self, ingest: Ingest, desired: Callable[[], Mapping[str, SchemaSpec] | None]
    ) -> None:
        self._ingest = ingest
        self._desired = desired
        self._applied: dict[str, SchemaSpec] | None = None
        self._errors: dict[str, str | None] = {}

    def apply(self) -> bool:
        """Apply the declared schemas if they changed (None: no desired state yet)."""
        declared = self._desired()
        if declared is None or declared == self._applied:
            return False
        errors: dict[str, str | None] = {}
        for stream, spec in sorted(declared.items()):
            try:
                self._ingest.declare_schema(stream, spec)
                errors[stream] = None
            except SchemaConflict as exc:
                log.error("%s", exc)
                errors[stream] = str(exc)
        for stream in self._ingest.withdraw_schemas(declared):
            log.info("stream '%s': the cloud no longer declares its schema", stream)
        self._errors = errors
        self._applied = dict(declared)
        return True

    def report(self) -> dict[str, StreamSchemaState]:
        """Per declared stream: applied or refused (why), and the schema enforced now."""
        states: dict[str, StreamSchemaState] = {}
        for stream, error in self._errors.items():
            enforced = self._ingest.schemas.get(stream)
            states[stream] = StreamSchemaState(
                applied=error is None,
                error=error,
                enforced=None
                if enforced is None
                else SchemaSpec(
                    fields=enforced.fields, required=enforced.required, closed=enforced.closed
                ),
            )
        return states
