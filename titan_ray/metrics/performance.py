"""Performance metrics of one portfolio: the numbers on the leaderboard.

Everything here is a pure function of float64 numpy arrays; nothing raises or warns on degenerate
input (flat equity, one bar, no trades, a bankrupt account): an undefined metric is ``nan``, and
the arithmetic runs under ``np.errstate`` so that numpy never emits a RuntimeWarning.

Conventions (empyrical's, which the tests check within 1e-9; risk-free rate and target return 0):

- ``r``: simple per-bar returns of equity, the first against the initial cash:
  ``r[0] = equity[0] / initial - 1``, ``r[t] = equity[t] / equity[t-1] - 1``. A ``nan`` return
  (0 / 0 after a bankruptcy) is a missing bar, as in empyrical: means and deviations skip it, the
  equity path stays flat through it, and it still counts in n for annualisation.
- ``periods``: bars per year (252 for daily bars; see ``titan_ray.domain.calendar``); ``n`` the
  number of returns and ``years = n / periods``.
- Sharpe = mean(r) / std(r, ddof=1) * sqrt(periods); ``nan`` when n < 2. Returns that are all
  equal have a standard deviation of exactly 0, so the ratio is +inf or -inf by the sign of the
  mean, and ``nan`` when they are all 0 (as in empyrical, which does not let a rounding residue
  of ~1e-18 turn a riskless series into an arbitrary 1e15).
- Sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(periods): the downside deviation is taken
  over all n periods, not only the losing ones. ``nan`` when n < 2; with no losing bar it is
  +inf for a positive mean and ``nan`` for a zero mean.
- CAGR = prod(1 + r) ^ (periods / n) - 1, i.e. (final / initial) ^ (1 / years) - 1; ``nan`` when
  n = 0.
- Max drawdown: the most negative (equity - running peak) / running peak, a fraction <= 0, on the
  equity path that starts at 1 before the first return, so the initial cash is the first peak.
- Max drawdown duration: the longest run of consecutive bars whose equity is below the running
  peak, in bars; a drawdown not recovered by the last bar counts up to the end. A bar counts as
  recovered when it is within ``DRAWDOWN_RTOL`` of the peak (see there why).
- Calmar = CAGR / |max drawdown|; ``nan`` when there is no drawdown or the ratio is infinite.
- Trades are closed round trips with their P&L net of commissions. Profit factor = gross profit /
  gross loss (+inf with profit and no loss, ``nan`` with neither); win rate = share of trades
  with P&L > 0 (``nan`` without trades).
- Turnover = traded value / mean(equity) / 2 / years: the annualised one-way turnover, where
  traded value is the sum of |quantity x fill price| over all fills (a buy and the sale that
  undoes it count once together).
- Exposure = mean(gross exposure / equity) over the bars, with gross exposure the bar's
  sum of |position x mark|: the average invested fraction (1.0 = fully invested, no leverage).
- Tail risk (``titan_ray.metrics.tail``): historical, per bar, not annualised (so never withheld), on the m present
  returns (``nan`` ones dropped; ``nan`` when m < 2); each is a return, negative for a loss, as
  empyrical's ``value_at_risk`` and ``conditional_value_at_risk`` with cutoff 1 - level.

  - ``var_95`` = np.percentile(r, 5), linear interpolation: one bar in 20 returns this or less.
  - ``cvar_95`` = mean of the k + 1 smallest returns, k = floor((m - 1) * 0.05): the worst 5%'s mean.
  - ``var_99`` = np.percentile(r, 1): one bar in 100 returns this or less.
  - ``cvar_99`` = mean of the k + 1 smallest returns, k = floor((m - 1) * 0.01).

These functions compute the annualised figures (CAGR, Sharpe, Sortino, Calmar, turnover) for any
n; whether n is long enough to *show* them is ``titan_ray.metrics.sample``'s rule (the longer of 30
returns and one trading day of bars), which the leaderboard applies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TypedDict

import numpy as np

from titan_ray.metrics.tail import historical_cvar, historical_var

# The equity path is rebuilt from returns by a cumulative product, so a full recovery to the old
# peak can land a few ulps below it. Bars within this relative distance of the peak count as
# recovered; 1e-10 of a 1,000,000 account is a hundredth of a cent, below any real drawdown.
DRAWDOWN_RTOL = 1e-10


class TradeStats(TypedDict):
    profit_factor: float
    win_rate: float
    n_trades: int


def returns_from_equity(equity: np.ndarray, initial: float) -> np.ndarray:
    """Simple per-bar returns of an equity curve, the first against ``initial``."""
    path = np.concatenate(([float(initial)], np.asarray(equity, dtype=np.float64)))
    # A bankrupt account (equity 0) has no defined next return; let it be inf/nan, silently.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diff(path) / path[:-1]


def sharpe(r: np.ndarray, periods: float) -> float:
    """Annualised Sharpe ratio, risk-free 0 (empyrical's ``sharpe_ratio``)."""
    r = _as_returns(r)
    x = _present(r)
    if r.size < 2 or x.size < 2:
        return math.nan
    with np.errstate(all="ignore"):
        std = np.std(x, ddof=1)
        # Equal values have no dispersion, whatever residue the float mean leaves (as empyrical).
        if x.max() == x.min() and np.isfinite(std):
            std = 0.0
        return float(x.mean() / std * math.sqrt(periods))


def sortino(r: np.ndarray, periods: float) -> float:
    """Annualised Sortino ratio, target 0, downside deviation over all periods."""
    r = _as_returns(r)
    x = _present(r)
    if r.size < 2 or x.size == 0:
        return math.nan
    with np.errstate(all="ignore"):
        downside = np.sqrt(np.mean(np.square(np.minimum(x, 0.0))))
        return float(x.mean() / downside * math.sqrt(periods))


def cagr(r: np.ndarray, periods: float) -> float:
    """Compound annual growth rate (empyrical's ``annual_return``)."""
    r = _as_returns(r)
    if r.size == 0:
        return math.nan
    # Years count every bar, missing ones too, as in empyrical. A path through negative equity
    # has no real annual rate: nan.
    with np.errstate(all="ignore"):
        growth = np.prod(1.0 + _present(r))
        return float(growth ** (1.0 / (r.size / periods)) - 1.0)


def max_drawdown(r: np.ndarray) -> float:
    """Largest peak-to-trough fall as a negative fraction (0.0 without a drawdown)."""
    r = _as_returns(r)
    if r.size == 0:
        return math.nan
    return float(np.nanmin(_drawdowns(r)))


class RunningReturns:
    """Sharpe and max drawdown of an equity curve that grows chunk by chunk, each chunk read once
    (a live leaderboard after every bar costs O(new bars), not O(history)). The figures are
    ``sharpe`` and ``max_drawdown`` of the whole curve, to rounding: the returns' mean and squared
    deviations are merged chunk by chunk (Chan, Golub and LeVeque's pairwise update), and the
    wealth path continues from its last value and peak."""

    def __init__(self, initial: float) -> None:
        self.last = float(initial)  # the equity the next return is measured against
        self.n = 0  # returns seen (the curve's rows), missing ones included, as in ``sharpe``
        self._k, self._mean, self._m2 = 0, 0.0, 0.0  # present returns: count, mean, squared deviations
        self._lo, self._hi = math.inf, -math.inf
        self._wealth, self._peak, self._mdd = 1.0, 1.0, 0.0

    def add(self, equity: np.ndarray) -> None:
        """The curve's next rows of equity."""
        r = returns_from_equity(equity, self.last)
        if r.size == 0:
            return
        self.last = float(equity[-1])
        self.n += r.size
        x = _present(r)
        with np.errstate(all="ignore"):
            if x.size:
                mean = float(x.mean())
                k = self._k + x.size
                delta = mean - self._mean
                self._m2 += float(np.square(x - mean).sum()) + delta * delta * self._k * x.size / k
                self._mean += delta * x.size / k
                self._k = k
                self._lo, self._hi = min(self._lo, float(x.min())), max(self._hi, float(x.max()))
            path = self._wealth * np.cumprod(1.0 + np.where(np.isnan(r), 0.0, r))
            peak = np.fmax.accumulate(np.concatenate(([self._peak], path)))[1:]
            self._mdd = float(np.nanmin(np.concatenate(([self._mdd], (path - peak) / peak))))
            self._wealth, self._peak = float(path[-1]), float(peak[-1])

    def sharpe(self, periods: float) -> float:
        if self.n < 2 or self._k < 2:
            return math.nan
        with np.errstate(all="ignore"):
            std = math.sqrt(self._m2 / (self._k - 1)) if self._m2 >= 0 else math.nan
            if self._lo == self._hi and math.isfinite(std):
                std = 0.0  # equal returns have no dispersion, as ``sharpe``
            return float(np.float64(self._mean) / np.float64(std) * math.sqrt(periods))

    def max_drawdown(self) -> float:
        return math.nan if self.n == 0 else self._mdd


def max_drawdown_duration(r: np.ndarray) -> int:
    """Longest run of bars below a previous peak; an unrecovered one counts up to the end."""
    r = _as_returns(r)
    with np.errstate(invalid="ignore"):
        underwater = _drawdowns(r)[1:] < -DRAWDOWN_RTOL
    return _longest_true_run(underwater)


def calmar(r: np.ndarray, periods: float) -> float:
    """CAGR over the absolute max drawdown (empyrical's ``calmar_ratio``)."""
    mdd = max_drawdown(r)
    if not mdd < 0.0:
        return math.nan
    ratio = cagr(r, periods) / -mdd
    return ratio if not math.isinf(ratio) else math.nan


def trade_stats(pnl: np.ndarray) -> TradeStats:
    """Profit factor, win rate and count of closed round trips from their net P&Ls."""
    pnl = np.asarray(pnl, dtype=np.float64).ravel()
    n = int(pnl.size)
    if n == 0:
        return TradeStats(profit_factor=math.nan, win_rate=math.nan, n_trades=0)
    gross_profit = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    if gross_loss > 0.0:
        profit_factor = gross_profit / gross_loss
    else:
        profit_factor = math.inf if gross_profit > 0.0 else math.nan
    return TradeStats(
        profit_factor=profit_factor,
        win_rate=float(np.count_nonzero(pnl > 0)) / n,
        n_trades=n,
    )


@dataclass(frozen=True, slots=True)
class PerformanceSummary:
    """One model's line on the leaderboard; definitions in the module docstring."""

    final_equity: float
    total_return: float
    cagr: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_duration: int
    profit_factor: float
    win_rate: float
    n_trades: int
    n_orders: int
    n_rejected: int
    turnover: float
    exposure: float
    var_95: float
    cvar_95: float
    var_99: float
    cvar_99: float

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain Python numbers, ``None`` for nan and inf, so ``json.dumps`` never writes NaN."""
        return {key: _json_number(value) for key, value in asdict(self).items()}


def summarize(
    equity: np.ndarray,
    initial: float,
    periods: float,
    *,
    gross_exposure: np.ndarray,
    traded_value: float,
    round_trip_pnl: np.ndarray,
    n_orders: int,
    n_rejected: int,
) -> PerformanceSummary:
    """Every leaderboard metric of one equity curve (one value per bar, after that bar)."""
    equity = np.asarray(equity, dtype=np.float64).ravel()
    gross_exposure = np.asarray(gross_exposure, dtype=np.float64).ravel()
    if gross_exposure.shape != equity.shape:
        raise ValueError(
            f"gross_exposure has {gross_exposure.size} bars but equity has {equity.size}; "
            "pass one sum of |position value| per equity bar"
        )
    if not initial > 0:
        raise ValueError(f"initial cash must be positive, got {initial!r}")
    initial = float(initial)  # the ledger's exact cash (Decimal) becomes a float64 metric here
    if not periods > 0:
        raise ValueError(f"periods per year must be positive, got {periods!r}")
    r = returns_from_equity(equity, initial)
    final = float(equity[-1]) if equity.size else float(initial)
    trades = trade_stats(round_trip_pnl)
    return PerformanceSummary(
        final_equity=final,
        total_return=final / initial - 1.0,
        cagr=cagr(r, periods),
        sharpe=sharpe(r, periods),
        sortino=sortino(r, periods),
        calmar=calmar(r, periods),
        max_drawdown=max_drawdown(r),
        max_drawdown_duration=max_drawdown_duration(r),
        profit_factor=trades["profit_factor"],
        win_rate=trades["win_rate"],
        n_trades=trades["n_trades"],
        n_orders=int(n_orders),
        n_rejected=int(n_rejected),
        turnover=_turnover(equity, float(traded_value), periods),
        exposure=_exposure(equity, gross_exposure),
        var_95=historical_var(r, 0.95),
        cvar_95=historical_cvar(r, 0.95),
        var_99=historical_var(r, 0.99),
        cvar_99=historical_cvar(r, 0.99),
    )


def _as_returns(r: np.ndarray) -> np.ndarray:
    return np.asarray(r, dtype=np.float64).ravel()


def _present(r: np.ndarray) -> np.ndarray:
    return r[~np.isnan(r)]


def _drawdowns(r: np.ndarray) -> np.ndarray:
    """Drawdown of each point of the equity path 1, 1+r0, ... (n + 1 values, the first 0)."""
    path = np.empty(r.size + 1)
    path[0] = 1.0
    with np.errstate(all="ignore"):
        # A missing return leaves equity unchanged, as in empyrical.
        np.cumprod(1.0 + np.where(np.isnan(r), 0.0, r), out=path[1:])
        peak = np.fmax.accumulate(path)
        return (path - peak) / peak


def _longest_true_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    # Starts and ends of the runs are where the padded 0/1 sequence steps up and down.
    steps = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(steps == 1)
    ends = np.flatnonzero(steps == -1)
    return int((ends - starts).max())


def _turnover(equity: np.ndarray, traded_value: float, periods: float) -> float:
    if equity.size == 0:
        return math.nan
    mean_equity = float(equity.mean())
    if not mean_equity > 0.0:
        return math.nan
    years = equity.size / periods
    return traded_value / mean_equity / 2.0 / years


def _exposure(equity: np.ndarray, gross_exposure: np.ndarray) -> float:
    if equity.size == 0:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(gross_exposure / equity))


def _json_number(value: float) -> float | int | None:
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None
