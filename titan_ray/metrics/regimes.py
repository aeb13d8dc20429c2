"""Market regimes: a causal trend x volatility classifier, and figures per regime.

Four regimes, ``REGIMES[label]``: label = 2 x down + turbulent (``encode``), so bit 1 is the trend
axis (0 up, 1 down) and bit 0 the volatility axis (0 calm, 1 turbulent); -1 means not yet known.
The synthetic market's ``true_regimes`` (``titan_ray.data.synthetic``) uses the same encoding, so
``accuracy`` can score the classifier against the truth.

The parts and how they connect: ``market_index`` turns a (T, S) panel of closes into one
equal-weight index level; ``classify`` labels each bar of a level series; ``regime_metrics``
splits a return series by those labels; ``accuracy`` compares two label series.

The rule (``classify``), with every quantity at bar t computed from ``close[: t + 1]`` only:

- The level is carried forward over missing (NaN) bars; a missing bar has no return.
- Trend: the log change of the level over the last ``trend_bars`` bars,
  ``log(close[t] / close[t - trend_bars])``; down when negative, up otherwise (0 counts as up).
- Volatility: ``vol[t]``, the standard deviation (ddof 1) of the log returns of the last
  ``vol_bars`` bars (at least half of them present), against ``calm[t]``, the lowest decile
  (``CALM_QUANTILE``) of every ``vol`` value so far (expanding). Turbulent when
  ``vol[t] > TURBULENT_RATIO x calm[t]`` (1.75).
  Why a low quantile of the whole history, not a median of recent bars: volatility is bimodal
  and regimes last hundreds of bars, so a recent median sits on whichever regime filled the
  window (a long turbulent spell becomes "normal") and misses most turbulent bars; a low
  quantile of the whole history tracks the calm level however the time splits. On the
  synthetic scenarios this scores ~0.9 on the volatility axis where a rolling 500-bar median
  x 1.25 scored ~0.7. The axis stays relative to the series itself: a market that opens with a
  long turbulent spell reads as calm until a tenth of its history has been calm.
- A bar is -1 until both axes are known: the first ``trend_bars`` bars, and until ``vol`` has
  ``vol_history`` values (from about bar ``vol_bars // 2 + vol_history``).

Pandas' rolling windows run forward through the series, so no later value can reach an earlier
label; the unit tests perturb the future and check that.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from titan_ray.metrics.performance import sharpe

REGIMES: tuple[str, ...] = ("up_calm", "up_turbulent", "down_calm", "down_turbulent")
UNKNOWN = -1
CALM_QUANTILE = 0.1  # the calm level: this quantile of the volatility's whole history
TURBULENT_RATIO = 1.75  # volatility this many times the calm level is turbulent


def encode(down: np.ndarray, turbulent: np.ndarray) -> np.ndarray:
    """int8 labels from the two axes (bool arrays of one shape): 2 x down + turbulent."""
    return (2 * np.asarray(down, dtype=np.int8) + np.asarray(turbulent, dtype=np.int8)).astype(np.int8)


def classify(close: np.ndarray, *, trend_bars: int = 100, vol_bars: int = 50, vol_history: int = 500) -> np.ndarray:
    """Causal trend x volatility labels (int8, -1 until enough bars) for a price level series
    ``close`` (T,), e.g. ``market_index`` of a panel; NaN allowed. The label at bar t uses only
    ``close[: t + 1]``; the rule is in the module docstring."""
    level = _level(close)
    _check_window("trend_bars", trend_bars, 1)
    _check_window("vol_bars", vol_bars, 2)
    _check_window("vol_history", vol_history, 1)
    log_level = pd.Series(np.log(level)).ffill()
    trend = log_level - log_level.shift(trend_bars)
    returns = log_level.diff().where(np.isfinite(level))  # a missing bar has no return
    vol = returns.rolling(vol_bars, min_periods=max(2, vol_bars // 2)).std()
    calm = vol.expanding(min_periods=vol_history).quantile(CALM_QUANTILE)
    known = (trend.notna() & vol.notna() & calm.notna()).to_numpy()
    labels = encode((trend < 0).to_numpy(), (vol > TURBULENT_RATIO * calm).to_numpy())
    return np.where(known, labels, UNKNOWN).astype(np.int8)


def held_labels(market_timestamps: np.ndarray, labels: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """The regime in force while each return ending at ``timestamps`` (a model's equity bars) was
    earned: the label of the market bar before that bar (``UNKNOWN`` for the market's first bar and
    for a time the market does not have). ``labels`` belong to ``market_timestamps`` (sorted)."""
    ts = np.asarray(timestamps, dtype=np.int64)
    market = np.asarray(market_timestamps, dtype=np.int64)
    at = np.searchsorted(market, ts)
    found = (at < market.size) & (market[np.minimum(at, max(market.size - 1, 0))] == ts) & (at > 0)
    before = np.concatenate([[UNKNOWN], np.asarray(labels, dtype=np.int8)])[np.where(found, at, 0)]
    return np.where(found, before, UNKNOWN).astype(np.int8)


def market_index(close: np.ndarray) -> np.ndarray:
    """(T, S) closes -> (T,) equal-weight index level: 1.0 at the first bar with any close, then
    compounded by the mean simple return of the symbols that have a close at the bar (each
    against its last known close); flat through a bar with none, NaN before the first close."""
    panel = np.asarray(close, dtype=np.float64)
    if panel.ndim != 2:
        raise ValueError(f"market_index needs close of shape (T, S), got shape {panel.shape}")
    last = pd.DataFrame(panel).ffill().shift(1).to_numpy()  # each symbol's last known close before t
    with np.errstate(invalid="ignore", divide="ignore"):
        simple = panel / last - 1.0
    present = np.isfinite(simple)
    count = present.sum(axis=1)
    mean = np.where(count > 0, np.where(present, simple, 0.0).sum(axis=1) / np.maximum(count, 1), 0.0)
    level = np.cumprod(1.0 + mean)
    started = np.cumsum(np.isfinite(panel).any(axis=1)) > 0
    return np.where(started, level, np.nan)


def regime_metrics(returns: np.ndarray, labels: np.ndarray, periods: float) -> dict[str, dict[str, float | int]]:
    """Per regime name (all four, in ``REGIMES`` order): n_bars, total_return (compounded; 0.0
    without bars), mean_return and sharpe (annualised like ``titan_ray.metrics.performance.sharpe``;
    NaN when < 2 bars). Bars labelled -1 or with NaN returns are left out. ``returns[t]`` counts in
    the regime ``labels[t]``: to attribute a return to the regime known before it, pass the labels
    shifted by one bar."""
    r = np.asarray(returns, dtype=np.float64)
    lab = np.asarray(labels)
    if r.shape != lab.shape or r.ndim != 1:
        raise ValueError(f"returns and labels must be 1-D of one length, got shapes {r.shape} and {lab.shape}")
    out: dict[str, dict[str, float | int]] = {}
    for i, name in enumerate(REGIMES):
        x = r[(lab == i) & np.isfinite(r)]
        out[name] = {
            "n_bars": int(x.size),
            "total_return": float(np.prod(1.0 + x) - 1.0),
            "mean_return": float(x.mean()) if x.size else math.nan,
            "sharpe": sharpe(x, periods),
        }
    return out


def accuracy(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """{'overall', 'trend', 'volatility', 'n'} over the bars where ``predicted`` != -1: the share of
    exact labels, of right trend axes, of right volatility axes (NaN when n is 0), and n."""
    pred, truth = np.asarray(predicted), np.asarray(true)
    if pred.shape != truth.shape:
        raise ValueError(f"predicted and true must have one shape, got {pred.shape} and {truth.shape}")
    known = pred != UNKNOWN
    p, t = pred[known].astype(np.int64), truth[known].astype(np.int64)
    if p.size == 0:
        return {"overall": math.nan, "trend": math.nan, "volatility": math.nan, "n": 0.0}
    return {
        "overall": float(np.mean(p == t)),
        "trend": float(np.mean(p // 2 == t // 2)),
        "volatility": float(np.mean(p % 2 == t % 2)),
        "n": float(p.size),
    }


def _level(close: np.ndarray) -> np.ndarray:
    level = np.asarray(close, dtype=np.float64)
    if level.ndim != 1:
        raise ValueError(f"classify needs a 1-D close series (T,), got shape {level.shape}; use market_index")
    if np.any(level[np.isfinite(level)] <= 0):
        raise ValueError("close must be a positive price level (log returns); found values <= 0")
    return level


def _check_window(name: str, value: int, least: int) -> None:
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value}")
