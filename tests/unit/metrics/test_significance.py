"""Sharpe-difference bootstrap test and probabilistic Sharpe ratio: size, power, determinism, speed."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import stats

from titan_ray.metrics.performance import sharpe
from titan_ray.metrics.significance import (
    SharpeTest,
    _stationary_indices,
    probabilistic_sharpe_ratio,
    sharpe_difference_test,
)

pytestmark = pytest.mark.filterwarnings("error")

DAILY = 252


def noise(seed: int, n: int, drift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(drift, 0.01, n)


def test_identical_series_show_no_difference() -> None:
    r = noise(1, 500)
    res = sharpe_difference_test(r, r.copy(), DAILY, n_resamples=500, rng=np.random.default_rng(0))
    assert res.difference == 0.0
    assert res.p_value >= 0.5
    assert res.ci_low == 0.0 and res.ci_high == 0.0


def test_strong_drift_beats_noise() -> None:
    bench = noise(2, 1000)
    model = noise(3, 1000, drift=0.003)
    res = sharpe_difference_test(model, bench, DAILY, rng=np.random.default_rng(0))
    assert res.difference > 0
    assert res.p_value < 0.01
    assert 0 < res.ci_low < res.difference < res.ci_high
    # The second opinion agrees: the model's Sharpe very probably exceeds the benchmark's.
    assert probabilistic_sharpe_ratio(model, sharpe(bench, 1)) > 0.99


def test_noise_does_not_beat_drift() -> None:
    bench = noise(3, 1000, drift=0.003)
    model = noise(2, 1000)
    res = sharpe_difference_test(model, bench, DAILY, n_resamples=500, rng=np.random.default_rng(0))
    assert res.p_value > 0.99
    assert probabilistic_sharpe_ratio(model, sharpe(bench, 1)) < 0.01


def test_noise_against_noise_is_rarely_significant() -> None:
    # Under H0 (no true difference) p should be roughly uniform: about 5% of runs below 0.05.
    p = np.array(
        [
            sharpe_difference_test(
                noise(2 * seed, 250), noise(2 * seed + 1, 250), DAILY, n_resamples=400,
                rng=np.random.default_rng(seed),
            ).p_value
            for seed in range(40)
        ]
    )  # fmt: skip
    assert np.count_nonzero(p < 0.05) < 8
    assert 0.3 < p.mean() < 0.7
    assert p.min() < 0.5 < p.max()


def test_correlated_series_are_resampled_together() -> None:
    # The model is the benchmark plus a small edge. Unpaired, its noise would swamp the edge;
    # paired, the shared noise cancels and the edge is plain.
    bench = noise(4, 500)
    model = bench + np.random.default_rng(5).normal(0.0004, 0.001, 500)
    res = sharpe_difference_test(model, bench, DAILY, rng=np.random.default_rng(0))
    assert res.p_value < 0.01


def test_same_seed_same_result() -> None:
    x, y = noise(6, 300), noise(7, 300)

    def run(seed: int) -> SharpeTest:
        return sharpe_difference_test(x, y, DAILY, n_resamples=300, rng=np.random.default_rng(seed))

    assert run(11) == run(11)
    assert run(11).p_value != run(12).p_value


def test_reports_its_settings() -> None:
    x, y = noise(8, 1000), noise(9, 1000)
    res = sharpe_difference_test(x, y, DAILY, n_resamples=100, rng=np.random.default_rng(0))
    assert (res.n_resamples, res.block) == (100, 10)  # round(1000 ** (1/3))
    assert res.sharpe_model == sharpe(x, DAILY) and res.sharpe_bench == sharpe(y, DAILY)
    res = sharpe_difference_test(x, y, DAILY, n_resamples=100, block=1, rng=np.random.default_rng(0))
    assert res.block == 1 and 0.0 < res.p_value <= 1.0


def test_too_short_series_give_nan_without_raising() -> None:
    res = sharpe_difference_test(
        np.array([0.01]), np.array([0.02]), DAILY, n_resamples=10, rng=np.random.default_rng(0)
    )
    assert math.isnan(res.difference) and math.isnan(res.p_value)
    assert math.isnan(res.ci_low) and math.isnan(res.ci_high)


def test_rejects_series_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="r_model has 3 returns and r_bench 2"):
        sharpe_difference_test(np.zeros(3), np.zeros(2), DAILY, rng=np.random.default_rng(0))


def test_rejects_bad_block() -> None:
    with pytest.raises(ValueError, match="block"):
        sharpe_difference_test(np.zeros(3), np.zeros(3), DAILY, block=0, rng=np.random.default_rng(0))


def test_stationary_indices_wrap_around_in_blocks_of_the_mean_length() -> None:
    n, block = 20_000, 8
    idx = _stationary_indices(n, 4, block, np.random.default_rng(0))
    assert idx.shape == (4, n)
    assert idx.min() >= 0 and idx.max() < n
    steps = np.diff(idx, axis=1)
    continues = (steps == 1) | (steps == 1 - n)
    # A new block starts with probability 1 / block at each bar.
    assert np.mean(~continues) == pytest.approx(1 / block, abs=0.01)


def test_2000_resamples_of_5000_bars_take_under_a_second() -> None:
    x, y = noise(10, 5000, drift=0.0005), noise(11, 5000)
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        sharpe_difference_test(x, y, DAILY, n_resamples=2000, rng=np.random.default_rng(0))
        best = min(best, time.perf_counter() - start)
    assert best < 1.0


def psr_reference(r: np.ndarray, sr_star: float) -> float:
    """Bailey & López de Prado (2012), eq. for PSR, written with scipy's moments."""
    sr = r.mean() / r.std(ddof=1)
    skew = stats.skew(r)
    kurt = stats.kurtosis(r, fisher=False)
    z = (sr - sr_star) * math.sqrt(r.size - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


@pytest.mark.parametrize("sr_star", [-0.05, 0.0, 0.02, 0.1])
def test_probabilistic_sharpe_ratio_matches_the_formula(sr_star: float) -> None:
    r = np.random.default_rng(12).standard_t(4, 750) * 0.01 + 0.0005
    assert probabilistic_sharpe_ratio(r, sr_star) == pytest.approx(psr_reference(r, sr_star), rel=1e-9)


def test_probabilistic_sharpe_ratio_is_one_half_at_its_own_sharpe() -> None:
    r = noise(13, 400, drift=0.001)
    assert probabilistic_sharpe_ratio(r, sharpe(r, 1)) == pytest.approx(0.5)
    assert probabilistic_sharpe_ratio(r, sharpe(r, 1) - 0.05) > 0.5 > probabilistic_sharpe_ratio(
        r, sharpe(r, 1) + 0.05
    )


def test_probabilistic_sharpe_ratio_undefined_cases() -> None:
    assert math.isnan(probabilistic_sharpe_ratio(np.array([0.01, 0.02]), 0.0))
    assert math.isnan(probabilistic_sharpe_ratio(np.full(10, 0.01), 0.0))


def test_missing_bars_are_dropped_from_both_series() -> None:
    x, y = noise(14, 300, drift=0.001), noise(15, 300)
    x_gappy, y_gappy = x.copy(), y.copy()
    x_gappy[10] = np.nan
    y_gappy[20] = np.nan
    keep = np.ones(300, dtype=bool)
    keep[[10, 20]] = False
    gappy = sharpe_difference_test(x_gappy, y_gappy, DAILY, n_resamples=200, rng=np.random.default_rng(0))
    clean = sharpe_difference_test(x[keep], y[keep], DAILY, n_resamples=200, rng=np.random.default_rng(0))
    assert gappy == clean
    assert math.isfinite(gappy.p_value)
