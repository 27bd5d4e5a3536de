import math

import numpy as np
import pytest

from hybridai.orchestrator.cascade import entropy_confidence, margin, max_probability
from hybridai.orchestrator.deferral import choose, decide, router_features, router_width
from hybridai.protocol.deferral import DeferralMethod

ROUTER, THRESHOLD = DeferralMethod.ROUTER, DeferralMethod.THRESHOLD


def test_router_features_are_input_probabilities_and_the_three_measures():
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    p = np.array([[0.7, 0.2, 0.1], [0.34, 0.33, 0.33]])
    rows = router_features(x, p)
    assert rows.dtype == np.float32 and rows.shape == (2, router_width(3, 3))
    np.testing.assert_allclose(rows[:, :3], x)
    np.testing.assert_allclose(rows[:, 3:6], p, rtol=1e-6)
    expected = np.stack([max_probability(p), margin(p), entropy_confidence(p)], axis=1)
    np.testing.assert_allclose(rows[:, 6:], expected, rtol=1e-6)


def test_router_features_take_one_row_flat_and_refuse_mismatched_rows():
    assert router_features([1.0, 2.0], [0.9, 0.1]).shape == (1, 2 + 2 + 3)
    with pytest.raises(ValueError, match="2 input rows but 1 rows"):
        router_features(np.ones((2, 2)), [[0.5, 0.5]])


def test_the_router_decides_when_it_is_the_method_and_answered():
    # The edge is sure of itself (0.9 > 0.5) but the router thinks it is wrong (0.2 < 0.4).
    d = decide(ROUTER, confidence=0.9, threshold=0.5, router_confidence=0.2, router_threshold=0.4)
    assert d.escalate and d.method is ROUTER and (d.score, d.threshold) == (0.2, 0.4)
    kept = decide(ROUTER, 0.1, 0.5, router_confidence=0.8, router_threshold=0.4)
    assert not kept.escalate and kept.method is ROUTER


def test_without_a_router_answer_the_threshold_decides():
    d = decide(ROUTER, confidence=0.1, threshold=0.5, router_confidence=None)
    assert d.escalate and d.method is THRESHOLD
    plain = decide(THRESHOLD, 0.9, 0.5, router_confidence=0.0, router_threshold=1.0)
    assert not plain.escalate and plain.method is THRESHOLD  # the router is not the method


@pytest.mark.parametrize(
    ("router", "plain", "chosen"),
    [
        (0.81, 0.80, ROUTER),
        (0.80, 0.80, THRESHOLD),  # a tie keeps the simpler rule
        (0.70, 0.80, THRESHOLD),
        (math.nan, 0.80, THRESHOLD),  # no router learned
        (0.60, math.nan, ROUTER),
    ],
)
def test_the_router_is_chosen_only_with_a_higher_validation_apgr(router, plain, chosen):
    assert choose({ROUTER: router, THRESHOLD: plain}) is chosen


def test_no_router_figure_keeps_the_threshold():
    assert choose({THRESHOLD: 0.5}) is THRESHOLD


def test_one_row_features_equal_the_batch_ones():
    rng = np.random.default_rng(4)
    x, p = rng.normal(size=(50, 6)), rng.dirichlet([0.5] * 4, size=50)
    p[0] = [1.0, 0.0, 0.0, 0.0]  # 0 log 0
    batch = router_features(x, p)
    for i in range(50):
        np.testing.assert_allclose(router_features(x[i], p[i])[0], batch[i], rtol=1e-6, atol=1e-7)
