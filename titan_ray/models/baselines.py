"""The baseline competitors: SMA crossover, RSI mean reversion, buy-and-hold, and random.

Each carries the state it needs across chunks (recent closes, Wilder averages, its current
weight), and computes every value with the same operations in the same order whatever the
chunk size, so that a replay in chunks of 1, 7 or 512 bars gives bit-identical weights.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import action_phrase
from titan_ray.models.base import Reasons, RowSentences, TradingModel, hold_forward
from titan_ray.models.params import HoldParams, RandomParams, RsiParams, SmaParams


def rolling_mean(history: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean of the last ``n`` rows ending at each row of ``values``; ``history`` holds n-1 rows before.

    Summed window term by term in a fixed order, so each mean is the same float whatever the
    chunking (a cumulative-sum trick would make it depend on where the chunk starts).
    """
    x = np.vstack([history, values])
    t = len(values)
    acc = np.zeros_like(values)
    for k in range(n):
        acc += x[k : k + t]
    return acc / n


class SmaCrossover(RowSentences, TradingModel):
    """Long on the bar the fast average crosses above the slow one, flat when it crosses below."""

    kind = "sma_crossover"
    Params = SmaParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        n = len(self.symbols)
        self._hist = np.full((self.params.slow - 1, n), np.nan)
        self._prev_fast = np.full(n, np.nan)
        self._prev_slow = np.full(n, np.nan)
        self._weight = np.zeros(n)
        self._long = self.params.weight or self.default_weight()

    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        p, close = self.params, bars.close
        fast = rolling_mean(self._hist[len(self._hist) - (p.fast - 1) :], close, p.fast)
        slow = rolling_mean(self._hist, close, p.slow)
        prev_fast = np.vstack([self._prev_fast[None, :], fast[:-1]])
        prev_slow = np.vstack([self._prev_slow[None, :], slow[:-1]])
        up = (prev_fast < prev_slow) & (fast > slow)
        down = (prev_fast > prev_slow) & (fast < slow)
        events = np.where(up, self._long, np.where(down, 0.0, np.nan))
        weights = hold_forward(events, self._weight)
        self._hist = np.vstack([self._hist, close])[-(p.slow - 1) :] if p.slow > 1 else self._hist
        self._prev_fast, self._prev_slow = fast[-1].copy(), slow[-1].copy()
        self._weight = weights[-1].copy()
        return weights, {"fast": fast, "slow": slow}

    def _explain(self, rows, cols, old, new, info, bars):
        p = self.params
        fast, slow = info["fast"][rows, cols], info["slow"][rows, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = (fast / slow - 1) * 100
        zeros = np.zeros_like(gap)
        names = [f"sma_{p.fast}", f"sma_{p.slow}", "gap_pct"]
        return Reasons(names, np.column_stack([fast, slow, gap]), np.column_stack([zeros, zeros, gap]),
                       np.nan)

    @classmethod
    def write_sentences(cls, symbols, old, new, names, values):
        fast_n, slow_n = names[0][4:], names[1][4:]
        return [
            f"{action_phrase(s, o, n)}: SMA({fast_n}) {fast:.2f} crossed {'above' if fast > slow else 'below'} "
            f"SMA({slow_n}) {slow:.2f}, gap {gap:+.2f}%."
            for s, o, n, (fast, slow, gap) in zip(symbols, old, new, values, strict=True)
        ]


class RsiReversion(RowSentences, TradingModel):
    """Wilder's RSI mean reversion: long when oversold, flat again when overbought."""

    kind = "rsi_reversion"
    Params = RsiParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        n = len(self.symbols)
        self._prev_close = np.full(n, np.nan)
        self._count = np.zeros(n, dtype=np.int64)  # price changes seen
        self._gain = np.zeros(n)  # sum while seeding, then Wilder's average
        self._loss = np.zeros(n)
        self._weight = np.zeros(n)
        self._long = self.params.weight or self.default_weight()

    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = self.params.period
        close = bars.close
        if (self._count >= n).all() and np.isfinite(close).all() and np.isfinite(self._prev_close).all():
            rsi = self._smooth_only(close)
        else:
            rsi = self._general(close)
        p = self.params
        events = np.where(rsi < p.low, self._long, np.where(rsi > p.high, 0.0, np.nan))
        weights = hold_forward(events, self._weight)
        self._weight = weights[-1].copy()
        return weights, {"rsi": rsi}

    @staticmethod
    def _rsi(gain: np.ndarray, loss: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(loss > 0, 100.0 - 100.0 / (1.0 + gain / loss), np.where(gain > 0, 100.0, 50.0))

    def _smooth_only(self, close: np.ndarray) -> np.ndarray:
        """Every symbol seeded and every bar present: only Wilder's recursion is left per row.

        The same float operations in the same order as ``_general``, so the two paths agree to
        the last bit (the chunk-invariance tests run both).
        """
        n = self.params.period
        d = np.diff(np.vstack([self._prev_close[None, :], close]), axis=0)
        g, lo = np.maximum(d, 0.0), np.maximum(-d, 0.0)
        gains, losses = np.empty_like(close), np.empty_like(close)
        gain, loss = self._gain, self._loss
        for i in range(len(close)):
            gain = (gain * (n - 1) + g[i]) / n
            loss = (loss * (n - 1) + lo[i]) / n
            gains[i], losses[i] = gain, loss
        self._gain, self._loss = gain, loss
        self._count = self._count + len(close)
        self._prev_close = close[-1].copy()
        return self._rsi(gains, losses)

    def _general(self, close: np.ndarray) -> np.ndarray:
        """Seeding, missing bars and all: the recursion with every case handled per row."""
        n = self.params.period
        rsi = np.full(close.shape, np.nan)
        prev, count, gain, loss = self._prev_close, self._count, self._gain, self._loss
        for i in range(len(close)):
            c = close[i]
            ok = np.isfinite(c) & np.isfinite(prev)
            d = np.where(ok, c - prev, 0.0)
            g, lo = np.maximum(d, 0.0), np.maximum(-d, 0.0)
            count = count + ok
            seeding = ok & (count <= n)
            gain = np.where(seeding, gain + g, gain)
            loss = np.where(seeding, loss + lo, loss)
            seeded = ok & (count == n)
            gain = np.where(seeded, gain / n, gain)
            loss = np.where(seeded, loss / n, loss)
            smooth = ok & (count > n)
            gain = np.where(smooth, (gain * (n - 1) + g) / n, gain)
            loss = np.where(smooth, (loss * (n - 1) + lo) / n, loss)
            rsi[i] = np.where(count >= n, self._rsi(gain, loss), np.nan)
            prev = np.where(np.isfinite(c), c, prev)
        self._prev_close, self._count, self._gain, self._loss = prev, count, gain, loss
        return rsi

    def _explain(self, rows, cols, old, new, info, bars):
        p = self.params
        rsi = info["rsi"][rows, cols]
        attribution = np.where(new > old, rsi - p.low, rsi - p.high)
        n = len(rows)
        values = np.column_stack([rsi, np.full(n, p.low), np.full(n, p.high)])
        attributions = np.column_stack([attribution, np.zeros((n, 2))])
        return Reasons([f"rsi_{p.period}", "low", "high"], values, attributions, np.nan)

    @classmethod
    def write_sentences(cls, symbols, old, new, names, values):
        period = names[0][4:]
        return [
            f"{action_phrase(s, o, n)}: RSI({period}) {rsi:.1f} fell below {low:g} (oversold)." if n > o else
            f"{action_phrase(s, o, n)}: RSI({period}) {rsi:.1f} rose above {high:g} (overbought)."
            for s, o, n, (rsi, low, high) in zip(symbols, old, new, values, strict=True)
        ]


class BuyAndHold(RowSentences, TradingModel):
    """The yardstick: an equal share of every symbol from its first bar, never sold."""

    kind = "buy_and_hold"
    Params = HoldParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        self._seen = np.zeros(len(self.symbols), dtype=bool)
        self._long = self.params.weight or self.default_weight()

    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        seen = np.logical_or.accumulate(np.vstack([self._seen[None, :], np.isfinite(bars.close)]), axis=0)[1:]
        self._seen = seen[-1].copy()
        return np.where(seen, self._long, 0.0), {}

    def observe(self, bars: BarBatch) -> None:
        # Warm-up bars only tell which symbols exist; buying starts when trading does.
        self._weights(bars)

    def _explain(self, rows, cols, old, new, info, bars):
        price = bars.close[rows, cols]
        return Reasons(["close"], price[:, None], np.zeros((len(rows), 1)), np.nan)

    @classmethod
    def write_sentences(cls, symbols, old, new, names, values):
        return [
            f"{action_phrase(s, o, n)}: the benchmark buys an equal share of every symbol on its first bar "
            f"({close:.2f}) and holds it."
            for s, o, n, (close,) in zip(symbols, old, new, values, strict=True)
        ]


class RandomModel(RowSentences, TradingModel):
    """The null hypothesis: seeded coin flips, redrawn every ``every`` bars."""

    kind = "random"
    Params = RandomParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        self.long_only = not self.params.allow_short
        self._weight = np.zeros(len(self.symbols))
        self._size = self.params.weight or self.default_weight()
        self._stream = zlib.crc32(name.encode())

    def _draw(self, bar: int) -> np.ndarray:
        # A generator per draw, keyed by the bar: the draw never depends on how bars were chunked.
        rng = np.random.default_rng([self.seed, self._stream, bar])
        hold = rng.random(len(self.symbols)) < self.params.p_long
        sign = np.where(rng.random(len(self.symbols)) < 0.5, -1.0, 1.0) if self.params.allow_short else 1.0
        return np.where(hold, sign * self._size, 0.0)

    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        events = np.full((len(bars), len(self.symbols)), np.nan)
        first = (-bars.start) % self.params.every
        for t in range(first, len(bars), self.params.every):
            events[t] = self._draw(bars.start + t)
        weights = hold_forward(events, self._weight)
        self._weight = weights[-1].copy()
        return weights, {}

    def _explain(self, rows, cols, old, new, info, bars):
        bar = (bars.start + rows).astype(np.float64)
        n = len(rows)
        values = np.column_stack([bar, np.full(n, float(self.seed))])
        return Reasons(["draw_bar", "seed"], values, np.zeros((n, 2)), np.nan)

    @classmethod
    def write_sentences(cls, symbols, old, new, names, values):
        return [
            f"{action_phrase(s, o, n)}: random draw at bar {int(bar)} (seed {int(seed)}); "
            "the null hypothesis that skill must beat."
            for s, o, n, (bar, seed) in zip(symbols, old, new, values, strict=True)
        ]
