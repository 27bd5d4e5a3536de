"""The device's certificates as Prometheus gauges, so an expiry can alert before it bites.

A device certificate lives a day by default and the agent renews it when a third is left; a
certificate that keeps getting closer to its end means renewal fails (cloud unreachable, device
revoked). The CA's end is years away, but when it comes every device stops at once. Each gauge
is the certificate's notAfter as a Unix time (``..._timestamp_seconds``: alert on
``metric - time()``); a certificate that is not on disk has no sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hybridai.edge.identity import DeviceIdentity


def _not_after(path: Path) -> float | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc.timestamp()


class CertificateCollector(Collector):
    """Reads the files on each scrape: a renewal shows at once, with no state to keep in step."""

    def __init__(self, identity: DeviceIdentity) -> None:
        self._identity = identity

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "hybridai_edge_certificate_expiry_timestamp_seconds",
            "When this device's certificate (device) and the CA it trusts (ca) expire, Unix time.",
            labels=["certificate"],
        )
        for name, path in (("device", self._identity.cert_file), ("ca", self._identity.ca_file)):
            end = _not_after(path) if path is not None else None
            if end is not None:
                family.add_metric([name], end)
        yield family
