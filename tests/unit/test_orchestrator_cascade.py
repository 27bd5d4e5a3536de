import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridai.orchestrator import CascadeRule, Measure, escalate
from hybridai.orchestrator.cascade import (
    band_confidence,
    entropy_confidence,
    margin,
    max_probability,
    spread_confidence,
)

MEASURES = [max_probability, margin, entropy_confidence]


def test_hand_computed_measures():
    p = [0.7, 0.2, 0.1]
    assert max_probability(p)[0] == pytest.approx((0.7 - 1 / 3) / (2 / 3))
    assert margin(p)[0] == pytest.approx(0.5)
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert entropy_confidence(p)[0] == pytest.approx(1 - h / math.log(3))


@pytest.mark.parametrize("measure", MEASURES)
def test_uniform_is_zero_and_one_hot_is_one(measure):
    assert measure([0.25] * 4)[0] == pytest.approx(0.0)
    assert measure([0.0, 1.0, 0.0])[0] == pytest.approx(1.0)


@pytest.mark.parametrize("measure", MEASURES)
def test_measures_are_vectorised_over_rows(measure):
    rows = np.array([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]])
    assert measure(rows).shape == (3,)
    assert list(np.argsort(measure(rows))) == [0, 1, 2]


@given(st.lists(st.floats(0, 1), min_size=2, max_size=10).filter(lambda p: sum(p) > 0))
def test_measures_stay_within_unit_interval(raw):
    p = np.asarray(raw) / sum(raw)
    for measure in MEASURES:
        assert 0.0 <= measure(p)[0] <= 1.0


def test_band_confidence_is_distance_from_threshold_within_band():
    c = band_confidence([0.5, 0.6, 0.3, 2.0], threshold=0.5, band=0.2)
    assert c == pytest.approx([0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError):
        band_confidence([1.0], threshold=0.0, band=0.0)


def test_escalate_is_strictly_below_threshold():
    assert escalate(0.2, 0.3)
    assert not escalate(0.3, 0.3)
    assert not escalate(0.0, 0.0), "threshold 0 never escalates"
    assert escalate(1.0, math.inf), "an infinite threshold always escalates"


def test_rule_uses_its_measure_and_the_least_confident_row():
    rule = CascadeRule(Measure.MARGIN, threshold=0.3)
    assert not escalate(rule.confidence([[0.9, 0.1]]), rule.threshold)
    assert escalate(rule.confidence([[0.9, 0.1], [0.55, 0.45]]), rule.threshold)
    assert rule.confidence(np.zeros((0, 2))) == 1.0


def test_rule_for_anomaly_scores():
    rule = CascadeRule(Measure.BAND, threshold=0.5, score_threshold=3.0, band=1.0)
    assert escalate(rule.confidence([3.2]), rule.threshold)  # near the call: unsure
    assert not escalate(rule.confidence([5.0]), rule.threshold)  # far above: surely anomalous
    assert not escalate(rule.confidence([0.0]), rule.threshold)  # far below: surely normal


def test_bad_probability_shapes_are_refused():
    with pytest.raises(ValueError):
        margin([1.0])


def test_measures_rank_five_class_answers_differently():
    """Margin ignores the tail, entropy weighs it: the measures are not interchangeable."""
    peaked_tail = [0.5, 0.45, 0.05, 0.0, 0.0]  # two contenders, nothing else
    flat_tail = [0.5, 0.2, 0.1, 0.1, 0.1]  # one leader over a spread-out tail
    assert margin(flat_tail)[0] > margin(peaked_tail)[0]
    assert entropy_confidence(peaked_tail)[0] > entropy_confidence(flat_tail)[0]
    assert max_probability(peaked_tail)[0] == pytest.approx(max_probability(flat_tail)[0])


@pytest.mark.parametrize("measure", [Measure.MAX_PROB, Measure.MARGIN, Measure.ENTROPY])
def test_rule_confidences_equal_the_measure_on_k_classes(measure):
    rows = np.random.default_rng(0).dirichlet(np.ones(4), size=50)
    expected = {
        Measure.MAX_PROB: max_probability,
        Measure.MARGIN: margin,
        Measure.ENTROPY: entropy_confidence,
    }[measure](rows)
    assert CascadeRule(measure).confidences(rows) == pytest.approx(expected)


def test_spread_confidence_for_quantiles_and_ensembles():
    quantiles = [[1.0, 1.2], [0.0, 3.0], [5.0, 5.0]]  # (q10, q90) per row
    assert spread_confidence(quantiles, band=2.0) == pytest.approx([0.9, 0.0, 1.0])
    members = [[2.0, 2.1, 1.9], [0.0, 1.0, 0.5]]  # three ensemble members per row
    assert spread_confidence(members, band=1.0) == pytest.approx([0.8, 0.0])
    rule = CascadeRule(Measure.SPREAD, threshold=0.5, band=2.0)
    assert not escalate(rule.confidence([[1.0, 1.2]]), rule.threshold)
    assert escalate(rule.confidence([[1.0, 1.2], [0.0, 3.0]]), rule.threshold)


def test_spread_refuses_one_answer_per_row_and_a_zero_band():
    with pytest.raises(ValueError, match="two answers"):
        spread_confidence([[1.0], [2.0]], band=1.0)
    with pytest.raises(ValueError, match="band"):
        spread_confidence([[1.0, 2.0]], band=0.0)
