"""Docs that cannot drift: the settings reference and the README's CLI table."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridai.cli.docs import command_paths, settings_markdown
from hybridai.cli.main import app

ROOT = Path(__file__).parents[2]


def test_settings_reference_is_up_to_date():
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed.strip() == settings_markdown().strip(), "run `make docs`"


def test_every_setting_has_help_text():
    from hybridai.cloud.settings import CloudSettings
    from hybridai.edge.settings import EdgeSettings

    for cls in (CloudSettings, EdgeSettings):
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
