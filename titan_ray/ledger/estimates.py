"""Causal market estimates the ledger's sizing, stops, impact and execution read, per bar and symbol.

Each estimate at bar t uses bars up to and including t only: the returns' standard deviation and
mean over a window of close-to-close returns (of the close marks: a bar without a close repeats
the last one), the average true range, and the mean bar volume. The ledger computes them once per
chunk for every model (they are the market's, not a model's) and hands the kernel one array
``(T + 1, S, N_FIELDS)``: row 0 is the bar before the chunk, row t + 1 bar t of the chunk, so that
the kernel reads "as of the last close" (row t, for a fill at bar t's open or a stop watching bar
t) and "as of this close" (row t + 1, for a decision at bar t) without crossing a chunk boundary.

Results never depend on the chunk size: the last rows of the previous chunk are carried, and each
window is reduced on its own contiguous copy, so every estimate is the very float a single pass
over the whole history gives.

- ``SD`` and ``MU`` (sizing window): sample standard deviation (ddof 1) and mean of the last
  ``window`` returns, per bar (not annualised);
- ``ATR`` (``stops.atr_period``): the simple mean of the true range max(high - low, |high - prev
  close|, |low - prev close|) over the last ``atr_period`` bars;
- ``SD_IMPACT`` and ``VOLUME_IMPACT`` (``almgren_chriss.window``): the returns' standard deviation
  and the mean bar volume, for the impact model;
- ``VOLUME_EXECUTION`` (``execution.volume_window``): the mean bar volume VWAP expects.

A field no rule reads is NaN. ``BARS_PER_DAY`` (annualising a volatility, and the impact model's
daily volatility and volume) comes from the calendar and the bar spacing: the smallest gap between
two timestamps up to that bar (1 before two bars).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from titan_ray.config import (
    AlmgrenChrissSlippage,
    KellySizing,
    LedgerConfig,
    RiskParitySizing,
    VolTargetSizing,
)
from titan_ray.domain.calendar import TRADING_DAYS, Calendar, periods_per_year

SD, MU, ATR, SD_IMPACT, VOLUME_IMPACT, VOLUME_EXECUTION, BARS_PER_DAY = range(7)
N_FIELDS = 7


class MarketEstimates:
    """The carried history and the per-chunk estimates of one ledger."""

    def __init__(self, ledger: LedgerConfig, n_symbols: int, calendar: Calendar) -> None:
        sizing, slippage = ledger.sizing, ledger.slippage
        self.windows: dict[int, int] = {}
        if isinstance(sizing, VolTargetSizing | KellySizing | RiskParitySizing):
            self.windows[SD] = self.windows[MU] = sizing.window
        if ledger.stops.uses_atr:
            self.windows[ATR] = ledger.stops.atr_period
        if isinstance(slippage, AlmgrenChrissSlippage):
            self.windows[SD_IMPACT] = self.windows[VOLUME_IMPACT] = slippage.window
        if ledger.execution.algo == "vwap":
            self.windows[VOLUME_EXECUTION] = ledger.execution.volume_window
        self.active = bool(self.windows)
        self.calendar = calendar
        self.n_symbols = n_symbols
        keep = max(self.windows.values(), default=0) + 1  # rows of history a window reaches back
        self._keep = keep
        self._close = np.empty((0, n_symbols))
        self._high = np.empty((0, n_symbols))
        self._low = np.empty((0, n_symbols))
        self._volume = np.empty((0, n_symbols))
        self._last = np.full((n_symbols, N_FIELDS), np.nan)  # the estimates at the last bar seen
        self._spacing: int | None = None  # smallest gap between timestamps seen (ns)
        self._last_timestamp: int | None = None

    def _bars_per_day(self, spacing: int | None) -> float:
        """Bars in one trading day for bars ``spacing`` ns apart (1 without a spacing, or for daily bars)."""
        if spacing is None:
            return 1.0
        days = TRADING_DAYS if self.calendar is Calendar.EQUITIES else 365
        return max(1.0, periods_per_year(timedelta(microseconds=spacing / 1e3), self.calendar) / days)

    def update(self, timestamps: np.ndarray, close_mark: np.ndarray, high: np.ndarray, low: np.ndarray,
               volume: np.ndarray) -> np.ndarray:
        """The estimates for a chunk: ``(T + 1, S, N_FIELDS)`` (``(T + 1, S, 0)`` when no rule reads any)."""
        if not self.active:
            return np.empty((len(close_mark) + 1, close_mark.shape[1], 0))
        n_t, n_s = close_mark.shape
        tail = len(self._close)
        close = np.vstack([self._close, close_mark])
        hi, lo = np.vstack([self._high, high]), np.vstack([self._low, low])
        vol = np.vstack([self._volume, np.where(np.isfinite(volume), volume, 0.0)])
        out = np.full((n_t + 1, n_s, N_FIELDS), np.nan)
        out[0] = self._last
        rows = tail + np.arange(n_t)  # the chunk's bars in the extended arrays
        with np.errstate(invalid="ignore", divide="ignore"):
            ret = np.full_like(close, np.nan)
            ret[1:] = close[1:] / close[:-1] - 1.0  # ret[i]: from bar i-1 to bar i
            prev = np.vstack([np.full((1, n_s), np.nan), close[:-1]])
            true_range = np.fmax(hi - lo, np.fmax(np.abs(hi - prev), np.abs(lo - prev)))
            true_range[~(np.isfinite(hi) & np.isfinite(lo))] = np.nan
            for field, window in self.windows.items():
                if field in (SD, SD_IMPACT):
                    out[1:, :, field] = _rolling(ret, rows, window, "std")
                elif field == MU:
                    out[1:, :, field] = _rolling(ret, rows, window, "mean")
                elif field == ATR:
                    out[1:, :, field] = _rolling(true_range, rows, window, "mean")
                else:
                    out[1:, :, field] = _rolling(vol, rows, window, "mean")
        out[1:, :, BARS_PER_DAY] = self._per_day(timestamps)[:, None]
        self._last = out[-1].copy()
        keep = self._keep
        self._close, self._high, self._low, self._volume = close[-keep:], hi[-keep:], lo[-keep:], vol[-keep:]
        return out

    def _per_day(self, timestamps: np.ndarray) -> np.ndarray:
        """Bars a day as of each timestamp: from the smallest gap between timestamps up to it."""
        out = np.empty(len(timestamps))
        per_day = self._bars_per_day(self._spacing)
        for i, stamp in enumerate(np.asarray(timestamps, dtype=np.int64).tolist()):
            if self._last_timestamp is not None and stamp > self._last_timestamp:
                gap = stamp - self._last_timestamp
                if self._spacing is None or gap < self._spacing:
                    self._spacing = gap
                    per_day = self._bars_per_day(gap)
            self._last_timestamp = stamp
            out[i] = per_day
        return out


def _rolling(values: np.ndarray, rows: np.ndarray, window: int, how: str) -> np.ndarray:
    """The ``how`` (mean, or std with ddof 1) of ``values[i - window + 1 : i + 1]`` for each i in
    ``rows`` (NaN where fewer rows exist), each window reduced on its own contiguous copy."""
    n_s = values.shape[1]
    out = np.full((len(rows), n_s), np.nan)
    ok = rows >= window - 1
    if not ok.any():
        return out
    starts = rows[ok] - window + 1
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)
    got = np.empty((len(starts), n_s))
    block = max(1, _BLOCK_CELLS // max(1, n_s * window))  # rows at a time: a bounded copy, whatever the chunk
    for lo in range(0, len(starts), block):
        windows = view[starts[lo:lo + block]]  # a contiguous copy: (rows, S, window)
        got[lo:lo + block] = windows.std(axis=2, ddof=1) if how == "std" else windows.mean(axis=2)
    out[ok] = got
    return out


_BLOCK_CELLS = 1 << 20  # values copied at once by _rolling (8 MiB)
