"""NAB scoring (standard profile) on hand-made detections."""

from __future__ import annotations

import math

import pytest

from hybridai.observability import nab


def test_windows_are_centred_and_share_a_tenth_of_the_series() -> None:
    assert nab.windows(1000, [500]) == [(450, 549)]
    assert nab.windows(1000, [300, 700]) == [(275, 324), (675, 724)]
    assert nab.windows(1000, []) == []


def test_scaled_sigmoid_at_its_landmarks() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(4.0) == -1.0


def test_early_detection_scores_more_than_late_and_only_the_first_counts() -> None:
    windows = [(450, 549)]
    early = nab.score([450], windows, 1000)
    late = nab.score([540], windows, 1000)
    assert early == pytest.approx(nab.scaled_sigmoid(-1.0))
    assert 0 < late < early
    assert nab.score([450, 460, 470], windows, 1000) == pytest.approx(early)


def test_a_miss_costs_a_fn_and_a_false_positive_before_any_window_costs_a_fp() -> None:
    windows = [(450, 549)]
    assert nab.score([], windows, 1000) == -1.0
    assert nab.score([300], windows, 1000) == pytest.approx(-1.0 - 0.11)


def test_false_positives_right_after_a_window_cost_less_than_far_ones() -> None:
    windows = [(450, 549)]
    near = nab.score([450, 551], windows, 1000) - nab.score([450], windows, 1000)
    far = nab.score([450, 990], windows, 1000) - nab.score([450], windows, 1000)
    assert -0.11 <= far < near < 0


def test_probationary_detections_are_not_scored() -> None:
    assert nab.score([10], [(450, 549)], 1000) == -1.0


def test_normalised_between_null_and_perfect() -> None:
    windows = [(450, 549), (800, 899)]
    null, perfect = nab.null_score(windows), nab.perfect_score(windows)
    assert nab.normalised(null, null, perfect) == 0.0
    assert nab.normalised(nab.score([450, 800], windows, 1000), null, perfect) == 100.0
    assert nab.normalised(nab.score([450], windows, 1000), null, perfect) == pytest.approx(50.0)
