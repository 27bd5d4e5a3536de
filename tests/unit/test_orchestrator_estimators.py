import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridai.orchestrator import EdgeEstimate, Estimate, Ewma, LinkEstimate, Window
from hybridai.orchestrator.estimators import RTT_PROBE_BYTES


def feed(estimator, samples):
    for s in samples:
        estimator = estimator.update(s)
    return estimator


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50), st.floats(0, 1))
def test_window_quantile_matches_numpy(samples, q):
    w = feed(Window(size=64), samples)
    assert w.quantile(q) == pytest.approx(float(np.quantile(samples, q)), rel=1e-9, abs=1e-9)


def test_window_keeps_only_the_most_recent_samples():
    w = feed(Window(size=3), [100, 100, 100, 1, 2, 3])
    assert w.samples == (1, 2, 3)
    assert w.quantile(0.5) == 2 and w.quantile(1.0) == 3
    assert Window().quantile(0.9) is None
    with pytest.raises(ValueError):
        w.quantile(1.5)


def test_estimate_mean_and_tail():
    e = feed(Estimate(), [10.0] * 9 + [100.0])
    assert e.samples == 10
    assert e.value() == pytest.approx(0.2 * 100 + 0.8 * 10)  # EWMA reacts to the spike
    assert e.value(0.5) == 10.0 and e.value(1.0) == 100.0
    assert Estimate().value() is None and Estimate().value(0.9) is None


def test_estimators_are_values():
    e = Estimate()
    e.update(5.0)
    assert e.samples == 0, "update returns a new estimate and leaves the old one alone"


def test_edge_prediction_is_queue_wait_plus_service():
    edge = EdgeEstimate().observe(service_ms=4.0, wait_ms=0.0)
    assert edge.predict_ms() == 4.0
    assert edge.predict_ms(queue_depth=3) == 3 * 4.0 + 4.0
    assert edge.predict_ms(queue_depth=4, workers=2) == 2 * 4.0 + 4.0
    assert EdgeEstimate().predict_ms(queue_depth=5) is None


def test_link_splits_rtt_bandwidth_and_service():
    link = LinkEstimate().observe(n_bytes=100, total_ms=30.0, service_ms=10.0)
    assert link.rtt_ms.value() == 20.0
    # 1 MB took 120 ms on the wire, 20 of which are the round trip: 1e6 B / 0.1 s
    link = link.observe(n_bytes=1_000_000, total_ms=130.0, service_ms=10.0)
    assert link.bandwidth_bps.value() == pytest.approx(1e7)
    assert link.rtt_ms.value() == 20.0
    assert link.predict_ms(2_000_000) == pytest.approx(20.0 + 200.0 + 10.0)
    assert link.predict_ms(0) == pytest.approx(30.0)


def test_link_without_measurements_predicts_nothing_then_grows_honest():
    assert LinkEstimate().predict_ms(1000) is None
    link = LinkEstimate().observe(n_bytes=RTT_PROBE_BYTES, total_ms=25.0)  # no service reported
    assert link.predict_ms(10**6) == 25.0, "unknown bandwidth and service count as zero"


def test_large_first_call_measures_rtt_and_a_fast_one_refreshes_it():
    link = LinkEstimate().observe(n_bytes=10**6, total_ms=50.0, service_ms=0.0)
    assert link.rtt_ms.value() == 50.0 and link.bandwidth_bps.value() is None
    link = link.observe(n_bytes=10**6, total_ms=30.0, service_ms=0.0)
    assert link.bandwidth_bps.value() is None and link.rtt_ms.samples == 2


def test_link_quantile_prediction_uses_the_slow_tail():
    link = LinkEstimate()
    for total in (20.0, 20.0, 20.0, 80.0):
        link = link.observe(n_bytes=10, total_ms=total, service_ms=0.0)
    assert link.predict_ms(10, quantile=1.0) == 80.0
    assert link.predict_ms(10, quantile=0.5) == 20.0


def test_ewma_starts_at_the_first_sample_then_weighs_by_alpha():
    e = Ewma(alpha=0.5)
    assert e.value is None
    e = e.update(10).update(20)
    assert e.value == 15 and e.samples == 2
