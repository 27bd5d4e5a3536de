import inspect
import math

import numpy as np
import pytest

from hybridai.orchestrator import (
    HeldOutSplit,
    Outcomes,
    ValidationSplit,
    apgr,
    cpt,
    curve,
    evaluate,
    fit_quality,
    fit_share,
    isotonic,
    oracle,
    oracle_curve,
    pgr_at,
    quality_at,
)

# Four examples, least confident first: the edge gets the 1st and 3rd wrong, the cloud none.
TINY = ValidationSplit(
    confidence=[0.1, 0.2, 0.3, 0.4], edge_quality=[0, 1, 0, 1], cloud_quality=[1, 1, 1, 1]
)


def synthetic(n, seed):
    """Edge right with probability = its confidence; cloud right 95% of the time."""
    rng = np.random.default_rng(seed)
    conf = rng.random(n)
    edge = (rng.random(n) < 0.5 + 0.5 * conf).astype(float)
    cloud = (rng.random(n) < 0.95).astype(float)
    return conf, edge, cloud


def test_tiny_curve_by_hand():
    c = curve(TINY)
    assert list(c.shares) == [0, 0.25, 0.5, 0.75, 1]
    assert list(c.qualities) == [0.5, 0.75, 0.75, 1.0, 1.0]
    assert list(c.pgr()) == [0, 0.5, 0.5, 1, 1]
    assert (c.edge_quality, c.cloud_quality) == (0.5, 1.0)


def test_tiny_cpt_and_apgr_by_hand():
    c = curve(TINY)
    # PGR reaches 0.5 exactly at the first point (share 0.25); 0.8 is 60% of the way from
    # (0.5, 0.5) to (0.75, 1.0): 0.5 + 0.6 * 0.25 = 0.65.
    assert cpt(c, 0.5) == pytest.approx(0.25)
    assert cpt(c, 0.8) == pytest.approx(0.65)
    assert cpt(c, 0.0) == 0.0
    # trapezoids of width 0.25 over PGR 0, .5, .5, 1, 1: .25 * (.25 + .5 + .75 + 1)
    assert apgr(c) == pytest.approx(0.625)


def test_curve_thresholds_reproduce_their_points():
    conf, edge, cloud = synthetic(500, 1)
    split = ValidationSplit(conf, edge, cloud)
    for point in curve(split).points():
        again = evaluate(split, point.threshold)
        assert (again.cloud_share, again.quality) == pytest.approx(
            (point.cloud_share, point.quality)
        )


def test_tied_confidences_escalate_together():
    c = curve(ValidationSplit([0.5] * 4, [1, 0, 1, 0], [1, 1, 1, 1]))
    assert list(c.shares) == [0, 1]
    assert fit_share(ValidationSplit([0.5] * 4, [1, 0, 1, 0], [1, 1, 1, 1]), 0.3).cloud_share == 0


@pytest.mark.parametrize("target", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_fit_share_hits_the_target_on_validation_and_on_fresh_data(target):
    calibration = fit_share(ValidationSplit(*synthetic(2000, 2)), target)
    assert abs(calibration.cloud_share - target) <= 1 / 2000
    realised = evaluate(HeldOutSplit(*synthetic(5000, 3)), calibration.threshold)
    assert abs(realised.cloud_share - target) < 0.03


def test_fit_quality_takes_the_fewest_cloud_calls_that_reach_the_target():
    split = ValidationSplit(*synthetic(2000, 4))
    c = curve(split)
    target = (c.edge_quality + c.cloud_quality) / 2
    fitted = fit_quality(split, target)
    assert fitted.met and fitted.quality >= target
    cheaper = [p for p in c.points() if p.cloud_share < fitted.cloud_share]
    assert all(p.quality < target for p in cheaper)


def test_fit_quality_says_when_the_target_is_out_of_reach():
    fitted = fit_quality(TINY, 1.01)
    assert not fitted.met and fitted.quality == 1.0 and fitted.cloud_share == 0.75


def test_calibration_refuses_anything_but_a_validation_split():
    conf, edge, cloud = synthetic(100, 5)
    for split in (HeldOutSplit(conf, edge, cloud), Outcomes(conf, edge, cloud)):
        with pytest.raises(TypeError):
            fit_share(split, 0.3)
        with pytest.raises(TypeError):
            fit_quality(split, 0.9)


def test_calibration_cannot_be_handed_test_data():
    for fit in (fit_share, fit_quality):
        params = list(inspect.signature(fit).parameters)
        assert len(params) == 2 and params[0] == "split"
        assert "ValidationSplit" in str(inspect.signature(fit).parameters["split"].annotation)


def test_random_router_scores_half_and_a_perfect_one_nearly_one():
    rng = np.random.default_rng(6)
    n = 20000
    edge = (rng.random(n) < 0.8).astype(float)
    cloud = np.ones(n)
    random_router = curve(HeldOutSplit(rng.random(n), edge, cloud))
    assert apgr(random_router) == pytest.approx(0.5, abs=0.02)
    perfect = curve(HeldOutSplit(edge + rng.random(n) * 0.5, edge, cloud))  # wrong = least sure
    assert apgr(perfect) > 0.89 and cpt(perfect, 0.8) == pytest.approx(0.8 * 0.2, abs=0.01)


def test_no_gap_gives_nan_not_a_fake_figure():
    c = curve(HeldOutSplit([0.1, 0.2], [1, 1], [1, 0]))
    assert math.isnan(apgr(c)) and math.isnan(cpt(c, 0.5))


def test_oracle_escalates_only_where_the_cloud_is_better():
    best = oracle(TINY)
    assert (best.cloud_share, best.quality) == (0.5, 1.0)


def test_outcomes_validate_their_shape():
    with pytest.raises(ValueError):
        ValidationSplit([0.1, 0.2], [1], [1, 1])
    with pytest.raises(ValueError):
        ValidationSplit([], [], [])
    with pytest.raises(ValueError):
        ValidationSplit([math.nan], [1], [1])


@pytest.mark.parametrize("n", [100, 200, 500])
def test_random_routing_cpt50_is_half_on_small_sets(n):
    """The first crossing of the raw curve put random routing at ~0.48 on ~200 examples."""
    rng = np.random.default_rng(n)
    figures = []
    for _ in range(300):
        edge = (rng.random(n) < 0.8).astype(float)
        cloud = (rng.random(n) < 0.97).astype(float)
        c = curve(HeldOutSplit(rng.random(n), edge, cloud))
        if c.gap > 0:
            figures.append(cpt(c, 0.5))
    assert np.mean(figures) == pytest.approx(0.5, abs=0.015)


def test_cpt_is_np_interp_on_a_monotone_curve():
    conf, edge, cloud = synthetic(3000, 7)
    c = curve(HeldOutSplit(conf, edge, cloud))
    monotone = isotonic(c.pgr())
    for level in (0.2, 0.5, 0.8):
        expected = np.interp(level, monotone, c.shares)
        assert cpt(c, level) == pytest.approx(expected, abs=0.01)


def test_cpt_rises_with_the_gap_recovered():
    c = curve(HeldOutSplit(*synthetic(400, 8)))
    figures = [cpt(c, level) for level in np.linspace(0.05, 0.95, 19)]
    assert (np.diff(figures) >= 0).all()


def test_isotonic_fit_is_monotone_and_keeps_the_mean():
    values = np.random.default_rng(9).normal(size=500).cumsum()
    fitted = isotonic(values)
    assert (np.diff(fitted) >= -1e-12).all()
    assert fitted.mean() == pytest.approx(values.mean())
    assert list(isotonic(np.array([1.0, 3.0, 2.0, 4.0]))) == [1.0, 2.5, 2.5, 4.0]


def test_quality_at_is_taken_at_exactly_that_share():
    c = curve(TINY)  # shares 0, .25, .5, .75, 1; qualities .5, .75, .75, 1, 1
    assert quality_at(c, 0.3) == pytest.approx(0.75)
    assert quality_at(c, 0.625) == pytest.approx(0.875)
    assert pgr_at(c, 0.625) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        quality_at(c, 1.5)


def test_oracle_curve_recovers_the_gap_at_the_share_of_edge_errors():
    rng = np.random.default_rng(10)
    n = 2000
    edge = (rng.random(n) < 0.8).astype(float)
    cloud = np.ones(n)
    c = oracle_curve(HeldOutSplit(rng.random(n), edge, cloud))
    errors = 1 - edge.mean()
    assert cpt(c, 0.5) == pytest.approx(0.5 * errors, abs=0.002)
    assert cpt(c, 1.0) == pytest.approx(errors, abs=0.002)
    assert apgr(c) == pytest.approx(1 - errors / 2, abs=0.002)
    assert oracle(HeldOutSplit(rng.random(n), edge, cloud)).cloud_share == pytest.approx(errors)
