"""Fleet and model-registry services against every metadata backend."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography import x509
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hybridai.cloud.devices import certificates, fleet
from hybridai.cloud.devices.certificates import DeviceAuthority
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.cloud.models import registry
from hybridai.cloud.people import users
from hybridai.cloud.people.secrets import hash_token, new_token, token_matches
from hybridai.link import pki
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import Capabilities, EnrollRequest, StatusReport
from hybridai.storage.blobs import LocalBlobStore
from hybridai.storage.metadata import session_factory
from hybridai.storage.tables import (
    ApiTokenRow,
    DeviceCertificateRow,
    EnrollmentTokenRow,
)

NOW = 1_733_000_000.0


def _onnx_classifier(seed: int, zipmap: bool = False) -> bytes:
    """A tiny real model: logistic regression on 4 features, exported like the platform does."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    onnx_model = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": zipmap}},
    )
    data: bytes = onnx_model.SerializeToString()
    return data


@pytest.fixture(scope="module")
def onnx_models() -> tuple[bytes, bytes]:
    return _onnx_classifier(0), _onnx_classifier(1)


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def _api_error(code: ErrorCode, status: int, call: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert (caught.value.code, caught.value.status) == (code, status), caught.value.message
    return caught.value


_CA, _CA_KEY = pki.create_ca(NOW)
AUTHORITY = DeviceAuthority(_CA, _CA_KEY, lifetime_s=3600)


def _enroll_request(token: str, device_id: str = "gw-1") -> EnrollRequest:
    return EnrollRequest(
        token=token,
        device_id=device_id,
        kind="sensor-gateway",
        capabilities=Capabilities(cores=4, memory_mb=2048, execution_providers=["cpu"]),
        agent_version="0.1.0",
        csr=pki.device_csr(pki.new_key(), device_id),
    )


def _enrolled(db: Session, device_id: str = "gw-1") -> x509.Certificate:
    token = fleet.create_enrollment_token(db, "plant-a", device_id, 600, NOW)
    response = fleet.enroll(db, _enroll_request(token.token, device_id), NOW + 1, AUTHORITY)
    return pki.load_cert(response.certificate)


# --- secrets -----------------------------------------------------------------------------


def test_tokens_are_prefixed_random_and_hashed() -> None:
    first, second = new_token("hai_dev_"), new_token("hai_dev_")
    assert first.startswith("hai_dev_") and first != second and len(first) > 40
    assert hash_token(first) == hashlib.sha256(first.encode()).hexdigest()
    assert token_matches(first, hash_token(first))
    assert not token_matches(second, hash_token(first))


# --- fleet -------------------------------------------------------------------------------


def test_enrollment_happy_path(db: Session) -> None:
    token = fleet.create_enrollment_token(db, "plant-a", "gw-1", 600, NOW)

    response = fleet.enroll(db, _enroll_request(token.token), NOW + 10, AUTHORITY)

    assert (response.device_id, response.site) == ("gw-1", "plant-a")
    assert token.expires_at == NOW + 600
    cert = pki.load_cert(response.certificate)
    assert certificates.authenticate(db, cert, NOW + 11) == "gw-1"
    assert response.ca_certificate == AUTHORITY.ca_pem
    device = fleet.get_device(db, "gw-1")
    assert (device.kind, device.enrolled_at, device.revoked) == ("sensor-gateway", NOW + 10, False)
    assert device.capabilities.memory_mb == 2048
    assert [d.device_id for d in fleet.list_devices(db)] == ["gw-1"]
    # Only hashes are stored.
    assert db.scalars(select(EnrollmentTokenRow.token_hash)).all() == [hash_token(token.token)]
    rows = db.scalars(select(DeviceCertificateRow)).all()
    assert [(r.serial, r.device_id, r.revoked_at) for r in rows] == [
        (pki.serial_hex(cert), "gw-1", None)
    ]
    assert rows[0].not_after == pytest.approx(NOW + 10 + 3600)


def test_expired_token_is_refused(db: Session) -> None:
    token = fleet.create_enrollment_token(db, "plant-a", "gw-1", 600, NOW)
    error = _api_error(
        ErrorCode.BAD_ENROLLMENT_TOKEN,
        401,
        lambda: fleet.enroll(db, _enroll_request(token.token), NOW + 600, AUTHORITY),
    )
    assert "expired" in error.message
    assert "hybridai fleet enroll-token plant-a/gw-1" in error.message
    assert fleet.list_devices(db) == []


def test_used_token_is_refused(db: Session) -> None:
    token = fleet.create_enrollment_token(db, "plant-a", "gw-1", 600, NOW)
    fleet.enroll(db, _enroll_request(token.token), NOW + 1, AUTHORITY)

    error = _api_error(
        ErrorCode.BAD_ENROLLMENT_TOKEN,
        401,
        lambda: fleet.enroll(db, _enroll_request(token.token), NOW + 2, AUTHORITY),
    )
    assert "already used" in error.message


def test_token_for_another_device_is_refused(db: Session) -> None:
    token = fleet.create_enrollment_token(db, "plant-a", "gw-1", 600, NOW)
    error = _api_error(
        ErrorCode.BAD_ENROLLMENT_TOKEN,
        401,
        lambda: fleet.enroll(db, _enroll_request(token.token, "gw-2"), NOW + 1, AUTHORITY),
    )
    assert "'gw-1'" in error.message and "enroll-token" in error.message
    # The refused attempt did not spend the token.
    assert (
        fleet.enroll(db, _enroll_request(token.token, "gw-1"), NOW + 2, AUTHORITY).device_id
        == "gw-1"
    )


def test_unknown_token_is_refused(db: Session) -> None:
    error = _api_error(
        ErrorCode.BAD_ENROLLMENT_TOKEN,
        401,
        lambda: fleet.enroll(db, _enroll_request("hai_enr_made-up"), NOW, AUTHORITY),
    )
    assert "hybridai fleet enroll-token" in error.message


@pytest.mark.parametrize(
    ("site", "device_id", "ttl_s"), [("Plant A", "gw-1", 60), ("plant-a", "-gw", 60), ("p", "d", 0)]
)
def test_enrollment_token_arguments_are_validated(
    db: Session, site: str, device_id: str, ttl_s: float
) -> None:
    _api_error(
        ErrorCode.INVALID_INPUT,
        400,
        lambda: fleet.create_enrollment_token(db, site, device_id, ttl_s, NOW),
    )
    assert db.scalars(select(EnrollmentTokenRow)).all() == []


def test_re_enrollment_replaces_the_certificate_and_lifts_revocation(db: Session) -> None:
    old = _enrolled(db)
    fleet.revoke_device(db, "gw-1", NOW + 50)
    token = fleet.create_enrollment_token(db, "plant-b", "gw-1", 600, NOW + 100)

    new = fleet.enroll(db, _enroll_request(token.token), NOW + 101, AUTHORITY)

    assert new.site == "plant-b"
    _api_error(
        ErrorCode.CERTIFICATE_REJECTED, 401, lambda: certificates.authenticate(db, old, NOW + 102)
    )
    assert certificates.authenticate(db, pki.load_cert(new.certificate), NOW + 102) == "gw-1"
    device = fleet.get_device(db, "gw-1")
    assert (device.site, device.revoked, device.enrolled_at) == ("plant-b", False, NOW + 101)
    assert len(fleet.list_devices(db)) == 1


def test_revoked_device_fails_authentication(db: Session) -> None:
    cert = _enrolled(db)

    revoked = fleet.revoke_device(db, "gw-1", NOW + 5)

    assert revoked.revoked
    error = _api_error(
        ErrorCode.CERTIFICATE_REJECTED, 401, lambda: certificates.authenticate(db, cert, NOW + 6)
    )
    assert "revoked" in error.message


def test_expired_or_unknown_certificates_fail_authentication(db: Session) -> None:
    cert = _enrolled(db)
    expired = _api_error(
        ErrorCode.CERTIFICATE_REJECTED,
        401,
        lambda: certificates.authenticate(db, cert, NOW + 1 + 3600),
    )
    assert "expired" in expired.message
    # Signed by the right CA but never recorded (a stolen CA key would be needed): refused.
    stray = pki.sign_device(_CA, _CA_KEY, pki.device_csr(pki.new_key(), "gw-1"), "gw-1", NOW, 3600)
    _api_error(
        ErrorCode.CERTIFICATE_REJECTED, 401, lambda: certificates.authenticate(db, stray, NOW + 2)
    )


def test_a_bad_csr_is_refused_before_the_token_is_spent(db: Session) -> None:
    token = fleet.create_enrollment_token(db, "plant-a", "gw-1", 600, NOW)
    other = _enroll_request(token.token).model_copy(
        update={"csr": pki.device_csr(pki.new_key(), "gw-2")}
    )
    _api_error(
        ErrorCode.CSR_DEVICE_MISMATCH, 403, lambda: fleet.enroll(db, other, NOW + 1, AUTHORITY)
    )
    garbage = other.model_copy(update={"csr": "not a csr"})
    _api_error(ErrorCode.INVALID_CSR, 400, lambda: fleet.enroll(db, garbage, NOW + 1, AUTHORITY))
    assert fleet.enroll(db, _enroll_request(token.token), NOW + 2, AUTHORITY).device_id == "gw-1"


def test_status_reports_are_kept(db: Session) -> None:
    _enrolled(db)
    report = StatusReport(device_id="gw-1", agent_version="0.1.0", uptime_s=12.5)
    report.store.backlog_records = 7

    fleet.record_status(db, report, NOW + 30)

    device = fleet.get_device(db, "gw-1")
    assert device.last_seen == NOW + 30
    assert device.status == report


def test_unknown_devices_are_404(db: Session) -> None:
    report = StatusReport(device_id="ghost", agent_version="0.1.0", uptime_s=1)
    error = _api_error(ErrorCode.UNKNOWN_DEVICE, 404, lambda: fleet.record_status(db, report, NOW))
    assert "enroll-token" in error.message
    _api_error(ErrorCode.UNKNOWN_DEVICE, 404, lambda: fleet.get_device(db, "ghost"))
    _api_error(ErrorCode.UNKNOWN_DEVICE, 404, lambda: fleet.revoke_device(db, "ghost", NOW))


def test_api_tokens(db: Session) -> None:
    admin = fleet.create_api_token(db, "alice", "admin", NOW)
    viewer = fleet.create_api_token(db, "bob", "viewer", NOW)

    assert admin.startswith("hai_adm_") and viewer.startswith("hai_api_")
    assert fleet.authenticate_api_token(db, admin) == ("alice", "admin")
    assert fleet.authenticate_api_token(db, viewer) == ("bob", "viewer")
    assert fleet.authenticate_api_token(db, "hai_adm_forged") is None
    assert admin not in db.scalars(select(ApiTokenRow.token_hash)).all()

    revoked = users.revoke_api_token(db, hash_token(admin)[:16])  # what DELETE /api-tokens does
    assert revoked.name == "alice" and revoked.revoked
    assert fleet.authenticate_api_token(db, admin) is None
    assert fleet.authenticate_api_token(db, viewer) == ("bob", "viewer")
    _api_error(ErrorCode.INVALID_INPUT, 400, lambda: fleet.create_api_token(db, "", "x", NOW))


# --- registry ----------------------------------------------------------------------------


def _register(
    db: Session, blobs: LocalBlobStore, artifacts: dict[str, bytes], name: str = "pm", **kw: Any
) -> Any:
    return registry.register_version(
        db,
        blobs,
        name,
        artifacts,
        kw.get("metrics", {"edge": {"accuracy": 0.9}}),
        kw.get("lineage", {"stream": "telemetry@3"}),
        "alice",
        kw.get("now", NOW),
    )


def test_register_reads_tensor_metadata_and_stores_blobs(
    db: Session, blobs: LocalBlobStore, onnx_models: tuple[bytes, bytes]
) -> None:
    edge, cloud = onnx_models

    info = _register(db, blobs, {"edge": edge, "cloud": cloud})

    assert (info.name, info.version, info.stage, info.registered_by) == (
        "pm",
        "1",
        "candidate",
        "alice",
    )
    assert info.metrics == {"edge": {"accuracy": 0.9}}
    assert info.lineage == {"stream": "telemetry@3"}
    by_variant = {a.variant: a for a in info.artifacts}
    assert by_variant["edge"].sha256 == hashlib.sha256(edge).hexdigest()
    assert by_variant["cloud"].size == len(cloud)
    assert by_variant["edge"].inputs == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert by_variant["edge"].outputs == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
    ]
    assert blobs.get("models/pm/1/edge.onnx") == edge
    assert registry.get_version(db, "pm", "1") == info


def test_versions_increment_and_artifacts_round_trip(
    db: Session, blobs: LocalBlobStore, onnx_models: tuple[bytes, bytes]
) -> None:
    first, second = onnx_models
    _register(db, blobs, {"edge": first})
    _register(db, blobs, {"edge": second, "cloud": first}, now=NOW + 5)
    _register(db, blobs, {"cloud": second}, name="other")

    assert registry.read_artifact(db, blobs, "pm", "1", "edge") == first
    assert registry.read_artifact(db, blobs, "pm", 2, "edge") == second
    summaries = registry.list_models(db)
    assert [(s.name, s.versions, s.deployed_version) for s in summaries] == [
        ("other", ["1"], None),
        ("pm", ["1", "2"], None),
    ]
    latest = registry.latest_version(db, "pm")
    assert latest is not None and (latest.version, latest.created_at) == ("2", NOW + 5)
    assert registry.latest_version(db, "ghost") is None


def test_concurrent_registrations_get_distinct_versions(
    metadata_engine: Engine, blobs: LocalBlobStore, onnx_models: tuple[bytes, bytes]
) -> None:
    make_session = session_factory(metadata_engine)
    barrier = threading.Barrier(4)
    versions: list[str] = []
    errors: list[BaseException] = []

    def register(model: bytes) -> None:
        try:
            with make_session() as session:
                barrier.wait()
                versions.append(_register(session, blobs, {"edge": model}).version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(onnx_models[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(versions) == ["1", "2", "3", "4"]
    with make_session() as session:
        for version in versions:  # each version's blob matches its own metadata
            registry.read_artifact(session, blobs, "pm", version, "edge")


@pytest.mark.parametrize("garbage", [b"", b"not an onnx model", bytes(range(256))])
def test_invalid_onnx_is_refused_and_nothing_stored(
    db: Session, blobs: LocalBlobStore, onnx_models: tuple[bytes, bytes], garbage: bytes
) -> None:
    error = _api_error(
        ErrorCode.INVALID_INPUT,
        400,
        lambda: _register(db, blobs, {"edge": onnx_models[0], "cloud": garbage}),
    )

    assert "cloud artifact is not a valid ONNX model" in error.message
    assert registry.list_models(db) == []
    assert not blobs.root.exists()


def test_non_tensor_outputs_are_refused(db: Session, blobs: LocalBlobStore) -> None:
    error = _api_error(
        ErrorCode.INVALID_INPUT,
        400,
        lambda: _register(db, blobs, {"edge": _onnx_classifier(0, zipmap=True)}),
    )
    assert "zipmap" in error.message


@pytest.mark.parametrize(
    ("name", "artifacts", "metrics", "expected"),
    [
        ("Bad Name", {"edge"}, {}, "model name"),
        ("pm", set(), {}, "keyed by variant"),
        ("pm", {"gpu"}, {}, "keyed by variant"),
        ("pm", {"edge"}, {"auc": float("nan")}, "metrics must be plain JSON"),
        ("pm", {"edge"}, {"auc": np.float32(0.5)}, "metrics must be plain JSON"),
    ],
)
def test_register_arguments_are_validated(
    db: Session,
    blobs: LocalBlobStore,
    onnx_models: tuple[bytes, bytes],
    name: str,
    artifacts: set[str],
    metrics: dict[str, Any],
    expected: str,
) -> None:
    payload = {variant: onnx_models[0] for variant in artifacts}
    error = _api_error(
        ErrorCode.INVALID_INPUT,
        400,
        lambda: _register(db, blobs, payload, name=name, metrics=metrics),
    )
    assert expected in error.message
    assert registry.list_models(db) == []


def test_lookups_of_missing_things_are_404(
    db: Session, blobs: LocalBlobStore, onnx_models: tuple[bytes, bytes]
) -> None:
    _register(db, blobs, {"edge": onnx_models[0]})

    _api_error(ErrorCode.MODEL_NOT_FOUND, 404, lambda: registry.get_version(db, "ghost", "1"))
    error = _api_error(
        ErrorCode.VERSION_NOT_FOUND, 404, lambda: registry.get_version(db, "pm", "9")
    )
    assert "it has 1" in error.message
    _api_error(ErrorCode.VERSION_NOT_FOUND, 404, lambda: registry.get_version(db, "pm", "one"))
    _api_error(
        ErrorCode.NOT_FOUND, 404, lambda: registry.read_artifact(db, blobs, "pm", "1", "cloud")
    )
    _api_error(
        ErrorCode.MODEL_NOT_FOUND,
        404,
        lambda: registry.read_artifact(db, blobs, "ghost", "1", "edge"),
    )


def test_corrupted_blob_is_detected(
    db: Session, blobs: LocalBlobStore, onnx_models: tuple[bytes, bytes]
) -> None:
    _register(db, blobs, {"edge": onnx_models[0]})
    path = blobs.root / "models/pm/1/edge.onnx"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")

    error = _api_error(
        ErrorCode.DIGEST_MISMATCH,
        500,
        lambda: registry.read_artifact(db, blobs, "pm", "1", "edge"),
    )
    assert "corrupted" in error.message

    path.unlink()
    _api_error(
        ErrorCode.INTERNAL, 500, lambda: registry.read_artifact(db, blobs, "pm", "1", "edge")
    )


def test_deployment_moves_stages(
    db: Session, blobs: LocalBlobStore, onnx_models: tuple[bytes, bytes]
) -> None:
    for model in onnx_models:
        _register(db, blobs, {"edge": model})
    _register(db, blobs, {"edge": onnx_models[0]})

    first = registry.set_deployment(db, "pm", "1", "alice", NOW)
    second = registry.set_deployment(db, "pm", 2, "bob", NOW + 1)

    assert (first.version, second.version) == ("1", "2")
    stages = [registry.get_version(db, "pm", v).stage for v in ("1", "2", "3")]
    assert stages == ["archived", "production", "candidate"]
    assert registry.get_deployments(db) == [second]
    assert registry.list_models(db)[0].deployed_version == "2"
    _api_error(
        ErrorCode.VERSION_NOT_FOUND, 404, lambda: registry.set_deployment(db, "pm", "7", "a", NOW)
    )
    _api_error(
        ErrorCode.MODEL_NOT_FOUND, 404, lambda: registry.set_deployment(db, "x", "1", "a", NOW)
    )
    assert registry.get_deployments(db) == [second]


def test_desired_state_generation_changes_exactly_when_content_changes(
    db: Session, blobs: LocalBlobStore, onnx_models: tuple[bytes, bytes]
) -> None:
    edge, cloud = onnx_models
    settings = {"sync_interval_s": 2.0}
    empty = desired_state(db, "gw-1", settings)
    _register(db, blobs, {"edge": edge, "cloud": cloud})
    _register(db, blobs, {"cloud": cloud}, name="big")
    assert desired_state(db, "gw-1", settings).generation == empty.generation

    registry.set_deployment(db, "pm", "1", "alice", NOW)
    registry.set_deployment(db, "big", "1", "alice", NOW)
    state = desired_state(db, "gw-1", settings)

    assert empty.models == [] and state.generation != empty.generation
    assert [(m.name, m.version, m.variant) for m in state.models] == [
        ("big", "1", "cloud"),  # no edge variant: the cloud one is the fallback
        ("pm", "1", "edge"),
    ]
    assigned = state.models[1]
    assert (assigned.sha256, assigned.size) == (hashlib.sha256(edge).hexdigest(), len(edge))
    assert assigned.artifact_path == "/api/v1/models/pm/versions/1/artifacts/edge"
    # Same content, another call or an idempotent redeploy: same generation.
    registry.set_deployment(db, "pm", "1", "bob", NOW + 50)
    assert desired_state(db, "gw-2", dict(settings)).generation == state.generation
    # Any content change: a new generation.
    changed = desired_state(db, "gw-1", {"sync_interval_s": 3.0})
    assert changed.generation != state.generation
    _register(db, blobs, {"edge": cloud})
    registry.set_deployment(db, "pm", "2", "alice", NOW + 60)
    assert desired_state(db, "gw-1", settings).generation not in {
        state.generation,
        changed.generation,
        empty.generation,
    }
