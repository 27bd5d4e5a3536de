"""Docs that cannot drift: the settings reference and the README's CLI table."""

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hybridai.cli.docs import settings_markdown
from hybridai.cli.main import app

ROOT = Path(__file__).parents[2]


def command_paths() -> list[str]:
    """Every leaf command as typed, e.g. ``hybridai fleet enroll-token``."""

    def walk(command: Any, path: list[str]) -> list[str]:
        if not hasattr(command, "list_commands"):  # typer may vendor its own click
            return [" ".join(path)]
        ctx = command.context_class(command)
        found: list[str] = []
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None:
                found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), ["hybridai"])


def test_settings_reference_is_up_to_date():
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed.strip() == settings_markdown().strip(), "run `make docs`"


def test_every_setting_has_help_text():
    from hybridai.cli._settings import CliSettings
    from hybridai.cloud.settings import CloudSettings
    from hybridai.edge.settings import EdgeSettings

    for cls in (CliSettings, CloudSettings, EdgeSettings):
        missing = [n for n, f in cls.model_fields.items() if not f.description]
        assert not missing, f"{cls.__name__} settings without help: {missing}"


def test_readme_shows_every_command():
    readme = (ROOT / "README.md").read_text()
    paths = command_paths()
    assert "hybridai demo" in paths and "hybridai fleet enroll-token" in paths
    missing = []
    for path in paths:
        group, _, leaf = path.partition(" ")[2].partition(" ")
        if path not in readme and not (leaf and f"hybridai {group}" in readme and leaf in readme):
            missing.append(path)
    assert not missing, f"README's CLI table lacks {missing}"


@pytest.mark.parametrize("path", command_paths())
def test_every_command_has_help(path):
    result = CliRunner().invoke(app, [*path.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _help(*args: str) -> str:
    """A command's --help, wide enough that rich wraps no line, whitespace collapsed."""
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "4000"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("program", "command"),
    [("cli", []), ("cloud", ["cloud", "serve"]), ("edge", ["edge", "run"])],
)
def test_every_setting_is_in_its_commands_help(program: str, command: list[str]) -> None:
    """Each setting's variable, help text and default, as the settings model declares them."""
    from hybridai.cli._options import env_names, shown_default
    from hybridai.cli._settings import CliSettings
    from hybridai.cloud.settings import CloudSettings
    from hybridai.edge.settings import EdgeSettings

    cls = {"cli": CliSettings, "cloud": CloudSettings, "edge": EdgeSettings}[program]
    shown = _help(*command)
    missing = []
    for name, field in cls.model_fields.items():
        default = shown_default(field)
        for part in [*env_names(cls, name), " ".join((field.description or "").split())]:
            if part not in shown:
                missing.append(f"{name}: {part[:60]}")
        if default is not None and default not in shown:
            missing.append(f"{name}: default {default}")
    assert not missing, f"`hybridai {' '.join(command)} --help` lacks {missing}"


def test_cloud_commands_show_the_client_settings() -> None:
    shown = _help("fleet", "list")
    for part in ("--cloud", "HYBRIDAI_CLOUD_URL", "https://127.0.0.1:8400", "HYBRIDAI_TOKEN"):
        assert part in shown
