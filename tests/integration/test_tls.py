"""mTLS against a real uvicorn server on loopback: who gets in, who is refused, and why.

One cloud (real stores, real PKI) serves this module over TLS 1.3 with the ASGI TLS
extension; devices enroll through the API with their own keys and CSRs, as edges do.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _servers import serving_in_thread
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.devices import fleet
from hybridai.cloud.settings import CloudSettings
from hybridai.link import pki
from hybridai.link.tls import ServerTls, client_context
from hybridai.link.transport import server_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class TlsCloud:
    cloud: Cloud
    url: str
    ca_file: Path
    files: Path

    def token(self, device: str, site: str = "plant-a") -> str:
        with self.cloud.session() as session:
            return fleet.create_enrollment_token(session, site, device, 600, time.time()).token

    def enroll(self, device: str, token: str, csr: str) -> httpx.Response:
        body = {
            "token": token,
            "device_id": device,
            "kind": "sensor-gateway",
            "capabilities": {"cores": 1, "memory_mb": 256},
            "agent_version": "test",
            "csr": csr,
        }
        with httpx.Client(base_url=self.url, verify=client_context(self.ca_file)) as http:
            return http.post("/api/v1/enroll", json=body)

    def device(self, device: str) -> Device:
        """Enroll ``device`` as an edge would: its own key, a CSR, the signed certificate."""
        key = pki.new_key()
        response = self.enroll(device, self.token(device), pki.device_csr(key, device))
        assert response.status_code == 200, response.text
        cert = response.json()["certificate"]
        folder = self.files / f"{device}-{pki.serial_hex(pki.load_cert(cert))}"
        return Device.write(folder, key, cert, self)

    def revoke(self, device: str) -> None:
        with self.cloud.session() as session:
            fleet.revoke_device(session, device, time.time())


@dataclass
class Device:
    name: str
    key: pki.PrivateKey
    cert_file: Path
    key_file: Path
    ca_file: Path

    @classmethod
    def write(cls, folder: Path, key: pki.PrivateKey, cert_pem: str, cloud: TlsCloud) -> Device:
        folder.mkdir(parents=True, exist_ok=True)
        pki.write_private(folder / "device.key", pki.key_pem(key))
        pki.write_public(folder / "device.crt", cert_pem.encode())
        name = pki.device_id_of(pki.load_cert(cert_pem))
        return cls(name, key, folder / "device.crt", folder / "device.key", cloud.ca_file)

    def client(self, url: str) -> httpx.Client:
        context = client_context(self.ca_file, self.cert_file, self.key_file)
        return httpx.Client(base_url=url, verify=context, timeout=10)


@pytest.fixture(scope="module")
def tls_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCloud]:
    root = tmp_path_factory.mktemp("tls-cloud")
    cloud = open_cloud(CloudSettings(data_dir=root / "cloud"))
    pki_dir = cloud.settings.pki_dir
    tls = ServerTls(pki_dir / "server.crt", pki_dir / "server.key", pki_dir / "ca.crt")
    port = _free_port()
    config = server_config(create_app(cloud), "127.0.0.1", port, tls=tls)
    with serving_in_thread(config):
        yield TlsCloud(cloud, f"https://127.0.0.1:{port}", tls.ca_file, root / "devices")


def _error(response: httpx.Response) -> tuple[int, str]:
    body: dict[str, Any] = response.json()
    assert body.get("error"), body
    return response.status_code, body["code"]


def _desired(http: httpx.Client, device: str) -> httpx.Response:
    return http.get(f"/api/v1/devices/{device}/desired-state")


# -- the handshake ---------------------------------------------------------------------


def test_a_tls12_client_is_refused(tls_cloud: TlsCloud) -> None:
    context = ssl.create_default_context(cafile=str(tls_cloud.ca_file))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{tls_cloud.url}/v2/health/live", verify=context)


def test_a_tls13_client_trusting_the_ca_gets_in(tls_cloud: TlsCloud) -> None:
    response = httpx.get(
        f"{tls_cloud.url}/v2/health/live", verify=client_context(tls_cloud.ca_file)
    )
    assert response.json() == {"live": True}


def test_a_client_that_does_not_trust_the_platform_ca_refuses_the_cloud(
    tls_cloud: TlsCloud,
) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_cloud.url}/v2/health/live", verify=client_context(None))


def test_a_certificate_from_another_ca_is_refused_at_the_handshake(
    tls_cloud: TlsCloud, tmp_path: Path
) -> None:
    genuine = tls_cloud.device("gw-other-ca")
    rogue_ca, rogue_key = pki.create_ca(time.time(), "rogue CA")
    csr = pki.device_csr(genuine.key, genuine.name)  # same name, same key: only the CA differs
    forged = pki.sign_device(rogue_ca, rogue_key, csr, genuine.name, time.time(), 3600)
    device = Device.write(tmp_path, genuine.key, pki.cert_pem(forged), tls_cloud)
    with device.client(tls_cloud.url) as http, pytest.raises(httpx.TransportError):
        _desired(http, genuine.name)


def test_an_expired_certificate_is_refused_at_the_handshake(
    tls_cloud: TlsCloud, tmp_path: Path
) -> None:
    genuine = tls_cloud.device("gw-expired")
    ca, ca_key = tls_cloud.cloud.device_authority().ca, tls_cloud.cloud.device_authority().key
    csr = pki.device_csr(genuine.key, genuine.name)
    expired = pki.sign_device(ca, ca_key, csr, genuine.name, time.time() - 7200, 3600)
    device = Device.write(tmp_path, genuine.key, pki.cert_pem(expired), tls_cloud)
    with device.client(tls_cloud.url) as http, pytest.raises(httpx.TransportError):
        _desired(http, genuine.name)


# -- identity and authorisation ---------------------------------------------------------


def test_device_routes_refuse_a_client_without_a_certificate(tls_cloud: TlsCloud) -> None:
    tls_cloud.device("gw-nocert")
    with httpx.Client(base_url=tls_cloud.url, verify=client_context(tls_cloud.ca_file)) as http:
        assert _error(_desired(http, "gw-nocert")) == (401, "certificate_required")
        report = {"device_id": "gw-nocert", "agent_version": "t", "uptime_s": 1.0}
        status = http.post("/api/v1/devices/gw-nocert/status", json=report)
        assert _error(status) == (401, "certificate_required")


def test_a_header_cannot_claim_a_device_identity(tls_cloud: TlsCloud) -> None:
    tls_cloud.device("gw-header")
    headers = {"X-Client-Cert": "gw-header", "X-Device-Id": "gw-header", "Authorization": "x"}
    with httpx.Client(base_url=tls_cloud.url, verify=client_context(tls_cloud.ca_file)) as http:
        assert _error(http.get("/api/v1/devices/gw-header/desired-state", headers=headers)) == (
            401,
            "unauthenticated",
        )


def test_a_device_reaches_its_own_resources_and_gets_403_for_another_devices(
    tls_cloud: TlsCloud,
) -> None:
    a, b = tls_cloud.device("gw-a"), tls_cloud.device("gw-b")
    with a.client(tls_cloud.url) as http:
        assert _desired(http, "gw-a").status_code == 200
        report = {"device_id": "gw-a", "agent_version": "t", "uptime_s": 1.0}
        assert http.post("/api/v1/devices/gw-a/status", json=report).status_code == 204
        assert _error(_desired(http, b.name)) == (403, "forbidden")
        other = dict(report, device_id=b.name)
        assert _error(http.post(f"/api/v1/devices/{b.name}/status", json=other)) == (
            403,
            "forbidden",
        )
        # A device is not a person: operator routes refuse it too.
        assert _error(http.get("/api/v1/devices"))[0] == 403


def test_a_revoked_device_is_refused_on_its_next_request_on_the_same_connection(
    tls_cloud: TlsCloud,
) -> None:
    device = tls_cloud.device("gw-revoked")
    with device.client(tls_cloud.url) as http:
        assert _desired(http, device.name).status_code == 200
        tls_cloud.revoke(device.name)
        assert _error(_desired(http, device.name)) == (401, "certificate_rejected")
        assert "revoked" in _desired(http, device.name).json()["error"]


def test_re_enrolling_revokes_the_old_certificate(tls_cloud: TlsCloud, tmp_path: Path) -> None:
    old = tls_cloud.device("gw-re")
    new = tls_cloud.device("gw-re")  # a second token: a replaced device, say
    with old.client(tls_cloud.url) as http:
        assert _error(_desired(http, "gw-re")) == (401, "certificate_rejected")
    with new.client(tls_cloud.url) as http:
        assert _desired(http, "gw-re").status_code == 200


# -- enrollment --------------------------------------------------------------------------


def test_a_csr_for_another_devices_name_is_refused_and_spends_no_token(
    tls_cloud: TlsCloud,
) -> None:
    token = tls_cloud.token("gw-csr")
    wrong = tls_cloud.enroll("gw-csr", token, pki.device_csr(pki.new_key(), "gw-victim"))
    assert _error(wrong) == (403, "csr_device_mismatch")
    garbage = tls_cloud.enroll("gw-csr", token, "-----BEGIN CERTIFICATE REQUEST-----\nnope\n")
    assert _error(garbage) == (400, "invalid_csr")
    right = tls_cloud.enroll("gw-csr", token, pki.device_csr(pki.new_key(), "gw-csr"))
    assert right.status_code == 200, right.text
    body = right.json()
    assert body["ca_certificate"] == tls_cloud.ca_file.read_text()
    assert pki.device_id_of(pki.load_cert(body["certificate"])) == "gw-csr"
    assert "credential" not in body


def test_an_enrollment_token_used_twice_is_refused(tls_cloud: TlsCloud) -> None:
    token = tls_cloud.token("gw-twice")
    first = tls_cloud.enroll("gw-twice", token, pki.device_csr(pki.new_key(), "gw-twice"))
    assert first.status_code == 200, first.text
    again = tls_cloud.enroll("gw-twice", token, pki.device_csr(pki.new_key(), "gw-twice"))
    assert _error(again) == (401, "bad_enrollment_token")
    assert "already used" in again.json()["error"]


# -- renewal -----------------------------------------------------------------------------


def test_renewal_gives_a_new_certificate_and_the_old_one_works_until_it_expires(
    tls_cloud: TlsCloud, tmp_path: Path
) -> None:
    device = tls_cloud.device("gw-renew")
    csr = pki.device_csr(device.key, device.name)
    with device.client(tls_cloud.url) as http:
        response = http.post(f"/api/v1/devices/{device.name}/certificate", json={"csr": csr})
        assert response.status_code == 200, response.text
        stolen = pki.device_csr(pki.new_key(), "gw-a")
        other = http.post("/api/v1/devices/gw-a/certificate", json={"csr": stolen})
        assert _error(other) == (403, "forbidden")
        mine_named_other = http.post(
            f"/api/v1/devices/{device.name}/certificate", json={"csr": stolen}
        )
        assert _error(mine_named_other) == (403, "csr_device_mismatch")
    renewed = Device.write(tmp_path, device.key, response.json()["certificate"], tls_cloud)
    old_cert = pki.load_cert(device.cert_file.read_bytes())
    new_cert = pki.load_cert(renewed.cert_file.read_bytes())
    assert pki.serial_hex(new_cert) != pki.serial_hex(old_cert)
    assert pki.not_after(new_cert) >= pki.not_after(old_cert)
    for holder in (device, renewed):
        with holder.client(tls_cloud.url) as http:
            assert _desired(http, device.name).status_code == 200


def test_operators_cannot_renew_a_device_certificate(tls_cloud: TlsCloud) -> None:
    tls_cloud.device("gw-op")
    token = (tls_cloud.cloud.settings.data_dir / "admin.token").read_text().strip()
    csr = pki.device_csr(pki.new_key(), "gw-op")
    with httpx.Client(
        base_url=tls_cloud.url,
        verify=client_context(tls_cloud.ca_file),
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        response = http.post("/api/v1/devices/gw-op/certificate", json={"csr": csr})
    assert _error(response)[0] in (401, 403)
