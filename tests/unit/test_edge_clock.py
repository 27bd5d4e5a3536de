"""The edge's clock estimate, its hold on retention, and the words for link problems."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx
import pytest

from hybridai.edge.clock import ClockSkew, describe_skew, server_time
from hybridai.edge.instance_lock import DataDirLocked, InstanceLock
from hybridai.edge.link_problems import (
    CERT_NOT_YET_VALID,
    Probe,
    diagnose,
    explain_time_error,
    outside_own_certificate,
)
from hybridai.edge.startup_checks import cloud_url_problem

NOW = 1_800_000_000.0
DAY = 86400.0


def test_the_skew_is_the_median_of_round_trip_corrected_samples() -> None:
    clock = ClockSkew(bound_s=300)
    assert clock.skew_s is None and clock.cloud_time(NOW) == NOW

    clock.observe(NOW, NOW + 0.2, NOW - 2 * DAY + 0.1)  # two days ahead, 0.2 s round trip
    clock.observe(NOW + 5, NOW + 5.4, NOW + 5.2 - 2 * DAY)
    clock.observe(NOW + 9, NOW + 9.1, NOW + 9.05 - 2 * DAY + 30)  # one odd answer
    clock.observe(NOW + 20, NOW + 40, NOW)  # too slow to say anything: ignored

    assert clock.skew_s == pytest.approx(2 * DAY, abs=1e-6)
    assert clock.cloud_time(NOW) == pytest.approx(NOW - 2 * DAY)


def test_retention_waits_until_the_clock_is_checked_and_while_it_is_too_far() -> None:
    clock = ClockSkew(bound_s=300)
    assert "not yet been compared" in (clock.hold() or "")

    clock.observe(NOW, NOW, NOW - 60)
    assert clock.hold() is None  # a minute off: within the bound

    for _ in range(3):
        clock.observe(NOW, NOW, NOW + 2 * DAY)
    hold = clock.hold() or ""
    assert "clock skew" in hold and "2.0 days behind" in hold and "NTP" in hold


def test_the_date_header_is_read_and_a_bad_one_ignored() -> None:
    assert server_time("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777.5
    assert server_time("yesterday") is None
    assert server_time(None) is None


def test_the_skew_reads_in_human_units() -> None:
    assert describe_skew(2 * DAY) == "this device's clock is 2.0 days ahead of the cloud's"
    assert describe_skew(-90) == "this device's clock is 1.5 min behind the cloud's"


def _failed_call(cause: BaseException) -> httpx.ConnectError:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise httpx.ConnectError("connect failed") from inner
    except httpx.ConnectError as exc:
        return exc


def test_a_certificate_time_error_is_told_apart_from_an_untrusted_one() -> None:
    not_yet = ssl.SSLCertVerificationError(1, "certificate verify failed")
    not_yet.verify_code = CERT_NOT_YET_VALID
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_code = 20

    timed = diagnose(_failed_call(not_yet), "https://cloud.example:8400")
    trust = diagnose(_failed_call(untrusted), "https://cloud.example:8400")
    refused = diagnose(_failed_call(ConnectionRefusedError()), "https://cloud.example:8400")

    assert timed.time_error and "clock" in timed.message
    assert not trust.time_error and "--ca-file" in trust.message
    assert refused.key == "refused" and "nothing listens at cloud.example:8400" in refused.message


def test_a_time_error_is_blamed_on_the_clock_only_when_the_cloud_says_so() -> None:
    window = (NOW - 10 * DAY, NOW + 700 * DAY)
    behind = Probe(NOW - 2 * DAY, NOW - 2 * DAY + 0.2, NOW + 0.1, *window)
    stale = Probe(NOW, NOW + 0.2, NOW + 800 * DAY, *window)

    assert explain_time_error(behind, NOW - 2 * DAY).startswith(
        "clock skew: this device's clock is 2.0 days behind the cloud's"
    )
    assert "renew the cloud's server certificate" in explain_time_error(stale, NOW)
    assert "clock skew" in explain_time_error(None, NOW)


def test_a_clock_before_its_own_certificate_is_named_clock_skew() -> None:
    start, end = NOW, NOW + 3 * DAY

    behind = outside_own_certificate(NOW - 2 * DAY, start, end) or ""

    assert behind.startswith("clock skew: this device's clock") and "2.0 days behind" in behind
    assert outside_own_certificate(NOW + DAY, start, end) is None


def test_the_skew_recovers_once_most_recent_answers_agree(caplog: pytest.LogCaptureFixture) -> None:
    clock = ClockSkew(bound_s=300)
    clock.observe(NOW, NOW, NOW + 2 * DAY)
    for i in range(8):
        clock.observe(NOW + i, NOW + i, NOW + i)  # NTP fixed it: the answers agree again

    assert clock.hold() is None and clock.skew_s == pytest.approx(0.0)
    assert "clock skew resolved" in caplog.text


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://cloud.example:8400", None),
        ("http://cloud.example:8400", "plain http"),
        ("cloud.example:8400", "not an https:// URL"),
        ("https://cloud.example:notaport", "not a URL"),
        ("https://:8400", "names no host"),
        ("https://cloud.example:8400/?x=1", "query or fragment"),
    ],
)
def test_a_cloud_url_that_cannot_work_is_named(url: str, problem: str | None) -> None:
    found = cloud_url_problem(url)
    assert (found is None) if problem is None else (problem in (found or "")), found


def test_a_second_lock_on_one_data_directory_names_the_holder(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(DataDirLocked, match=rf"PID {os.getpid()}\b"):
            InstanceLock(tmp_path).acquire()
    finally:
        first.release()
    again = InstanceLock(tmp_path)
    again.acquire()  # released: free again
    again.release()
