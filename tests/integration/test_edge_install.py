"""An edge-only install (``pip install 'hybridai[edge]'`` in a fresh venv) runs a real agent.

The venv is built from this checkout by pip, so no package of the cloud tier can hide in it:
every module of the layers an agent runs is imported there without pulling a cloud package,
the cloud's commands name the extra they need, and an agent from that venv enrolls with a
cloud (run from the full install) over mTLS, serves the deployed model by v2 inference and
syncs what it ingested into the lake.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from _fleet import MODEL, PATIENT_EDGE, assert_probabilities, infer, ingest, local_fleet
from _venvs import build_venv, venv_mb
from hybridai.cli import _extras
from hybridai.demo.fleet import LocalFleet, wait_for

CLOUD_MODULES = _extras.TIER_MODULES["cloud"]
EDGE_LAYERS = ("edge", "serving", "link", "protocol", "orchestrator")

# Run by the edge venv's python: import every module of the agent's layers, say what came in.
SWEEP = """
import importlib, json, pkgutil, sys
import hybridai
failed, count = {}, 0
for layer in sys.argv[1:]:
    package = importlib.import_module(f"hybridai.{layer}")
    for info in pkgutil.walk_packages(package.__path__, f"hybridai.{layer}."):
        count += 1
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = repr(exc)
print(json.dumps({"count": count, "failed": failed, "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def edge_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv holding ``hybridai[edge]`` and nothing else of ours."""
    where = tmp_path_factory.mktemp("edge-install")
    python = build_venv(where, "edge")
    sizes = venv_mb(python.parents[1])
    print(f"edge_venv_mb={sizes['mb']} lean={sizes['lean_mb']}")  # shown with -s
    return python


def _hybridai(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "hybridai", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200"},
    )


def test_missing_tier_import_is_a_sentence_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = typer.Typer()

    @app.command()
    def lake() -> None:
        raise ModuleNotFoundError("No module named 'duckdb'", name="duckdb")

    with pytest.raises(SystemExit) as exited:
        _extras.run(app, [])
    assert exited.value.code == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "the cloud tier is not installed (no module named duckdb)" in said
    assert "pip install 'hybridai[cloud]'" in said
    assert _extras.tier_of("paho.mqtt.client") == "edge" and _extras.tier_of("numpy") is None


def test_unrelated_missing_module_still_raises() -> None:
    app = typer.Typer()

    @app.command()
    def broken() -> None:
        raise ModuleNotFoundError("No module named 'nowhere'", name="nowhere")

    with pytest.raises(ModuleNotFoundError):
        _extras.run(app, [])


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the first test here builds the venv: minutes on a busy machine
def test_edge_venv_imports_every_agent_module_without_a_cloud_package(
    edge_python: Path, tmp_path: Path
) -> None:
    absent = subprocess.run(
        [str(edge_python), "-c", "import importlib.util as u, sys; "
         "print([m for m in sys.argv[1:] if u.find_spec(m)])", *CLOUD_MODULES],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert absent.stdout.strip() == "[]", f"cloud packages in the edge venv: {absent.stdout}"

    done = subprocess.run(
        [str(edge_python), "-c", SWEEP, *EDGE_LAYERS],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    sweep = json.loads(done.stdout)
    assert sweep["count"] > 100, sweep["count"]
    assert sweep["failed"] == {}, sweep["failed"]
    leaked = [
        m
        for m in sweep["modules"]
        if m.partition(".")[0] in CLOUD_MODULES or m.startswith(("hybridai.cloud", "hybridai.cli"))
    ]
    assert leaked == [], f"the edge's layers import cloud code: {leaked}"


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    "command", [["cloud", "serve"], ["cloud", "migrate"], ["doctor", "cloud"], ["demo"]]
)
def test_cloud_commands_name_the_extra_they_need(
    edge_python: Path, tmp_path: Path, command: list[str]
) -> None:
    done = _hybridai(edge_python, *command, cwd=tmp_path)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the cloud tier is not installed" in said and "pip install 'hybridai[cloud]'" in said
    assert "Traceback" not in done.stderr
    assert _hybridai(edge_python, *command, "--help", cwd=tmp_path).returncode == 0


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    """A cloud from the full install (this interpreter) on SQLite."""
    with local_fleet(tmp_path / "fleet") as f:
        yield f


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_edge_only_agent_enrolls_serves_v2_and_syncs(
    edge_python: Path, fleet: LocalFleet, classifier_onnx: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _fleet import upload_and_deploy

    version = upload_and_deploy(fleet, classifier_onnx)
    with monkeypatch.context() as patch:  # the launcher starts `sys.executable -m hybridai`
        patch.setattr(sys, "executable", str(edge_python))
        fleet.start_edge("edge-a", "site-north", env=PATIENT_EDGE)
    fleet.wait_enrolled(1)
    wait_for(f"the edge to serve {MODEL} v{version}", lambda: fleet.serving(MODEL, version), 60)
    edge = fleet.edges["edge-a"]
    assert edge.process.args[0] == str(edge_python)

    assert_probabilities(infer(edge.url))
    records = [{"ts": 1_750_000_000.0 + i, "vibration": 1.0 + i} for i in range(7)]
    assert ingest(edge.url, "telemetry", records).status_code == 200
    wait_for(
        "the records in the lake",
        lambda: fleet.lake_count("SELECT count(*) FROM telemetry") == 7,
        60,
    )
