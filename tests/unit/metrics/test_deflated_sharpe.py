"""Deflated Sharpe Ratio: formulas, non-normality, selection bias, edge cases.

References, whose formulas are written again below (with scipy) rather than taken from the module:

- Bailey, D. H. & López de Prado, M. (2012) "The Sharpe Ratio Efficient Frontier", Journal of
  Risk 15(2): the Probabilistic Sharpe Ratio,
  PSR(SR*) = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2)).
- Bailey, D. H. & López de Prado, M. (2014) "The Deflated Sharpe Ratio: Correcting for Selection
  Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5): the
  expected maximum Sharpe ratio of N skill-less trials,
  SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e))),
  and DSR = PSR(SR0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from titan_ray.metrics.significance import (
    EULER_GAMMA,
    DeflatedSharpe,
    _psr_from_moments,
    _SampleMoments,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
)

pytestmark = pytest.mark.filterwarnings("error")

# Written out here, not imported, so that a wrong constant in the module would fail the tests.
GAMMA = 0.57721566490153286


def expected_max_reference(n_trials: int, variance: float) -> float:
    """SR0 of Bailey & López de Prado (2014); one trial is not selected from anything: 0."""
    if n_trials == 1:
        return 0.0
    z = (1 - GAMMA) * stats.norm.ppf(1 - 1 / n_trials) + GAMMA * stats.norm.ppf(1 - 1 / (n_trials * math.e))
    return math.sqrt(variance) * float(z)


def psr_reference(sr: float, skew: float, kurt: float, n: int, sr_star: float) -> float:
    """PSR of Bailey & López de Prado (2012); kurt is raw (normal = 3)."""
    z = (sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


def row_sharpes(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) / x.std(axis=1, ddof=1)


def with_moments_of(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``x`` shifted and scaled to the given sample mean and std (ddof 1): same SR, same n."""
    return (x - x.mean()) / x.std(ddof=1) * std + mean


# --- the formulas -------------------------------------------------------------------------------


def test_euler_gamma_is_the_euler_mascheroni_constant() -> None:
    assert pytest.approx(GAMMA, abs=1e-16) == EULER_GAMMA


def test_the_papers_numerical_example() -> None:
    # Bailey & López de Prado (2014), numerical example: N = 100 trials whose Sharpe ratios have
    # variance 1/2 annualised; the selected one has annualised SR 2.5 over 5 years of daily
    # returns (250 a year, T = 1250), skewness -3 and kurtosis 10. The paper prints
    # SR0 = 0.1132 (per period) and DSR = 0.9004.
    variance = 0.5 / 250
    sr = 2.5 / math.sqrt(250)
    sr0_reference = expected_max_reference(100, variance)
    dsr_reference = psr_reference(sr, -3.0, 10.0, 1250, sr0_reference)
    assert sr0_reference == pytest.approx(0.1132, abs=5e-5)
    assert dsr_reference == pytest.approx(0.9004, abs=5e-5)

    sr0 = expected_max_sharpe(100, variance)
    assert sr0 == pytest.approx(sr0_reference, rel=1e-12)
    dsr = _psr_from_moments(_SampleMoments(n=1250, sharpe=sr, skew=-3.0, kurt=10.0), sr0)
    assert dsr == pytest.approx(dsr_reference, rel=1e-12)


@pytest.mark.parametrize("n_trials", [1, 2, 10, 100, 1000])
@pytest.mark.parametrize("variance", [1.0, 0.5 / 250, 1 / 2000])
def test_expected_max_sharpe_matches_the_formula(n_trials: int, variance: float) -> None:
    expected = expected_max_reference(n_trials, variance)
    assert expected_max_sharpe(n_trials, variance) == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_expected_max_sharpe_known_values_and_shape() -> None:
    # E[max] of N standard normals by the approximation, to 4 decimals (computed with scipy).
    known = {1: 0.0, 2: 0.5198, 10: 1.5746, 100: 2.5306, 1000: 3.2551}
    got = {n: expected_max_sharpe(n, 1.0) for n in known}
    assert got == pytest.approx(known, abs=5e-5)
    # It grows with N and scales with the standard deviation of the trials' Sharpe ratios.
    assert list(got.values()) == sorted(got.values())
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * got[100], rel=1e-12)
    assert expected_max_sharpe(100, 0.0) == 0.0


@pytest.mark.parametrize("n_trials", [10, 100, 1000])
def test_expected_max_sharpe_matches_monte_carlo(n_trials: int) -> None:
    # The mean, over many draws, of the largest of N iid normal Sharpe estimates with variance V.
    # The closed form is an extreme-value approximation: about 2% high at N = 10, closer above.
    variance = 1 / 2000
    rng = np.random.default_rng(2014)
    draws = rng.normal(0.0, math.sqrt(variance), size=(4000, n_trials))
    simulated = float(draws.max(axis=1).mean())
    assert expected_max_sharpe(n_trials, variance) == pytest.approx(simulated, rel=0.04)


def test_deflated_sharpe_ratio_matches_the_formulas() -> None:
    rng = np.random.default_rng(7)
    r = rng.standard_t(4, 750) * 0.01 + 0.001
    others = rng.normal(0.0, 0.01, (19, 750))
    trials = [*row_sharpes(others), r.mean() / r.std(ddof=1)]

    sr = r.mean() / r.std(ddof=1)
    skew = float(stats.skew(r))
    kurt = float(stats.kurtosis(r, fisher=False))
    mean_trial = sum(trials) / len(trials)
    variance = sum((t - mean_trial) ** 2 for t in trials) / (len(trials) - 1)
    sr0 = expected_max_reference(len(trials), variance)

    res = deflated_sharpe_ratio(r, trials)
    assert isinstance(res, DeflatedSharpe)
    assert (res.n, res.n_trials) == (750, 20)
    assert res.sharpe == pytest.approx(sr, rel=1e-12)
    assert res.skew == pytest.approx(skew, rel=1e-9)
    assert res.kurtosis == pytest.approx(kurt, rel=1e-9)
    assert res.trial_variance == pytest.approx(variance, rel=1e-9)
    assert res.sr0 == pytest.approx(sr0, rel=1e-9)
    assert res.psr == pytest.approx(psr_reference(sr, skew, kurt, 750, 0.0), rel=1e-9)
    assert res.dsr == pytest.approx(psr_reference(sr, skew, kurt, 750, sr0), rel=1e-9)
    # The PSR against 0 is the public one, unchanged.
    assert res.psr == probabilistic_sharpe_ratio(r, 0.0)
    assert 0.0 < res.dsr < res.psr < 1.0


# --- skewness and fat tails ---------------------------------------------------------------------


def test_fat_tails_and_negative_skew_lower_the_psr_at_the_same_sharpe() -> None:
    rng = np.random.default_rng(3)
    n, mean, std = 1000, 0.0005, 0.01  # SR 0.05 per bar: PSR well inside (0, 1)
    normal = with_moments_of(rng.standard_normal(n), mean, std)
    fat = with_moments_of(rng.standard_t(3, n), mean, std)
    skewed = with_moments_of(-rng.lognormal(0.0, 0.8, n), mean, std)

    res = {name: deflated_sharpe_ratio(x, [0.05]) for name, x in
           {"normal": normal, "fat": fat, "skewed": skewed}.items()}  # fmt: skip
    assert res["normal"].sharpe == pytest.approx(0.05, rel=1e-12)
    assert res["fat"].sharpe == pytest.approx(0.05, rel=1e-12)
    assert res["skewed"].sharpe == pytest.approx(0.05, rel=1e-12)
    assert abs(res["normal"].skew) < 0.2 and res["normal"].kurtosis == pytest.approx(3.0, abs=0.3)
    assert res["fat"].kurtosis > 6.0
    assert res["skewed"].skew < -1.5

    assert 0.5 < res["fat"].psr < res["normal"].psr < 1.0
    assert 0.5 < res["skewed"].psr < res["normal"].psr
    for name, x in {"normal": normal, "fat": fat, "skewed": skewed}.items():
        reference = psr_reference(
            x.mean() / x.std(ddof=1), stats.skew(x), stats.kurtosis(x, fisher=False), n, 0.0
        )
        assert res[name].psr == pytest.approx(reference, rel=1e-9)


# --- selection bias: what the tournament needs --------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_the_luckiest_of_50_random_walks_passes_psr_but_not_dsr(seed: int) -> None:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, (50, 2000))
    trials = row_sharpes(noise)
    best = noise[int(np.argmax(trials))]
    res = deflated_sharpe_ratio(best, trials)
    # Undeflated, the winner looks like skill; deflated by the 50 tries, it is noise.
    assert res.psr > 0.9
    assert res.dsr < 0.95
    assert res.sr0 > 0.0 and res.n_trials == 50


@pytest.mark.parametrize("seed", range(10))
def test_a_real_edge_among_50_random_walks_survives_deflation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    series = rng.normal(0.0, 0.01, (50, 2000))
    # A true SR of 0.15 per bar. (At 0.1 the expected DSR over 2000 bars is only about 0.96, as
    # the edge itself widens the spread of the trial Sharpe ratios, so a fair share of draws
    # would land below 0.95.)
    series[0] = rng.normal(0.0015, 0.01, 2000)
    trials = row_sharpes(series)
    res = deflated_sharpe_ratio(series[0], trials)
    assert res.dsr > 0.95
    assert res.sharpe == trials.max()


# --- edge cases ---------------------------------------------------------------------------------


def test_one_trial_is_not_deflated() -> None:
    r = np.random.default_rng(4).normal(0.0005, 0.01, 500)
    res = deflated_sharpe_ratio(r, [r.mean() / r.std(ddof=1)])
    assert (res.n_trials, res.trial_variance, res.sr0) == (1, 0.0, 0.0)
    assert res.dsr == res.psr == probabilistic_sharpe_ratio(r, 0.0)
    assert 0.0 < res.psr < 1.0


def test_missing_returns_and_trials_are_dropped() -> None:
    r = np.random.default_rng(5).normal(0.0005, 0.01, 300)
    trials = [0.01, -0.02, 0.03, r.mean() / r.std(ddof=1)]
    gappy = r.copy()
    gappy[[10, 200]] = np.nan
    clean = np.delete(r, [10, 200])
    res = deflated_sharpe_ratio(gappy, [*trials, math.nan, math.inf])
    assert res == deflated_sharpe_ratio(clean, trials)
    assert (res.n, res.n_trials) == (298, 4)
    assert math.isfinite(res.dsr)


@pytest.mark.parametrize("r", [np.full(50, 0.001), np.array([0.01, 0.02]), np.array([])])
def test_undefined_returns_give_nan_not_an_exception(r: np.ndarray) -> None:
    res = deflated_sharpe_ratio(r, [0.01, 0.03, -0.02])
    for value in (res.sharpe, res.psr, res.dsr, res.skew, res.kurtosis):
        assert math.isnan(value)
    assert res.n == r.size
    # What depends only on the trials is still there.
    assert res.n_trials == 3 and res.sr0 == pytest.approx(expected_max_reference(3, 0.0019 / 3))


@pytest.mark.parametrize("n_trials", [0, -1])
def test_rejects_fewer_than_one_trial(n_trials: int) -> None:
    with pytest.raises(ValueError, match="n_trials must be at least 1"):
        expected_max_sharpe(n_trials, 0.001)


@pytest.mark.parametrize("variance", [-0.001, math.nan, math.inf])
def test_rejects_a_bad_variance(variance: float) -> None:
    with pytest.raises(ValueError, match="sharpe_variance must be a finite number >= 0"):
        expected_max_sharpe(10, variance)


@pytest.mark.parametrize("trials", [[], [math.nan, math.inf]])
def test_rejects_trials_without_a_finite_sharpe(trials: list[float]) -> None:
    with pytest.raises(ValueError, match="trial_sharpes has no finite Sharpe ratio"):
        deflated_sharpe_ratio(np.random.default_rng(6).normal(0.0, 0.01, 100), trials)
