"""The causal feature pipeline: one row of features per timestamp and symbol, from bars ≤ t only.

``FeatureEngine.transform(bars)`` computes the whole panel at once (training);
``FeatureEngine.stream()`` returns a ``FeatureStream`` whose ``update(chunk)`` computes the rows of
each new chunk (trading). Both run the same code in the same float order, so a row is the same
bits whatever the chunking (a test checks several chunk sizes).

How each part stays chunk-invariant:

- rolling windows (returns, volatility, Bollinger, volume z-score) keep the last rows of their
  inputs and sum each window term by term in a fixed order (no cumulative-sum tricks);
- recursive averages (EMA for MACD, Wilder's for RSI and ATR) run one row at a time with state
  carried across chunks; each is seeded by the running mean of its first ``n`` inputs, which for
  Wilder's average is exactly the textbook SMA seed;
- cross-sectional ranks and time of day use only the row itself.

A symbol's missing bar (NaN close) carries its last close forward for the arithmetic, and its
feature row is NaN. A feature is NaN until the symbol has had enough bars (``needs``), so a
row that is not NaN never depends on history the pipeline did not see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import EXCHANGE_TZ, NS_PER_SECOND, local_times

# name -> bars a symbol must have had (including the current one) for the feature to be valid
_NEEDS: dict[str, int] = {
    "ret_1": 2,
    "ret_5": 6,
    "ret_20": 21,
    "vol_20": 21,
    "rsi_14": 15,
    "macd": 26,
    "macd_signal": 34,
    "macd_hist": 34,
    "bb_pos_20": 20,
    "atr_14": 15,
    "volume_z_20": 20,
    "rank_ret_5": 6,
    "rank_ret_20": 21,
    "rank_vol_20": 21,
    "tod_sin": 1,
    "tod_cos": 1,
}
ALL_FEATURES: tuple[str, ...] = tuple(_NEEDS)

DESCRIPTIONS: dict[str, str] = {
    "ret_1": "1-bar log return",
    "ret_5": "5-bar log return",
    "ret_20": "20-bar log return",
    "vol_20": "standard deviation of 1-bar log returns over 20 bars",
    "rsi_14": "Wilder's RSI over 14 bars (0..100)",
    "macd": "EMA(12) - EMA(26) of close, over close",
    "macd_signal": "EMA(9) of macd",
    "macd_hist": "macd - macd_signal",
    "bb_pos_20": "(close - SMA(20)) / (2 x sd(20)): position in the Bollinger band (-1..1 inside)",
    "atr_14": "Wilder's average true range over 14 bars, over close",
    "volume_z_20": "z-score of log(1 + volume) against its last 20 bars",
    "rank_ret_5": "cross-sectional rank of ret_5 among symbols (0 lowest .. 1 highest)",
    "rank_ret_20": "cross-sectional rank of ret_20",
    "rank_vol_20": "cross-sectional rank of vol_20",
    "tod_sin": "time of day (New York) on the unit circle, sine",
    "tod_cos": "time of day (New York) on the unit circle, cosine",
}

_HIST = 21  # rows of raw inputs kept across chunks: the longest window (20 returns need 21 closes)
# recursions: gain, loss (Wilder 14), true range (Wilder 14), EMA 12, EMA 26 of close
_ALPHA = np.array([1 / 14, 1 / 14, 1 / 14, 2 / 13, 2 / 27])[:, None]
_SIGNAL_ALPHA = 2 / 10


class FeatureEngine:
    """Computes the named features (all of ``ALL_FEATURES`` by default) for a ``BarBatch``."""

    def __init__(self, names: Sequence[str] | None = None) -> None:
        names = ALL_FEATURES if names is None else tuple(names)
        unknown = [n for n in names if n not in _NEEDS]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known features: {', '.join(ALL_FEATURES)}")
        if not names:
            raise ValueError("give at least one feature name, or None for all of them")
        if len(set(names)) != len(names):
            raise ValueError(f"feature names listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        self.names: tuple[str, ...] = tuple(names)
        self.lookback: int = max(_NEEDS[n] for n in self.names)
        self._index = np.array([ALL_FEATURES.index(n) for n in self.names])

    def transform(self, bars: BarBatch) -> np.ndarray:
        """Features of every row of ``bars``, (T, S, F) float64, NaN where not yet valid."""
        return self.stream().update(bars)

    def stream(self) -> FeatureStream:
        return FeatureStream(self)


@dataclass
class _State:
    prev_close: np.ndarray  # (S,) last close seen (carried over missing bars), NaN before the first
    count: np.ndarray  # (S,) bars since the symbol's first bar, including missing ones
    hist_logc: np.ndarray  # (_HIST, S) last log closes (filled)
    hist_ret: np.ndarray  # (_HIST, S) last 1-bar log returns
    hist_lvol: np.ndarray  # (_HIST, S) last log(1 + volume)
    rec: np.ndarray  # (5, S) recursive averages
    signal: np.ndarray  # (S,) EMA 9 of macd


class FeatureStream:
    """Incremental features: ``update(chunk)`` gives the chunk's rows, identical to the bulk ones."""

    def __init__(self, engine: FeatureEngine) -> None:
        self.engine = engine
        self._state: _State | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self.engine.names

    def update(self, chunk: BarBatch) -> np.ndarray:
        """(T_chunk, S, F) features of the chunk's rows (bars ≤ each row only)."""
        s = chunk.n_symbols
        if self._state is None:
            nan = np.full((_HIST, s), np.nan)
            self._state = _State(np.full(s, np.nan), np.zeros(s, dtype=np.int64), nan.copy(), nan.copy(),
                                 nan.copy(), np.zeros((5, s)), np.zeros(s))
        st = self._state
        if st.prev_close.shape != (s,):
            raise ValueError(f"chunk has {s} symbols but the stream started with {st.prev_close.shape[0]}")
        full = _compute(chunk, st)
        return np.ascontiguousarray(full[:, :, self.engine._index])


def _window(ext: np.ndarray, t: int, n: int) -> list[np.ndarray]:
    """The ``n`` terms of each row's window, oldest first: rows of ``ext``'s last ``t`` rows."""
    off = len(ext) - t
    return [ext[off - n + 1 + k : off - n + 1 + k + t] for k in range(n)]


def _mean_sd(ext: np.ndarray, t: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    terms = _window(ext, t, n)
    acc = np.zeros_like(terms[0])
    for x in terms:
        acc = acc + x
    mean = acc / n
    sq = np.zeros_like(mean)
    for x in terms:
        sq = sq + (x - mean) ** 2
    return mean, np.sqrt(sq / (n - 1))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Cross-sectional rank of each row of ``x`` (T, S) in 0..1 among its finite cells."""
    valid = np.isfinite(x)
    order = np.argsort(np.where(valid, x, np.inf), axis=1, kind="stable")
    rank = np.argsort(order, axis=1, kind="stable").astype(np.float64)
    n = valid.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(n > 1, rank / (n - 1), 0.5)
    return np.where(valid, scaled, np.nan)


def _time_of_day(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of the New York wall-clock time (whole seconds) of each timestamp (ns, UTC)."""
    seconds = (local_times(timestamps, EXCHANGE_TZ) // NS_PER_SECOND) % 86_400
    minutes = (seconds // 3600) * 60 + (seconds % 3600) // 60 + (seconds % 60) / 60
    angle = 2 * math.pi * minutes / 1440.0
    return np.sin(angle), np.cos(angle)


_RECURSION = None


def _recursion() -> Any:
    """The recursive averages' loop, compiled on first use (numba's cache; rule models never load it).

    Per row ``i``, element by element, exactly the NumPy expressions it replaces: where an input has
    started, ``rec + (x - rec) * alpha``; ``m = (rec[3] - rec[4]) / denom`` (NumPy's division: no
    error on zero); where the symbol has started, ``signal + (m - signal) * alpha9``. Without fast
    math, so the bits are those of the NumPy version.
    """
    global _RECURSION
    if _RECURSION is None:
        from numba import njit

        @njit(cache=True, error_model="numpy")
        def loop(clean, alpha, started_in, started, denom, alpha9, rec, signal, recs, macd, signals):
            t, k, s = clean.shape
            for i in range(t):
                for j in range(k):
                    for c in range(s):
                        if started_in[i, j, c]:
                            rec[j, c] = rec[j, c] + (clean[i, j, c] - rec[j, c]) * alpha[i, j, c]
                for c in range(s):
                    m = (rec[3, c] - rec[4, c]) / denom[i, c]
                    if started[i, c]:
                        signal[c] = signal[c] + (m - signal[c]) * alpha9[i, c]
                    for j in range(k):
                        recs[i, j, c] = rec[j, c]
                    macd[i, c] = m
                    signals[i, c] = signal[c]

        _RECURSION = loop
    return _RECURSION


def _compute(chunk: BarBatch, st: _State) -> np.ndarray:
    t, s = len(chunk), chunk.n_symbols
    close = chunk.close
    present = np.isfinite(close)
    # Carry the last close over missing bars; a missing bar trades nothing (high = low = close).
    filled = np.vstack([st.prev_close[None, :], close])
    idx = np.where(np.isfinite(filled), np.arange(t + 1)[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled = np.take_along_axis(filled, idx, axis=0)
    prev, cur = filled[:-1], filled[1:]
    high = np.where(present, chunk.high, cur)
    low = np.where(present, chunk.low, cur)
    volume = np.where(present, chunk.volume, 0.0)

    seen = np.isfinite(cur)  # the symbol has had its first bar by this row
    count = st.count[None, :] + np.cumsum(seen, axis=0)
    logc = np.log(cur)
    ret1 = logc - np.log(prev)
    lvol = np.log1p(volume)

    ext_logc = np.vstack([st.hist_logc, logc])
    ext_ret = np.vstack([st.hist_ret, ret1])
    ext_lvol = np.vstack([st.hist_lvol, lvol])

    out = np.full((t, s, len(ALL_FEATURES)), np.nan)

    def put(name: str, values: np.ndarray) -> None:
        ok = present & (count >= _NEEDS[name])
        out[:, :, ALL_FEATURES.index(name)] = np.where(ok, values, np.nan)

    off = len(ext_logc) - t
    for h in (1, 5, 20):
        put(f"ret_{h}", ext_logc[off:] - ext_logc[off - h : off - h + t])
    _, vol20 = _mean_sd(ext_ret, t, 20)
    put("vol_20", vol20)
    sma20, sd20 = _mean_sd(ext_logc, t, 20)
    with np.errstate(divide="ignore", invalid="ignore"):
        put("bb_pos_20", (logc - sma20) / (2 * sd20))
    lv_mean, lv_sd = _mean_sd(ext_lvol, t, 20)
    with np.errstate(divide="ignore", invalid="ignore"):
        put("volume_z_20", np.where(lv_sd > 0, (lvol - lv_mean) / lv_sd, 0.0))

    # Recursive averages, row by row: gain, loss, true range, EMA 12, EMA 26.
    diff = np.where(np.isfinite(ret1), cur - prev, 0.0)
    tr = np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))
    inputs = np.stack([np.maximum(diff, 0.0), np.maximum(-diff, 0.0), tr, cur, cur], axis=1)  # (T, 5, S)
    n_in = np.stack([count - 1, count - 1, count - 1, count, count], axis=1)  # inputs seen so far
    rec, signal = st.rec, st.signal
    recs = np.empty((t, 5, s))
    macd = np.empty((t, s))
    signals = np.empty((t, s))
    # Everything that does not depend on the previous row, for all rows at once; the compiled loop
    # keeps the recursion only (the same float operations as row by row, so the same bits).
    clean = np.nan_to_num(inputs)
    alpha = np.maximum(_ALPHA, 1.0 / np.maximum(n_in, 1))
    started_in = n_in >= 1
    started = count >= 1
    denom = np.where(started, cur, 1.0)
    alpha9 = np.maximum(_SIGNAL_ALPHA, 1.0 / np.maximum(count, 1))
    rec, signal = rec.copy(), signal.copy()  # updated in place by the compiled loop
    _recursion()(clean, alpha, started_in, started, denom, alpha9, rec, signal, recs, macd, signals)
    gain, loss = recs[:, 0], recs[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(loss > 0, 100.0 - 100.0 / (1.0 + gain / loss), np.where(gain > 0, 100.0, 50.0))
        put("atr_14", recs[:, 2] / cur)
    put("rsi_14", rsi)
    put("macd", macd)
    put("macd_signal", signals)
    put("macd_hist", macd - signals)

    for name in ("ret_5", "ret_20", "vol_20"):
        put(f"rank_{name}", _ranks(out[:, :, ALL_FEATURES.index(name)]))
    sin, cos = _time_of_day(chunk.timestamps)
    put("tod_sin", np.broadcast_to(sin[:, None], (t, s)))
    put("tod_cos", np.broadcast_to(cos[:, None], (t, s)))

    st.prev_close = cur[-1].copy() if t else st.prev_close
    st.count = count[-1].copy() if t else st.count
    st.hist_logc, st.hist_ret, st.hist_lvol = ext_logc[-_HIST:], ext_ret[-_HIST:], ext_lvol[-_HIST:]
    st.rec, st.signal = rec, signal
    return out
