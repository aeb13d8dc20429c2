"""VaR and CVaR (``titan_ray.metrics.tail``): empyrical's historical estimators, the closed forms of
the normal and the Student-t, causal rolling windows, and the leaderboard's four tail columns."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pytest
from scipy import integrate, stats

from titan_ray.metrics.performance import returns_from_equity, summarize
from titan_ray.metrics.tail import (
    MAX_DOF,
    historical_cvar,
    historical_var,
    parametric_cvar,
    parametric_var,
    rolling_cvar,
    rolling_var,
)

# Any numpy RuntimeWarning is a failure: like the leaderboard's other metrics, these promise none.
pytestmark = pytest.mark.filterwarnings("error")

N_DRAWS = 400_000
MU, SIGMA = 0.0004, 0.012  # a daily-looking return: 0.04% drift, 1.2% volatility
LEVELS = [(0.95, 0.05), (0.99, 0.01)]  # confidence level and the tail's share (empyrical's cutoff)


def returns_with_gaps(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = rng.standard_t(4, n) * 0.01
    r[rng.random(n) < 0.05] = np.nan
    return r


def t_tail_mean(nu: float, alpha: float) -> float:
    """E[T | T <= q_alpha] of a standard Student-t, by integrating x * pdf over the tail."""
    q = stats.t.ppf(alpha, nu)
    integral, _ = integrate.quad(lambda x: x * stats.t.pdf(x, nu), -np.inf, q, epsabs=1e-14, epsrel=1e-13)
    return integral / alpha


# --- historical: empyrical's estimators ---------------------------------------------------------------


@pytest.mark.parametrize(("level", "cutoff"), [*LEVELS, (0.9, 0.1), (0.975, 0.025)])
@pytest.mark.parametrize(("seed", "n"), [(0, 3), (1, 11), (2, 21), (3, 252), (4, 1000), (5, 5003)])
def test_historical_var_and_cvar_are_empyricals(seed: int, n: int, level: float, cutoff: float) -> None:
    r = returns_with_gaps(seed, n)
    present = r[~np.isnan(r)]
    assert present.size >= 2
    # empyrical's VaR is np.percentile of what it is given, so a nan makes it nan: it gets the present
    # returns. Its CVaR drops nan itself (0.7.1), so it gets the returns as they are.
    assert abs(historical_var(r, level) - empyrical.value_at_risk(present, cutoff=cutoff)) <= 1e-12
    assert abs(historical_cvar(r, level) - empyrical.conditional_value_at_risk(r, cutoff=cutoff)) <= 1e-12


def test_a_90_percent_cvar_averages_a_10_percent_tail_despite_float_rounding() -> None:
    # 1 - 0.9 is 0.09999999999999998 in floats: taken as is, 11 returns would give k = int(0.999...) = 0
    # and the CVaR would be the worst return alone, not the mean of the two worst.
    r = np.arange(11, dtype=np.float64) / 100 - 0.05  # -0.05, -0.04, ..., 0.05
    assert historical_cvar(r, 0.9) == pytest.approx(-0.045, abs=1e-15)
    assert historical_cvar(r, 0.9) == empyrical.conditional_value_at_risk(r, cutoff=0.1)
    assert historical_var(r, 0.9) == pytest.approx(-0.04, abs=1e-15)  # position (11 - 1) * 0.1 = 1


def test_hand_example_of_21_returns() -> None:
    r = np.arange(-10, 11) / 100  # -0.10, -0.09, ..., 0.10
    assert historical_var(r, 0.95) == pytest.approx(-0.09, abs=1e-15)  # position 20 * 0.05 = 1
    assert historical_cvar(r, 0.95) == pytest.approx(-0.095, abs=1e-15)  # k = 1: mean of the 2 worst
    assert historical_var(r, 0.99) == pytest.approx(-0.098, abs=1e-15)  # position 0.2: -0.10 + 0.2 * 0.01
    assert historical_cvar(r, 0.99) == pytest.approx(-0.10, abs=1e-15)  # k = 0: the worst alone


@pytest.mark.parametrize("fn", [historical_var, historical_cvar, parametric_var, parametric_cvar])
def test_fewer_than_two_returns_give_nan(fn) -> None:
    for r in ([], [0.01], [np.nan, 0.01, np.nan], [np.nan] * 5):
        assert math.isnan(fn(np.array(r, dtype=np.float64))), r
    assert not math.isnan(fn(np.array([np.nan, 0.01, -0.02])))


@pytest.mark.parametrize("fn", [historical_var, historical_cvar, parametric_var, parametric_cvar])
def test_constant_returns_have_their_value_as_var_and_cvar(fn) -> None:
    assert fn(np.full(50, 0.003)) == pytest.approx(0.003, abs=1e-15)


def test_parametric_t_of_constant_returns_is_their_value() -> None:
    assert parametric_var(np.full(50, 0.003), dist="t") == pytest.approx(0.003, abs=1e-15)
    assert parametric_cvar(np.full(50, 0.003), 0.99, dist="t") == pytest.approx(0.003, abs=1e-15)


# --- the normal: 400,000 draws against the closed forms --------------------------------------------


@pytest.fixture(scope="module")
def normal_draws() -> np.ndarray:
    return np.random.default_rng(20).normal(MU, SIGMA, N_DRAWS)


@pytest.mark.parametrize(("level", "alpha"), LEVELS)
def test_historical_estimates_of_normal_draws_approach_the_closed_forms(normal_draws, level, alpha) -> None:
    z = stats.norm.ppf(alpha)
    # 1% is at least 3.7 standard errors of either estimator at 400,000 draws (0.20%-0.27% of the value)
    assert historical_var(normal_draws, level) == pytest.approx(MU + SIGMA * z, rel=0.01)
    assert historical_cvar(normal_draws, level) == pytest.approx(
        MU - SIGMA * stats.norm.pdf(z) / alpha, rel=0.01
    )


@pytest.mark.parametrize(("level", "alpha"), LEVELS)
def test_parametric_normal_is_the_closed_form_at_the_sample_mean_and_deviation(
    normal_draws, level, alpha
) -> None:
    mu, sigma = normal_draws.mean(), normal_draws.std(ddof=1)
    z = stats.norm.ppf(alpha)
    assert abs(parametric_var(normal_draws, level) - (mu + sigma * z)) <= 1e-12
    assert abs(parametric_cvar(normal_draws, level) - (mu - sigma * stats.norm.pdf(z) / alpha)) <= 1e-12
    # and, the sample being large, close to the truth too
    assert parametric_cvar(normal_draws, level) == pytest.approx(
        MU - SIGMA * stats.norm.pdf(z) / alpha, rel=0.01
    )


# --- the Student-t: heavy tails ---------------------------------------------------------------------

NU = 5
T_SCALE = 0.008  # the draws are MU + T_SCALE * T, T a standard t(5)


@pytest.fixture(scope="module")
def t_draws() -> np.ndarray:
    return MU + T_SCALE * np.random.default_rng(21).standard_t(NU, N_DRAWS)


@pytest.mark.parametrize(("level", "alpha"), LEVELS)
def test_historical_estimates_of_t_draws_approach_the_t_closed_forms(t_draws, level, alpha) -> None:
    true_var = MU + T_SCALE * stats.t.ppf(alpha, NU)
    true_cvar = MU + T_SCALE * t_tail_mean(NU, alpha)
    # 2.5% is at least 4 standard errors here (the 99% CVaR's is 0.61% of the value)
    assert historical_var(t_draws, level) == pytest.approx(true_var, rel=0.025)
    assert historical_cvar(t_draws, level) == pytest.approx(true_cvar, rel=0.025)
    # a normal with the same variance misses the t's 99% tail by far more than that
    if level == 0.99:
        assert parametric_cvar(t_draws, level) > true_cvar * 0.9


@pytest.mark.parametrize(("level", "alpha"), LEVELS)
def test_parametric_t_with_given_dof_is_the_closed_form(t_draws, level, alpha) -> None:
    mu, sigma = t_draws.mean(), t_draws.std(ddof=1)
    s = sigma * math.sqrt((NU - 2) / NU)  # the t(5) with the sample's variance
    assert abs(parametric_var(t_draws, level, dist="t", dof=NU) - (mu + s * stats.t.ppf(alpha, NU))) <= 1e-12
    # the CVaR's reference integrates the density: an independent route to the closed form
    assert parametric_cvar(t_draws, level, dist="t", dof=NU) == pytest.approx(
        mu + s * t_tail_mean(NU, alpha), rel=1e-10
    )
    assert parametric_cvar(t_draws, level, dist="t", dof=NU) == pytest.approx(
        MU + T_SCALE * t_tail_mean(NU, alpha), rel=0.025
    )


def three_point_sample(p: float) -> np.ndarray:
    """-1 and +1 with probability p / 2 each, 0 otherwise, in exact proportions: excess kurtosis 1/p - 3."""
    k = round(10_000 * p / 2)
    return np.concatenate((np.full(k, -1.0), np.zeros(10_000 - 2 * k), np.full(k, 1.0))) * 0.01


@pytest.mark.parametrize(("p", "nu"), [(0.25, 10.0), (0.2, 7.0), (0.01, 4.0 + 6.0 / 97.0)])
def test_fitted_dof_matches_the_excess_kurtosis(p: float, nu: float) -> None:
    x = three_point_sample(p)  # excess kurtosis 1, 2 and 97: nu = 4 + 6 / excess
    for level in (0.95, 0.99):
        assert parametric_var(x, level, dist="t") == pytest.approx(
            parametric_var(x, level, dist="t", dof=nu), rel=1e-12
        )
        assert parametric_cvar(x, level, dist="t") == pytest.approx(
            parametric_cvar(x, level, dist="t", dof=nu), rel=1e-12
        )
    assert parametric_var(x, 0.99, dist="t") != pytest.approx(
        parametric_var(x, 0.99, dist="t", dof=nu + 1), rel=1e-6
    )


def test_no_excess_kurtosis_fits_the_highest_dof() -> None:
    x = np.linspace(-0.02, 0.02, 1001)  # uniform: excess kurtosis -1.2
    assert parametric_var(x, 0.99, dist="t") == parametric_var(x, 0.99, dist="t", dof=MAX_DOF)
    assert parametric_cvar(x, 0.99, dist="t") == parametric_cvar(x, 0.99, dist="t", dof=MAX_DOF)


# --- rolling windows ----------------------------------------------------------------------------------

ROLLING = [
    (rolling_var, "historical", historical_var),
    (rolling_cvar, "historical", historical_cvar),
    (rolling_var, "parametric", parametric_var),
    (rolling_cvar, "parametric", parametric_cvar),
]


@pytest.mark.parametrize(("rolling", "method", "point"), ROLLING)
@pytest.mark.parametrize("window", [2, 5, 60])
@pytest.mark.parametrize("level", [0.95, 0.99])
def test_rolling_is_the_point_estimate_of_each_trailing_window(rolling, method, point, window, level) -> None:
    r = returns_with_gaps(7, 600)
    r[100:110] = np.nan  # windows with fewer than 2 returns left: nan
    out = rolling(r, window, level, method)
    assert out.shape == r.shape and np.isnan(out[: window - 1]).all()
    expected = [point(r[i - window + 1 : i + 1], level) for i in range(window - 1, r.size)]
    np.testing.assert_array_equal(out[window - 1 :], expected)  # bit for bit
    assert np.isfinite(out[window - 1 :]).sum() > 0.8 * (r.size - window + 1)


@pytest.mark.parametrize(("rolling", "method", "point"), ROLLING)
def test_rolling_is_causal(rolling, method, point) -> None:
    r = returns_with_gaps(8, 400)
    out = rolling(r, 50, 0.95, method)
    rng = np.random.default_rng(9)
    for i in (49, 120, 398):
        future = r.copy()
        future[i + 1 :] = rng.normal(-0.5, 0.3, r.size - i - 1)  # a crash right after bar i
        changed = rolling(future, 50, 0.95, method)
        np.testing.assert_array_equal(changed[: i + 1], out[: i + 1])
        if i + 1 < r.size:
            assert changed[i + 1] != out[i + 1]  # the probe can see a change


def test_rolling_on_fewer_returns_than_the_window_is_all_nan() -> None:
    assert np.isnan(rolling_var(np.array([0.01, -0.02, 0.03]), 5)).all()
    assert rolling_cvar(np.array([]), 5).shape == (0,)


# --- arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [95, 0.0, 1.0, -0.05, math.nan])
def test_a_level_outside_0_1_is_rejected(level: float) -> None:
    with pytest.raises(ValueError, match="level is a confidence level strictly between 0 and 1"):
        historical_var(np.zeros(10), level)
    with pytest.raises(ValueError, match="level"):
        rolling_var(np.zeros(1), 5, level)  # before looking at the data


def test_bad_distribution_arguments_are_rejected() -> None:
    x = np.random.default_rng(0).normal(size=100)
    with pytest.raises(ValueError, match="dist must be 'normal' or 't', got 'cauchy'"):
        parametric_var(x, dist="cauchy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass dist='t' with it"):
        parametric_var(x, dof=5)
    with pytest.raises(ValueError, match="dof must be a finite number above 2"):
        parametric_cvar(x, dist="t", dof=2)


def test_bad_window_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="window is a number of returns, at least 2, got 1"):
        rolling_var(np.zeros(10), 1)
    with pytest.raises(ValueError, match="window is a number of returns, at least 2, got 2.5"):
        rolling_var(np.zeros(10), 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be 'historical' or 'parametric', got 'normal'"):
        rolling_cvar(np.zeros(10), 5, method="normal")  # type: ignore[arg-type]


# --- the leaderboard's columns ------------------------------------------------------------------------


def _summary(equity: np.ndarray, initial: float):
    return summarize(
        equity,
        initial,
        252,
        gross_exposure=np.zeros(equity.size),
        traded_value=0.0,
        round_trip_pnl=np.array([]),
        n_orders=0,
        n_rejected=0,
    )


@pytest.mark.parametrize("n", [2, 26, 1000])
def test_summarize_carries_the_historical_tail_of_the_equity_returns(n: int) -> None:
    equity = 1_000_000.0 * np.cumprod(1.0 + np.random.default_rng(n).normal(0.0003, 0.012, n))
    s = _summary(equity, 1_000_000.0)
    r = returns_from_equity(equity, 1_000_000.0)
    assert (s.var_95, s.cvar_95, s.var_99, s.cvar_99) == (
        historical_var(r, 0.95),
        historical_cvar(r, 0.95),
        historical_var(r, 0.99),
        historical_cvar(r, 0.99),
    )
    row = s.to_dict()
    assert list(row)[-5:] == ["exposure", "var_95", "cvar_95", "var_99", "cvar_99"]  # appended, order kept
    assert row["cvar_99"] <= row["var_99"] <= row["var_95"] < 0 and row["cvar_95"] <= row["var_95"]


def test_summarize_tail_hand_example() -> None:
    r = np.arange(-10, 11) / 100  # 21 returns: -10%, -9%, ..., +10%, in a shuffled order
    r = r[np.random.default_rng(3).permutation(r.size)]
    s = _summary(100.0 * np.cumprod(1.0 + r), 100.0)
    assert s.var_95 == pytest.approx(-0.09, abs=1e-12)
    assert s.cvar_95 == pytest.approx(-0.095, abs=1e-12)
    assert s.var_99 == pytest.approx(-0.098, abs=1e-12)
    assert s.cvar_99 == pytest.approx(-0.10, abs=1e-12)


def test_summarize_without_returns_has_no_tail() -> None:
    row = _summary(np.array([100.0]), 100.0).to_dict()
    assert (row["var_95"], row["cvar_95"], row["var_99"], row["cvar_99"]) == (None, None, None, None)
