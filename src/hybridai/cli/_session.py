"""The CLI's login session: the access token from `hybridai login`, in a user-private file.

Stored as JSON (cloud URL, user, token, expiry) at ``$HYBRIDAI_CONFIG_DIR/token`` (default
``~/.config/hybridai/token``), created with mode 0600 in a 0700 folder; used by every later
command until it expires or `hybridai logout` removes it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hybridai import config_file


def config_dir() -> Path:
    return config_file.config_dir()


def token_path() -> Path:
    return config_dir() / "token"


def save(cloud: str, username: str, token: str, expires_at: float) -> Path:
    """Write the session atomically, never readable by other users, even for an instant."""
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".token.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {"cloud": cloud, "username": username, "token": token, "expires_at": expires_at}, f
        )
    os.replace(tmp, path)
    return path


def load(include_expired: bool = False) -> dict[str, Any] | None:
    """The stored session; None when there is none, it is unreadable, or it expired.

    ``include_expired`` returns an expired one too, so the caller can say when it expired.
    """
    try:
        data = json.loads(token_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        return None
    if expired(data) and not include_expired:
        return None
    return data


def expired(session: dict[str, Any]) -> bool:
    try:
        return float(session.get("expires_at", 0)) <= time.time()
    except (TypeError, ValueError):
        return True


def stored_token() -> str | None:
    session = load()
    token = session.get("token") if session else None
    return token if isinstance(token, str) else None


def clear() -> bool:
    try:
        token_path().unlink()
        return True
    except FileNotFoundError:
        return False
