"""BarBatch: the columnar unit of market data on every hop of the arena.

A batch holds T timestamps x S symbols of OHLCV bars as float64 numpy arrays, with int64 UTC
nanosecond timestamps and the global index of its first timestamp in the replay (``start``), so a
model or the ledger can key decisions by a bar's position in the whole run, whatever the chunk
size. A symbol without a bar at a timestamp has NaN prices and zero volume there.

Batches are immutable by convention: arrays are marked read-only so that a batch fanned out by
reference to several actors can never be changed by one of them under the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class BarBatch:
    timestamps: np.ndarray  # (T,) int64, UTC nanoseconds, strictly increasing
    symbols: tuple[str, ...]
    open: np.ndarray  # (T, S) float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    start: int = 0  # global index of timestamps[0] in the replay

    def __post_init__(self) -> None:
        t, s = len(self.timestamps), len(self.symbols)
        for name in FIELDS:
            arr = getattr(self, name)
            if arr.shape != (t, s):
                raise ValueError(f"BarBatch.{name} has shape {arr.shape}, expected {(t, s)}")
        for name in ("timestamps", *FIELDS):
            getattr(self, name).flags.writeable = False

    @classmethod
    def from_arrays(
        cls,
        timestamps: np.ndarray,
        symbols: list[str] | tuple[str, ...],
        *,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        start: int = 0,
    ) -> BarBatch:
        def arr(x: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(x, dtype=np.float64)

        return cls(
            timestamps=np.ascontiguousarray(timestamps, dtype=np.int64),
            symbols=tuple(symbols),
            open=arr(open),
            high=arr(high),
            low=arr(low),
            close=arr(close),
            volume=arr(volume),
            start=start,
        )

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def n_bars(self) -> int:
        """Bars that exist (a symbol with no bar at a timestamp does not count)."""
        return int(np.isfinite(self.close).sum())

    @property
    def stop(self) -> int:
        return self.start + len(self)

    def slice(self, i: int, j: int) -> BarBatch:
        """Timestamps [i, j) of this batch, as a batch that keeps its global position."""
        return BarBatch(
            timestamps=self.timestamps[i:j],
            symbols=self.symbols,
            open=self.open[i:j],
            high=self.high[i:j],
            low=self.low[i:j],
            close=self.close[i:j],
            volume=self.volume[i:j],
            start=self.start + i,
        )

    def chunks(self, size: int):
        """Yield consecutive batches of at most ``size`` timestamps."""
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        for i in range(0, len(self), size):
            yield self.slice(i, min(i + size, len(self)))

    def select(self, symbols: list[str] | tuple[str, ...]) -> BarBatch:
        idx = [self.symbols.index(s) for s in symbols]
        return BarBatch.from_arrays(
            self.timestamps,
            list(symbols),
            open=self.open[:, idx],
            high=self.high[:, idx],
            low=self.low[:, idx],
            close=self.close[:, idx],
            volume=self.volume[:, idx],
            start=self.start,
        )

    @staticmethod
    def concat(batches: list[BarBatch]) -> BarBatch:
        if not batches:
            raise ValueError("concat needs at least one batch")
        first = batches[0]
        return BarBatch.from_arrays(
            np.concatenate([b.timestamps for b in batches]),
            first.symbols,
            **{f: np.concatenate([getattr(b, f) for b in batches]) for f in FIELDS},
            start=first.start,
        )
