"""The ``hybridai`` command's own settings, as a client of the cloud: each declared once.

Read from flags, then ``HYBRIDAI_*`` environment variables, then the config file's ``[cli]``
table (``hybridai.config_file``), then defaults. The options of every command are generated
from these fields (``cli/_options.py``), so help, default and variable cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from hybridai import config_file

Output = Literal["table", "json"]


class CliSettings(config_file.FileSettings):
    """Flags, then ``HYBRIDAI_*`` variables, then config.toml's ``[cli]``, then defaults."""

    model_config = SettingsConfigDict(env_prefix="HYBRIDAI_", extra="ignore")
    config_table: ClassVar[str] = "cli"

    cloud_url: str = Field(
        default="https://127.0.0.1:8400",
        description="Cloud API base URL the commands talk to (--cloud).",
    )
    token: SecretStr | None = Field(
        default=None,
        description="API token for the commands (--token); unset: your `hybridai login`, else "
        "the local cloud's DATA_DIR/admin.token (HYBRIDAI_CLOUD_DATA_DIR).",
    )
    ca_file: Path | None = Field(
        default=None,
        description="Platform CA the cloud's certificate must chain to (--ca-file); unset: the "
        "local cloud's DATA_DIR/pki/ca.crt when present (HYBRIDAI_CLOUD_DATA_DIR), else the "
        "system's trust store.",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Password for `hybridai login` and `hybridai user add` instead of a prompt "
        "(for scripts; never put it in a shared config file).",
    )
    output: Output = Field(
        default="table",
        description="How commands print results: table (for people) or json (as --json does).",
    )
    config_dir: Path | None = Field(
        default=None,
        description="Folder of config.toml and of the login session (token, mode 0600); unset: "
        "$XDG_CONFIG_HOME/hybridai, else ~/.config/hybridai. Environment only: it locates the "
        "config file.",
    )


def load() -> CliSettings:
    """The settings as they stand now (the environment may change between calls in tests)."""
    return CliSettings()


def cloud_data_dir() -> Path:
    """Where the local cloud keeps admin.token and pki/ca.crt.

    The cloud's own DATA_DIR setting (HYBRIDAI_CLOUD_DATA_DIR, or ``data_dir`` in config.toml's
    ``[cloud]``), read exactly as `hybridai cloud serve` reads it.
    """
    from hybridai.cloud.settings import CloudSettings

    return CloudSettings().data_dir
