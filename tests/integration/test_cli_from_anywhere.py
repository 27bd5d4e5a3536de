"""The `hybridai` command against a real cloud process, run from another directory.

The CLI finds the cloud's CA and bootstrap admin token through the cloud's own DATA_DIR setting
(HYBRIDAI_CLOUD_DATA_DIR or config.toml), not the current directory; an expired login says so,
with when and how to log in again, instead of "missing credentials".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _fleet import local_fleet
from hybridai.demo.fleet import LocalFleet

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path_factory.mktemp("ws")) as started:
        yield started


def _cli(
    args: list[str], cwd: Path, config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``hybridai ARGS`` as a user would run it: its own process, no HYBRIDAI_* but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDAI_")}
    clean |= {"HYBRIDAI_CONFIG_DIR": str(config), "COLUMNS": "200", **(env or {})}
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "hybridai", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_commands_from_another_directory_find_the_clouds_ca_and_token(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    assert fleet.cloud is not None
    data_dir = str(fleet.workspace / "cloud")
    elsewhere, config = tmp_path / "elsewhere", tmp_path / "config"

    lost = _cli(["token", "list"], elsewhere, config, {"HYBRIDAI_CLOUD_URL": fleet.cloud.url})
    assert lost.returncode == 1
    assert "--ca-file" in lost.stderr and "Traceback" not in lost.stderr, lost.stderr

    by_env = {"HYBRIDAI_CLOUD_URL": fleet.cloud.url, "HYBRIDAI_CLOUD_DATA_DIR": data_dir}
    listed = _cli(["token", "list", "--json"], elsewhere, config, by_env)
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["bootstrap-admin"]

    config.mkdir()
    (config / "config.toml").write_text(
        f'[cli]\ncloud_url = "{fleet.cloud.url}"\noutput = "json"\n'
        f"[cloud]\ndata_dir = {json.dumps(data_dir)}\n"
    )
    by_file = _cli(["token", "list"], elsewhere, config)  # JSON: output = "json" in the file
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)[0]["name"] == "bootstrap-admin"
    flag_wins = _cli(["token", "list", "--cloud", "https://127.0.0.1:1"], elsewhere, config)
    assert flag_wins.returncode == 1 and "cannot reach the cloud at https://127.0.0.1:1" in (
        " ".join(flag_wins.stderr.split())
    )


def test_an_expired_login_says_when_and_how_to_log_in_again(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    assert fleet.cloud is not None
    config, cwd = tmp_path / "config", tmp_path / "work"
    env = {
        "HYBRIDAI_CLOUD_URL": fleet.cloud.url,
        "HYBRIDAI_CLOUD_DATA_DIR": str(fleet.workspace / "cloud"),
    }
    added = _cli(
        ["user", "add", "vera", "--role", "viewer"],
        cwd,
        config,
        env | {"HYBRIDAI_PASSWORD": PASSWORD},
    )
    assert added.returncode == 0, added.stderr
    logged = _cli(["login", "vera"], cwd, config, env | {"HYBRIDAI_PASSWORD": PASSWORD})
    assert logged.returncode == 0, logged.stderr
    as_vera = _cli(["fleet", "list", "--json"], cwd, config, env)
    assert as_vera.returncode == 0, as_vera.stderr

    session = json.loads((config / "token").read_text())
    session["expires_at"] = time.time() - 120  # the 15 minutes are over
    (config / "token").write_text(json.dumps(session))
    expired = _cli(["fleet", "list"], cwd, config, env)
    message = " ".join(expired.stderr.split())
    assert expired.returncode == 1, expired.stdout
    assert "your login as vera expired at" in message and "UTC" in message, message
    assert "hybridai login vera" in message and "missing credentials" not in message
    # not silently the bootstrap admin instead: nothing ran with other credentials
    assert expired.stdout == ""

    out = _cli(["logout"], cwd, config, env)
    assert out.returncode == 0 and not (config / "token").exists()
    assert "had expired" in out.stdout
    trusting = {"HYBRIDAI_CLOUD_URL": fleet.cloud.url, "HYBRIDAI_CA_FILE": str(fleet.ca_file)}
    no_one = _cli(["fleet", "list"], cwd, config, trusting)  # no login, token or data dir
    message = " ".join(no_one.stderr.split())
    assert no_one.returncode == 1 and "HTTP 401" in message, message
    assert "no credentials: log in with `hybridai login NAME`" in message
