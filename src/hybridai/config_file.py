"""The config file every hybridai program reads: one TOML file, one table per program.

It lives at ``$HYBRIDAI_CONFIG_DIR/config.toml``, else ``$XDG_CONFIG_HOME/hybridai/config.toml``,
else ``~/.config/hybridai/config.toml``; a missing file is no error::

    [cli]                  # the hybridai command's client settings (HYBRIDAI_*)
    cloud_url = "https://cloud.example.com:8400"
    [cloud]                # hybridai cloud serve (HYBRIDAI_CLOUD_*); the CLI finds DATA_DIR here
    data_dir = "/var/lib/hybridai/cloud"
    [edge]                 # hybridai edge run (HYBRIDAI_EDGE_*)
    device_id = "gw-1"

Keys are the settings' names (the environment variable without its prefix, lower case). A
command-line flag wins over the environment, the environment over ``.env``, ``.env`` over this
file, and the file over the default. An unknown key is an error, not silence: a typo would
otherwise leave a setting at its default without a word.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

FILE_NAME = "config.toml"


class ConfigFileError(ValueError):
    """The config file cannot be read, or names a setting that does not exist."""


def config_dir() -> Path:
    """The folder of the config file (and of the CLI's login session)."""
    explicit = os.environ.get("HYBRIDAI_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hybridai"


def config_path() -> Path:
    return config_dir() / FILE_NAME


def read_table(table: str, known: set[str]) -> dict[str, Any]:
    """The ``[table]`` of the config file (empty when there is no file or no such table)."""
    path = config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path} is not valid TOML ({exc}): fix or remove it") from None
    values = data.get(table, {})
    if not isinstance(values, dict):
        raise ConfigFileError(f"{path}: [{table}] must be a table of settings")
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigFileError(
            f"{path}: [{table}] has no setting {', '.join(unknown)}; the settings are listed in "
            "docs/settings.md (names without the HYBRIDAI_... prefix, lower case)"
        )
    return values


class ConfigFileSource(PydanticBaseSettingsSource):
    """A pydantic-settings source reading one table of the config file."""

    def __init__(self, settings_cls: type[BaseSettings], table: str) -> None:
        super().__init__(settings_cls)
        # config_dir locates this file, so only the environment can set it
        self.values = read_table(table, set(settings_cls.model_fields) - {"config_dir"})

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


class FileSettings(BaseSettings):
    """Settings that also read their table of the config file, after ``.env``, before defaults."""

    config_table: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            ConfigFileSource(settings_cls, cls.config_table),
            file_secret_settings,
        )
