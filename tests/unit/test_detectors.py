"""The anomaly detectors, on hand-made series: quiet on noise, each finds its kind of anomaly."""

from __future__ import annotations

import numpy as np

from hybridai.observability.detectors import (
    EnsembleConfig,
    cusum,
    ensemble,
    ewma,
    robust_z,
    seasonal_period,
    seasonal_residuals,
    threshold,
    windowed_gaussian,
)


def noise(n: int = 120, seed: int = 1) -> np.ndarray:
    return 10.0 + np.random.default_rng(seed).normal(0.0, 1.0, n)


def test_robust_z_flags_a_spike_not_noise() -> None:
    history = list(noise())
    assert robust_z(history, 11.5) is None
    found = robust_z(history, 20.0)
    assert found is not None and found.detector == "robust_z" and found.score > 5
    assert abs(found.baseline - 10.0) < 0.5


def test_robust_z_is_not_fooled_by_outliers_in_its_history() -> None:
    history = list(noise())
    history[10] = history[20] = 1000.0  # a mean and a standard deviation would be swamped
    assert robust_z(history, 20.0) is not None
    assert windowed_gaussian(history, 20.0) is None


def test_a_flat_series_tolerates_a_wobble_but_not_a_jump() -> None:
    flat = [0.0] * 60
    assert robust_z(flat, 0.0) is None
    assert robust_z(flat, 5.0) is not None


def test_ewma_flags_a_sustained_shift_a_point_cannot_show() -> None:
    history = list(noise(100)) + [12.5] * 4  # 2.5 sigma each: no single point alarms
    assert robust_z(history[:-1], history[-1]) is None
    found = ewma(history[:-1], history[-1], width=3.0)
    assert ewma(list(noise(100)), 10.5) is None
    assert found is not None and found.detector == "ewma"


def test_cusum_finds_a_slow_drift() -> None:
    base = list(noise(100))
    drifting = [10.0 + 0.3 * i for i in range(20)]
    found = cusum(base, drifting)
    assert found is not None and found.detector == "change_point" and found.score > 0
    assert cusum(base, list(noise(20, seed=7))) is None
    downward = cusum(base, [10.0 - 0.3 * i for i in range(20)])
    assert downward is not None and downward.score < 0


def test_threshold_above_and_below() -> None:
    assert threshold(0.5, 0.9) is None
    assert threshold(0.95, 0.9) is not None
    assert threshold(3.0, 7.0, above=False) is not None


def test_seasonal_period_found_only_where_there_is_one() -> None:
    t = np.arange(400)
    seasonal = 5 * np.sin(2 * np.pi * t / 48) + np.random.default_rng(2).normal(0, 0.5, 400)
    assert seasonal_period(seasonal, (12, 24, 48, 60)) == 48
    assert seasonal_period(noise(400), (12, 24, 48, 60)) is None


def test_seasonal_residuals_remove_the_cycle() -> None:
    t = np.arange(480)
    series = 10 + 5 * np.sin(2 * np.pi * t / 48)
    residuals = seasonal_residuals(series, 48)
    assert np.max(np.abs(residuals[48:])) < 1e-9


def test_ensemble_quiet_on_a_steady_cycle_and_flags_a_dip_the_cycle_hides() -> None:
    t = np.arange(480)
    rng = np.random.default_rng(3)
    series = 10 + 5 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.3, 480)
    config = EnsembleConfig(period=48)
    assert all(ensemble(series[: i + 1], config) is None for i in range(200, 480, 7))
    # At the cycle's peak a value of 10 is the series' mean: abnormal only seasonally
    peak = 12 + 48 * 9
    broken = series[: peak + 1].copy()
    broken[-1] = 10.0
    assert ensemble(broken, EnsembleConfig()) is None
    found = ensemble(broken, config)
    assert found is not None and found.detector == "seasonal"
