"""Leaderboard metrics against empyrical-reloaded (the conventions we promise), plus hand examples."""

from __future__ import annotations

import json
import math

import empyrical
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from titan_ray.metrics.performance import (
    PerformanceSummary,
    cagr,
    calmar,
    max_drawdown,
    max_drawdown_duration,
    returns_from_equity,
    sharpe,
    sortino,
    summarize,
    trade_stats,
)

# Any numpy RuntimeWarning (divide by zero, invalid value) is a failure: the metrics promise none.
pytestmark = pytest.mark.filterwarnings("error")

DAILY = 252
INTRADAY_15MIN = 252 * 26
CONTINUOUS_HOURLY = 365 * 24


def assert_same(ours: float, theirs: float) -> None:
    """Equal within 1e-9 (relative, or absolute near 0); nan equals nan and inf equals inf."""
    np.testing.assert_allclose(ours, float(theirs), rtol=1e-9, atol=1e-12, equal_nan=True)


def assert_all_match_empyrical(r: np.ndarray, periods: int) -> None:
    # empyrical itself may warn (an overflowing CAGR); only our functions must stay silent.
    with np.errstate(all="ignore"):
        expected = (
            empyrical.sharpe_ratio(r, annualization=periods),
            empyrical.sortino_ratio(r, annualization=periods),
            empyrical.annual_return(r, annualization=periods),
            empyrical.max_drawdown(r),
            empyrical.calmar_ratio(r, annualization=periods),
        )
    ours = (sharpe(r, periods), sortino(r, periods), cagr(r, periods), max_drawdown(r), calmar(r, periods))
    for name, mine, theirs in zip(("sharpe", "sortino", "cagr", "max_drawdown", "calmar"), ours, expected, strict=True):
        np.testing.assert_allclose(
            mine, float(theirs), rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name
        )


def random_equity(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1_000_000.0 * np.cumprod(1.0 + rng.normal(0.0003, 0.012, n))


def duration_by_loop(r: np.ndarray) -> int:
    """The definition, bar by bar: the longest stretch strictly below the running peak."""
    equity, peak, run, longest = 1.0, 1.0, 0, 0
    for x in r:
        equity *= 1.0 if np.isnan(x) else 1.0 + x
        if equity < peak * (1.0 - 1e-10):
            run += 1
            longest = max(longest, run)
        else:
            peak, run = max(peak, equity), 0
    return longest


@pytest.mark.parametrize("periods", [DAILY, INTRADAY_15MIN, CONTINUOUS_HOURLY])
@pytest.mark.parametrize(("seed", "n"), [(0, 2), (1, 30), (2, 252), (3, 1000), (4, 5000)])
def test_metrics_match_empyrical_on_random_equity_curves(seed: int, n: int, periods: int) -> None:
    r = returns_from_equity(random_equity(seed, n), 1_000_000.0)
    assert_all_match_empyrical(r, periods)


# Returns on a 1 bp grid: either all equal (zero dispersion, exactly) or spread by at least a grid
# step. Arbitrary floats that differ only in their last bits make the sample std a rounding
# residue on which no two implementations agree, which is not what this test is about.
bp_returns = hnp.arrays(
    np.int64, st.integers(10, 500), elements=st.integers(-1999, 1999)
).map(lambda bp: bp / 1e4)


@settings(max_examples=150, deadline=None)
@given(r=bp_returns, periods=st.sampled_from([DAILY, INTRADAY_15MIN, CONTINUOUS_HOURLY]))
def test_metrics_match_empyrical_on_generated_returns(r: np.ndarray, periods: int) -> None:
    assert_all_match_empyrical(r, periods)


@st.composite
def returns_with_missing_bars(draw: st.DrawFn) -> np.ndarray:
    r = draw(bp_returns)
    missing = draw(hnp.arrays(np.bool_, r.size, elements=st.booleans()))
    return np.where(missing, np.nan, r)


@settings(max_examples=100, deadline=None)
@given(r=returns_with_missing_bars(), periods=st.sampled_from([DAILY, INTRADAY_15MIN]))
def test_missing_returns_are_skipped_like_empyrical(r: np.ndarray, periods: int) -> None:
    assert_all_match_empyrical(r, periods)
    assert max_drawdown_duration(r) == duration_by_loop(r)


@settings(max_examples=150, deadline=None)
@given(r=bp_returns)
def test_max_drawdown_duration_matches_the_bar_by_bar_definition(r: np.ndarray) -> None:
    assert max_drawdown_duration(r) == duration_by_loop(r)


def test_returns_from_equity_measures_the_first_bar_against_initial_cash() -> None:
    r = returns_from_equity(np.array([110.0, 99.0, 99.0]), 100.0)
    np.testing.assert_allclose(r, [0.10, -0.10, 0.0], rtol=1e-15, atol=1e-15)
    path = np.array([100.0, 110.0, 99.0, 99.0])
    np.testing.assert_allclose(r, empyrical.simple_returns(path), rtol=1e-15)


def test_flat_equity() -> None:
    r = returns_from_equity(np.full(50, 1_000.0), 1_000.0)
    assert_all_match_empyrical(r, DAILY)
    assert math.isnan(sharpe(r, DAILY))
    assert math.isnan(sortino(r, DAILY))
    assert cagr(r, DAILY) == 0.0
    assert max_drawdown(r) == 0.0
    assert max_drawdown_duration(r) == 0
    assert math.isnan(calmar(r, DAILY))


def test_constant_positive_return_is_riskless() -> None:
    r = np.full(20, 0.001)
    assert_all_match_empyrical(r, DAILY)
    assert sharpe(r, DAILY) == math.inf
    assert sortino(r, DAILY) == math.inf
    assert math.isnan(calmar(r, DAILY))


def test_monotone_up_equity_has_no_drawdown() -> None:
    r = returns_from_equity(np.array([101.0, 103.0, 103.5, 110.0, 111.0]), 100.0)
    assert_all_match_empyrical(r, DAILY)
    assert math.isfinite(sharpe(r, DAILY))
    assert sortino(r, DAILY) == math.inf
    assert max_drawdown(r) == 0.0
    assert max_drawdown_duration(r) == 0
    assert math.isnan(calmar(r, DAILY))


def test_single_bar() -> None:
    r = returns_from_equity(np.array([95.0]), 100.0)
    assert_all_match_empyrical(r, DAILY)
    assert math.isnan(sharpe(r, DAILY))
    assert math.isnan(sortino(r, DAILY))
    assert max_drawdown(r) == pytest.approx(-0.05)
    assert max_drawdown_duration(r) == 1


def test_bankrupt_account_gives_numbers_not_warnings() -> None:
    equity = np.array([100.0, 50.0, 0.0, 0.0, 0.0])
    r = returns_from_equity(equity, 100.0)  # the returns after the wipe-out are 0 / 0
    assert np.isnan(r[3:]).all()
    assert_all_match_empyrical(r, DAILY)
    assert max_drawdown(r) == -1.0
    assert cagr(r, DAILY) == -1.0
    assert max_drawdown_duration(r) == 4
    s = summarize(
        equity,
        100.0,
        DAILY,
        gross_exposure=np.array([100.0, 50.0, 0.0, 0.0, 0.0]),
        traded_value=100.0,
        round_trip_pnl=np.array([-100.0]),
        n_orders=2,
        n_rejected=0,
    )
    assert s.total_return == -1.0 and s.max_drawdown == -1.0
    json.dumps(s.to_dict(), allow_nan=False)


def test_no_bars() -> None:
    r = np.array([])
    assert_all_match_empyrical(r, DAILY)
    assert max_drawdown_duration(r) == 0


@pytest.mark.parametrize(
    ("equity", "expected"),
    [
        ([100.0, 100.0, 100.0], 0),
        ([99.0], 1),
        # Below the initial cash for two bars, then back exactly to it: recovered.
        ([90.0, 95.0, 100.0, 105.0], 2),
        # Two bars under the 110 peak; then a new peak at 120 and three unrecovered bars.
        ([110.0, 100.0, 105.0, 120.0, 90.0, 95.0, 100.0], 3),
        # A long early drawdown beats a short one at the end.
        ([90.0, 80.0, 85.0, 95.0, 101.0, 100.0], 4),
    ],
)
def test_max_drawdown_duration_hand_examples(equity: list[float], expected: int) -> None:
    assert max_drawdown_duration(returns_from_equity(np.array(equity), 100.0)) == expected


def test_max_drawdown_counts_the_initial_cash_as_the_first_peak() -> None:
    r = returns_from_equity(np.array([80.0, 120.0, 90.0]), 100.0)
    assert max_drawdown(r) == pytest.approx(-0.25)  # 120 -> 90, deeper than 100 -> 80
    r = returns_from_equity(np.array([80.0, 90.0]), 100.0)
    assert max_drawdown(r) == pytest.approx(-0.20)


def test_trade_stats_mixed() -> None:
    stats = trade_stats(np.array([10.0, -5.0, 20.0, -5.0, 0.0]))
    assert stats == {"profit_factor": 3.0, "win_rate": 0.4, "n_trades": 5}


def test_trade_stats_only_winners() -> None:
    assert trade_stats(np.array([5.0, 3.0])) == {"profit_factor": math.inf, "win_rate": 1.0, "n_trades": 2}


def test_trade_stats_only_losers() -> None:
    assert trade_stats(np.array([-1.0, -2.0])) == {"profit_factor": 0.0, "win_rate": 0.0, "n_trades": 2}


def test_trade_stats_break_even_trades() -> None:
    stats = trade_stats(np.array([0.0, 0.0]))
    assert math.isnan(stats["profit_factor"])
    assert stats["win_rate"] == 0.0
    assert stats["n_trades"] == 2


def test_trade_stats_no_trades() -> None:
    stats = trade_stats(np.array([]))
    assert math.isnan(stats["profit_factor"])
    assert math.isnan(stats["win_rate"])
    assert stats["n_trades"] == 0


def hand_summary() -> PerformanceSummary:
    # Four bars over one "year" (periods = 4): 100 -> 100, 110, 99, 121.
    return summarize(
        np.array([100.0, 110.0, 99.0, 121.0]),
        100.0,
        4,
        gross_exposure=np.array([0.0, 55.0, 49.5, 121.0]),
        traded_value=430.0,
        round_trip_pnl=np.array([21.0, -1.0]),
        n_orders=5,
        n_rejected=1,
    )


def test_summarize_hand_example() -> None:
    s = hand_summary()
    r = np.array([0.0, 0.1, -0.1, 22.0 / 99.0])
    assert s.final_equity == 121.0
    assert s.total_return == pytest.approx(0.21)
    assert s.cagr == pytest.approx(0.21)  # exactly one year
    assert s.max_drawdown == pytest.approx(-0.1)  # 110 -> 99
    assert s.max_drawdown_duration == 1
    assert s.calmar == pytest.approx(2.1)
    assert_same(s.sharpe, empyrical.sharpe_ratio(r, annualization=4))
    assert_same(s.sortino, empyrical.sortino_ratio(r, annualization=4))
    assert s.profit_factor == 21.0
    assert s.win_rate == 0.5
    assert (s.n_trades, s.n_orders, s.n_rejected) == (2, 5, 1)
    assert s.turnover == pytest.approx(2.0)  # 430 / mean equity 107.5 / 2 / 1 year
    assert s.exposure == pytest.approx(0.5)  # mean of 0, 0.5, 0.5, 1


def test_summary_to_dict_is_json_safe() -> None:
    s = summarize(
        np.full(10, 100.0),
        100.0,
        DAILY,
        gross_exposure=np.zeros(10),
        traded_value=0.0,
        round_trip_pnl=np.array([]),
        n_orders=0,
        n_rejected=0,
    )
    d = s.to_dict()
    assert list(d) == [
        "final_equity", "total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown",
        "max_drawdown_duration", "profit_factor", "win_rate", "n_trades", "n_orders", "n_rejected",
        "turnover", "exposure", "var_95", "cvar_95", "var_99", "cvar_99",
    ]  # fmt: skip
    assert d["sharpe"] is None and d["calmar"] is None and d["profit_factor"] is None
    assert d["var_95"] == d["cvar_95"] == d["var_99"] == d["cvar_99"] == 0.0  # flat equity: no tail
    assert type(d["max_drawdown_duration"]) is int and type(d["final_equity"]) is float
    json.dumps(d, allow_nan=False)
    json.dumps(hand_summary().to_dict(), allow_nan=False)


def test_summarize_without_bars_does_not_raise() -> None:
    s = summarize(
        np.array([]),
        100.0,
        DAILY,
        gross_exposure=np.array([]),
        traded_value=0.0,
        round_trip_pnl=np.array([]),
        n_orders=0,
        n_rejected=0,
    )
    assert s.final_equity == 100.0 and s.total_return == 0.0
    assert math.isnan(s.sharpe) and math.isnan(s.turnover) and math.isnan(s.exposure)
    json.dumps(s.to_dict(), allow_nan=False)


def test_summarize_rejects_misaligned_exposure() -> None:
    with pytest.raises(ValueError, match="gross_exposure has 2 bars but equity has 3"):
        summarize(
            np.array([1.0, 2.0, 3.0]),
            1.0,
            DAILY,
            gross_exposure=np.array([0.0, 0.0]),
            traded_value=0.0,
            round_trip_pnl=np.array([]),
            n_orders=0,
            n_rejected=0,
        )


def test_summary_is_frozen() -> None:
    s = hand_summary()
    with pytest.raises(AttributeError):
        s.sharpe = 0.0  # type: ignore[misc]
