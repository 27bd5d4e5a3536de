from __future__ import annotations

import random

import pytest

from hybridai.link.retry import Backoff


def test_delay_stays_within_the_growing_cap() -> None:
    backoff = Backoff(base_s=0.5, factor=2.0, max_s=10.0)
    rng = random.Random(1)

    for attempt in range(12):
        cap = min(10.0, 0.5 * 2**attempt)
        draws = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in draws)
        assert max(draws) > 0.8 * cap  # full jitter uses the whole range


def test_cap_grows_geometrically_then_saturates() -> None:
    backoff = Backoff(base_s=0.2, factor=2.0, max_s=30.0)

    caps = [backoff.cap(a) for a in range(10)]

    assert caps[:4] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert caps == sorted(caps)
    assert caps[-1] == 30.0


def test_huge_attempt_does_not_overflow() -> None:
    assert Backoff().cap(100_000) == 30.0
    assert 0.0 <= Backoff().delay(100_000, random.Random(0)) <= 30.0


def test_delay_is_reproducible_with_the_same_rng_seed() -> None:
    backoff = Backoff()

    first = [backoff.delay(a, random.Random(7)) for a in range(5)]
    second = [backoff.delay(a, random.Random(7)) for a in range(5)]

    assert first == second


@pytest.mark.parametrize(
    "kwargs", [{"base_s": 0.0}, {"factor": 0.5}, {"base_s": 2.0, "max_s": 1.0}]
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff().delay(-1, random.Random(0))
