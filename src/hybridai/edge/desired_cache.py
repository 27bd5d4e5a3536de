"""The desired state this edge runs by, kept apart from the parts that obey it.

``current`` is the newest desired state received: settings, policies, schemas and peers apply
from it at once. ``generation`` (the ETag the agent polls with) moves only once its models are
in place too, and only then is it written to disk, so a restart (or a failed download) asks
the cloud again for anything not yet fully applied, and a restarted edge that cannot reach the
cloud starts from the last one it fully applied.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import ValidationError

from hybridai.protocol.fleet import DesiredState

log = logging.getLogger(__name__)


class DesiredCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: DesiredState | None = None
        self.generation: str | None = None

    def load(self) -> DesiredState | None:
        """The last fully applied desired state on disk (None: none, or unreadable)."""
        if not self.path.exists():
            return None
        try:
            desired = DesiredState.model_validate_json(self.path.read_bytes())
        except (ValidationError, OSError) as exc:
            log.error("cached desired state %s unusable, waiting for the cloud: %s", self.path, exc)
            return None
        self.current = desired
        return desired

    def receive(self, desired: DesiredState) -> None:
        self.current = desired

    def applied(self, desired: DesiredState) -> None:
        """Every part, models included, runs ``desired``: poll for the next one from here."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(desired.model_dump_json())
        os.replace(tmp, self.path)
        self.generation = desired.generation
