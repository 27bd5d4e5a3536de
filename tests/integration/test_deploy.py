"""deploy/ checked offline: there is no Docker daemon and no Kubernetes cluster here.

The compose file against the Compose specification's schema (vendored), the Dockerfiles by a
parser, the systemd unit by ``systemd-analyze``, the Helm chart rendered by Helm's own Go code
(helm-python-sdk's bundled library) and every manifest against Kubernetes' schemas (strict);
and every ``hybridai`` command, flag and ``HYBRIDAI_*`` variable these files use exists.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from _fleet import local_fleet
from hybridai.cli._options import env_names
from hybridai.cli._settings import CliSettings
from hybridai.cli.main import app
from hybridai.cloud.settings import CloudSettings
from hybridai.demo.fleet import wait_for
from hybridai.edge.settings import EdgeSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "hybridai-cloud"
KUBERNETES = "1.31.0"
# Required values: the Secrets the chart reads and where the lake lives.
CHART_VALUES: dict[str, Any] = {
    "database": {"existingSecret": "hybridai-db"},
    "s3": {"lakeUrl": "s3://hybridai/lake", "existingSecret": "hybridai-s3"},
    "pki": {"existingSecret": "hybridai-pki", "encryptedCaKey": True},
}


# -- what every deploy file may use ------------------------------------------------------


def _setting_variables() -> set[str]:
    known = {"HYBRIDAI_LOG_FORMAT", "HYBRIDAI_LOG_LEVEL"}
    for cls in (CloudSettings, EdgeSettings, CliSettings):
        for name in cls.model_fields:
            known.update(env_names(cls, name))
    return known


def _help(words: list[str]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "4000"})
    assert result.exit_code == 0, f"`hybridai {' '.join(words)} --help`: {result.output}"
    return result.output


def _assert_cli_knows(command_line: str) -> None:
    """``... hybridai WORDS --FLAGS`` in a shell line: the command and its flags exist."""
    match = re.search(
        r"hybridai((?:\s+[a-z][a-z-]*)+)((?:\s+--[a-z-]+(?:[= ]\S+)?)*)", command_line
    )
    assert match, f"no hybridai command in {command_line!r}"
    shown = _help(match.group(1).split())
    for flag in re.findall(r"--[a-z-]+", match.group(2)):
        assert flag in shown, f"`hybridai{match.group(1)}` has no {flag}"


def _assert_variables_known(names: list[str], where: str) -> None:
    unknown = sorted(
        n for n in names if n.startswith("HYBRIDAI_") and n not in _setting_variables()
    )
    assert unknown == [], f"{where} sets variables no setting reads: {unknown}"


# -- compose -----------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _compose_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification() -> None:
    assert _compose_errors(_compose()) == []


def test_compose_schema_check_catches_a_mistake() -> None:
    broken = _compose()
    broken["services"]["cloud"]["cap_drop"] = "ALL"  # a list in Compose
    broken["services"]["edge-1"]["restart_policy"] = "always"  # a key Compose does not have
    errors = _compose_errors(broken)
    assert any("cap_drop" in e for e in errors) and any("restart_policy" in e for e in errors)


def _hybridai_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in compose["services"].items()
        if str(s.get("image", "")).startswith("hybridai-")
    }


def test_compose_runs_the_platform_hardened_with_edges_holding_their_own_tokens() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"cloud", "postgres", "seaweedfs", "mosquitto", "edge-1", "edge-2"} <= set(services)
    ours = _hybridai_services(compose)
    assert set(ours) == {"migrate", "cloud", "edge-1", "edge-2"}
    for name, service in ours.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert any(t.startswith("/tmp") for t in service["tmpfs"]), name
        assert all(v.split(":")[1] == "/var/lib/hybridai" for v in service.get("volumes", [])), name
    # Migrations once, before the cloud; the cloud's data in PostgreSQL and S3 by URL.
    assert services["migrate"]["command"] == ["cloud", "migrate"]
    assert services["cloud"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    cloud_env = services["cloud"]["environment"]
    assert cloud_env["HYBRIDAI_DATABASE_URL"].startswith("postgresql://hybridai:${POSTGRES_")
    assert cloud_env["HYBRIDAI_CLOUD_LAKE_URL"].startswith("s3://")
    # Each edge: its own one-time token as a secret file (not in its environment), the CA.
    tokens = set()
    for edge in ("edge-1", "edge-2"):
        secrets = {s["target"]: s["source"] for s in services[edge]["secrets"]}
        assert secrets["ca.crt"] == "ca_crt" and "enroll.token" in secrets
        tokens.add(secrets["enroll.token"])
        assert not any("TOKEN" in k for k in services[edge]["environment"]), edge
        assert "/run/secrets/enroll.token" in " ".join(services[edge]["entrypoint"])
        assert services[edge]["depends_on"]["cloud"]["condition"] == "service_healthy"
    assert len(tokens) == 2 and tokens <= set(compose["secrets"])


def test_compose_commands_and_variables_exist() -> None:
    for name, service in _hybridai_services(_compose()).items():
        if "entrypoint" in service:
            _assert_cli_knows(service["entrypoint"][-1])
        else:
            _assert_cli_knows("hybridai " + " ".join(service["command"]))
        _assert_variables_known(list(service["environment"]), f"compose service {name}")


# -- Dockerfiles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "port", "route"), [("cloud", 8400, "ready"), ("edge", 8500, "live")]
)
def test_dockerfile_is_multi_stage_non_root_with_a_v2_healthcheck(
    role: str, port: int, route: str
) -> None:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=io.BytesIO((DEPLOY / f"Dockerfile.{role}").read_bytes()))
    stages = [i for i in parser.structure if i["instruction"] == "FROM"]
    assert len(stages) >= 2, "multi-stage: build, then a runtime without the build's tools"
    last_from = parser.structure.index(stages[-1])
    runtime = parser.structure[last_from:]
    kinds = [i["instruction"] for i in runtime]

    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any(c.startswith("--from=build /opt/hybridai") for c in copies), copies
    assert not any("pip install" in i["value"] for i in runtime if i["instruction"] == "RUN")
    health = [i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK"]
    assert len(health) == 1 and f"127.0.0.1:{port}/v2/health/{route}" in health[0]
    assert "VOLUME" in kinds and '"/var/lib/hybridai"' in parser.content
    extra = "cloud,postgres,s3" if role == "cloud" else "edge"
    assert f"install --no-compile '.[{extra}]'" in parser.content

    entrypoint = json.loads(next(i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"))
    command = json.loads(next(i["value"] for i in runtime if i["instruction"] == "CMD"))
    assert entrypoint == ["hybridai"]
    _assert_cli_knows(" ".join([*entrypoint, *command]))
    variables = re.findall(r"\b(HYBRIDAI_[A-Z0-9_]+)=", parser.content)
    assert variables
    _assert_variables_known(variables, f"Dockerfile.{role}")


@pytest.mark.slow
def test_the_images_healthcheck_probe_answers_for_a_live_cloud_and_not_for_a_dead_port(
    tmp_path: Path,
) -> None:
    probe = DEPLOY / "healthcheck.py"
    with local_fleet(tmp_path / "fleet") as fleet:
        assert fleet.cloud is not None
        ca = str(fleet.ca_file)
        for route in ("live", "ready"):
            url = f"{fleet.cloud.url}/v2/health/{route}"
            wait_for(
                f"{url} answers the probe",
                lambda url=url: (
                    subprocess.run([sys.executable, str(probe), url, ca]).returncode == 0
                ),
                30,
            )
        untrusted = subprocess.run(
            [sys.executable, str(probe), f"{fleet.cloud.url}/v2/health/live"],
            capture_output=True,
            text=True,
        )  # without the platform CA the certificate cannot be verified
        assert untrusted.returncode == 1 and "unhealthy" in untrusted.stderr
        port = fleet.cloud.url.rsplit(":", 1)[1]
    dead = subprocess.run(
        [sys.executable, str(probe), f"https://127.0.0.1:{port}/v2/health/live", ca],
        capture_output=True,
        text=True,
    )
    assert dead.returncode == 1 and "unhealthy" in dead.stderr


# -- systemd -----------------------------------------------------------------------------

UNIT = DEPLOY / "systemd" / "hybridai-edge.service"


def _systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        message = "systemd-analyze is missing: apt-get install systemd (tests/system_packages.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_unit_verifies_cleanly() -> None:
    done = subprocess.run(
        [_systemd_analyze(), "verify", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_systemd_verify_catches_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "hybridai-edge.service"
    broken.write_text(UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    done = subprocess.run(
        [_systemd_analyze(), "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "Restart" in done.stderr or "sometimes" in done.stderr, done.stderr


def test_systemd_unit_is_hardened() -> None:
    unit = _directives(UNIT.read_text())
    expected = {
        "User": "hybridai",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "StateDirectory": "hybridai/edge",
        "StateDirectoryMode": "0700",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], f"{key}={unit.get(key)}"
    assert "LoadCredential" in unit and not any("TOKEN=" in e for e in unit["Environment"])
    sysusers = (DEPLOY / "systemd" / "hybridai-edge.sysusers").read_text()
    assert re.search(r"^u hybridai ", sysusers, re.M)

    done = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert exposure, done.stdout[-2000:] + done.stderr
    assert float(exposure.group(1)) <= 2.0, f"exposure {exposure.group(1)} (10 is unprotected)"


def test_systemd_unit_commands_and_variables_exist() -> None:
    unit = _directives(UNIT.read_text())
    _assert_cli_knows(unit["ExecStart"][0])
    variables = [e.partition("=")[0] for e in unit["Environment"]]
    _assert_variables_known(variables, "the systemd unit")


# -- Helm --------------------------------------------------------------------------------


def _render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    import helm_python as helm

    chart = helm.Chart.load(str(CHART))
    chosen = values if values is not None else CHART_VALUES
    chart.validate_schema(chosen)
    rendered = chart.render(chosen, name="hybridai", namespace="hybridai", is_install=True)
    documents: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            documents += [d for d in yaml.safe_load_all(text) if d]
    return documents


def _by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in documents}


def test_chart_lints_and_renders_manifests_kubernetes_accepts_strictly() -> None:
    import helm_python as helm
    import kubernetes_validate

    report = helm.lint(str(CHART), CHART_VALUES, strict=True, kube_version=f"v{KUBERNETES}")
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert errors == [] and report["errors"] == [], report

    documents = _render()
    assert sorted(_by_kind(documents)) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)

    misspelt = _by_kind(_render())["Deployment"]
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES, strict=True)


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_chart_runs_stateless_hardened_replicas_with_probes_and_secrets() -> None:
    kinds = _by_kind(_render())
    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    for container in _containers(pod):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        assert security["runAsUser"] != 0
    cloud = pod["containers"][0]
    assert cloud["args"] == ["cloud", "serve"]
    assert cloud["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert cloud["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert cloud["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    env = {e["name"]: e for e in cloud["env"]}
    assert env["HYBRIDAI_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "hybridai-db"
    assert env["HYBRIDAI_CLOUD_CA_PASSPHRASE"]["valueFrom"]["secretKeyRef"]["name"] == (
        "hybridai-pki"
    )
    assert env["HYBRIDAI_CLOUD_LAKE_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "hybridai-s3",
        "key": "secret-access-key",
    }
    assert env["HYBRIDAI_CLOUD_LAKE_URL"]["value"] == "s3://hybridai/lake"
    names = json.loads(env["HYBRIDAI_CLOUD_TLS_NAMES"]["value"])
    assert "hybridai-hybridai-cloud.hybridai.svc" in names
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    assert secret_volume["secret"]["secretName"] == "hybridai-pki"
    mounts = {m["mountPath"] for c in _containers(pod) for m in c["volumeMounts"]}
    assert {"/tmp", "/var/lib/hybridai/cloud"} <= mounts  # the only writable paths

    hpa = kinds["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] == 1

    job = kinds["Job"]
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["cloud", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_chart_commands_and_variables_exist() -> None:
    for document in _render():
        pod = (document.get("spec", {}).get("template") or {}).get("spec")
        if pod is None:
            continue
        for container in pod["containers"]:
            _assert_cli_knows("hybridai " + " ".join(container["args"]))
            _assert_variables_known(
                [e["name"] for e in container["env"]], f"{document['kind']} {container['name']}"
            )


def test_chart_refuses_values_that_cannot_work() -> None:
    import helm_python as helm

    chart = helm.Chart.load(str(CHART))
    for wrong in (
        {**CHART_VALUES, "replicaCount": "two"},
        {**CHART_VALUES, "replicas": 3},  # not a value of this chart
        {**CHART_VALUES, "database": {"url": "mysql://root@db/hybridai"}},
        {**CHART_VALUES, "extraEnv": {"PATH": "/tmp"}},
    ):
        with pytest.raises(helm.HelmError):
            chart.validate_schema(wrong)
    with pytest.raises(helm.HelmError, match=r"database\.existingSecret"):
        chart.render({**CHART_VALUES, "database": {}}, name="hybridai", namespace="hybridai")
    with pytest.raises(helm.HelmError, match=r"pki\.existingSecret"):
        chart.render({**CHART_VALUES, "pki": {}}, name="hybridai", namespace="hybridai")


def test_edge_daemonset_example_is_valid_and_runs_edge_run() -> None:
    import kubernetes_validate

    documents = [
        d
        for d in yaml.safe_load_all(
            (DEPLOY / "helm" / "examples" / "edge-daemonset.yaml").read_text()
        )
        if d
    ]
    kinds = _by_kind(documents)
    assert {"DaemonSet", "Service"} <= set(kinds)
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)
    edge = kinds["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
    assert edge["securityContext"]["readOnlyRootFilesystem"] is True
    assert edge["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    _assert_cli_knows(edge["command"][-1])
    _assert_variables_known([e["name"] for e in edge["env"]], "the edge DaemonSet")


# -- checkov -----------------------------------------------------------------------------

# checkov pins older packaging, boto3 and others than the platform runs with, so it gets a venv
# of its own (pip's cache makes a rebuild quick), not a place in the dev extra.
CHECKOV = "checkov>=3.2,<4"


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("checkov") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", CHECKOV],
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, f"pip install '{CHECKOV}' failed:\n{done.stderr[-3000:]}"
    return venv / "bin" / "checkov"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # building checkov's venv takes minutes on a busy machine
def test_checkov_finds_nothing_in_the_chart_the_example_and_the_dockerfiles(
    checkov: Path, tmp_path: Path
) -> None:
    import helm_python as helm

    pinned = {
        **CHART_VALUES,
        "image": {"repository": "hybridai-cloud", "digest": "sha256:" + "0" * 64},
    }
    rendered = helm.Chart.load(str(CHART)).render(pinned, name="hybridai", namespace="hybridai")
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            (tmp_path / Path(path).name).write_text(text)
    shutil.copy(DEPLOY / "helm" / "examples" / "edge-daemonset.yaml", tmp_path)
    for role in ("cloud", "edge"):
        shutil.copy(DEPLOY / f"Dockerfile.{role}", tmp_path)

    done = subprocess.run(
        [str(checkov), "-d", str(tmp_path), "--framework", "kubernetes", "dockerfile",
         "--output", "json", "--skip-download"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    summary = {r["check_type"]: r["summary"] for r in reports}
    assert set(summary) == {"kubernetes", "dockerfile"}, summary
    failed = [
        f"{c['check_id']} {c['resource']}" for r in reports for c in r["results"]["failed_checks"]
    ]
    assert failed == [], failed
    assert summary["kubernetes"]["passed"] > 200 and summary["dockerfile"]["passed"] > 50
    # Only the exceptions written, with their reasons, into the manifests themselves.
    skipped = sorted(
        {c["check_id"] for r in reports for c in r["results"].get("skipped_checks", [])}
    )
    assert skipped == ["CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_43"], skipped
