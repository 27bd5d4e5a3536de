"""Settings in one place: flag > environment > config.toml > default, for every program, and a
broken config file or setting is a clear message (naming the setting), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridai.cli._settings import CliSettings
from hybridai.cli.main import app
from hybridai.cloud.settings import CloudSettings
from hybridai.config_file import ConfigFileError
from hybridai.edge.settings import EdgeSettings


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("HYBRIDAI_CLOUD_URL", "HYBRIDAI_EDGE_PORT", "HYBRIDAI_CLOUD_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path / "config.toml"


def test_the_file_fills_in_what_the_environment_leaves_and_a_flag_wins(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text(
        '[cli]\ncloud_url = "https://file:1"\noutput = "json"\n'
        '[cloud]\ndata_dir = "/srv/cloud"\nport = 9400\n'
        '[edge]\nport = 9500\ntags = {line = "3"}\n'
    )
    assert (CliSettings().cloud_url, CliSettings().output) == ("https://file:1", "json")
    assert CloudSettings().data_dir == Path("/srv/cloud") and CloudSettings().port == 9400
    assert EdgeSettings().port == 9500 and EdgeSettings().tags == {"line": "3"}
    monkeypatch.setenv("HYBRIDAI_CLOUD_URL", "https://env:2")
    monkeypatch.setenv("HYBRIDAI_EDGE_PORT", "9600")
    assert CliSettings().cloud_url == "https://env:2" and EdgeSettings().port == 9600
    assert EdgeSettings(port=9700).port == 9700  # what a flag passes


def test_no_file_means_the_defaults(config: Path) -> None:
    assert CliSettings().cloud_url == CliSettings.model_fields["cloud_url"].default
    assert EdgeSettings().port == 8500


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[edge]\ndevce_id = "gw-1"\n', "[edge] has no setting devce_id"),
        ("[cli\n", "is not valid TOML"),
        ('cli = "x"\n', "[cli] must be a table"),
        ('[cli]\nconfig_dir = "/x"\n', "[cli] has no setting config_dir"),
    ],
)
def test_a_broken_file_is_refused_with_what_to_fix(config: Path, text: str, says: str) -> None:
    config.write_text(text)
    table = "edge" if "[edge]" in text else "cli"
    with pytest.raises(ConfigFileError, match=None) as error:
        EdgeSettings() if table == "edge" else CliSettings()
    assert says in str(error.value) and str(config) in str(error.value)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_commands_turn_settings_errors_into_messages(config: Path) -> None:
    config.write_text('[cli]\ncloud_ur = "https://x"\n')
    listed = CliRunner().invoke(app, ["fleet", "list"])
    assert listed.exit_code == 1 and "[cli] has no setting cloud_ur" in _flat(listed.output)
    assert listed.exception is None or isinstance(listed.exception, SystemExit)
    config.write_text('[cli]\noutput = "yaml"\n')
    bad = CliRunner().invoke(app, ["fleet", "list"])
    assert bad.exit_code == 1 and "HYBRIDAI_OUTPUT" in _flat(bad.output)
    config.write_text("")
    not_json = CliRunner().invoke(app, ["edge", "run", "--tags", "line=3"])
    assert not_json.exit_code == 1 and "HYBRIDAI_EDGE_TAGS" in _flat(not_json.output)
    assert "must be JSON" in _flat(not_json.output)
    bad_kind = CliRunner().invoke(app, ["edge", "run", "--kind", "toaster"])
    shown = _flat(bad_kind.output)
    assert bad_kind.exit_code == 1 and "bad setting kind (HYBRIDAI_EDGE_KIND)" in shown
    assert "toaster" not in bad_kind.output  # the setting is named, its value is not quoted
