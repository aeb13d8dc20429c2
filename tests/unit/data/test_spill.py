"""Bounded memory for what grows with a live run: the spilled table, and the live feed on it."""

from __future__ import annotations

import itertools
import queue
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from titan_ray.config import DataConfig, LiveConfig, ReplayConfig
from titan_ray.data.live import LiveFeed
from titan_ray.data.market import MarketData
from titan_ray.data.spill import SpilledColumns
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import Calendar

MINUTE = 60 * 1_000_000_000
T0 = 1_700_000_000 * 1_000_000_000 // MINUTE * MINUTE


def _table(tmp_path, block: int) -> SpilledColumns:
    return SpilledColumns({"t": ((), np.int64), "v": ((3,), np.float64)}, memory_rows=block, folder=tmp_path)


@settings(max_examples=40, deadline=None)
@given(block=st.integers(1, 9), n=st.integers(0, 80), data=st.data())
def test_any_range_reads_back_what_was_appended(tmp_path_factory, block, n, data):
    table = _table(tmp_path_factory.mktemp("spill"), block)
    rows = np.arange(n * 3, dtype=np.float64).reshape(n, 3) * 1.5
    for i in range(n):
        table.append(t=i * 7, v=rows[i])
    assert len(table) == n and table.spilled <= n and len(table) - table.spilled <= 2 * block
    start = data.draw(st.integers(0, n))
    stop = data.draw(st.integers(start, n))
    got = table.slice(start, stop)
    np.testing.assert_array_equal(got["t"], np.arange(start, stop) * 7)
    np.testing.assert_array_equal(got["v"], rows[start:stop])
    with pytest.raises(IndexError):
        table.slice(0, n + 1)
    table.close()


def test_memory_is_fixed_by_the_block_not_the_history(tmp_path):
    table = _table(tmp_path, 16)
    for i in range(100):
        table.append(t=i, v=np.full(3, i))
    held = table.memory_bytes
    assert held == 2 * 16 * (8 + 3 * 8)  # the arrays grew to twice the block, and no further
    for i in range(100, 10_000):
        table.append(t=i, v=np.full(3, i))
    assert table.memory_bytes == held and table.spilled >= 10_000 - 32
    assert table.slice(9_999, 10_000)["v"].tolist() == [[9_999.0] * 3]
    table.close()
    assert not any(tmp_path.iterdir())


class _Minutes:
    """A live source that speaks ``LiveSource``: one minute bar per symbol per call, forever."""

    def __init__(self, symbols: list[str], first_ns: int) -> None:
        self.symbols = symbols
        self._t = first_ns
        self._pending: queue.SimpleQueue = queue.SimpleQueue()

    def start(self) -> None:
        pass

    def get(self, timeout: float) -> tuple | None:
        if self._pending.empty():
            for k, s in enumerate(self.symbols):
                price = 100.0 + k + (self._t // MINUTE) % 50
                self._pending.put(("bar", s, self._t, price, price + 1, price - 1, price + 0.5, 1000.0))
            self._t += MINUTE
        return self._pending.get()

    def fetch(self, start_ns: int, end_ns: int | None, *, minutes: bool = False) -> dict[str, pd.DataFrame]:
        return {}

    def close(self) -> None:
        pass


def _history(symbols: tuple[str, ...], n: int) -> MarketData:
    ts = T0 + np.arange(n, dtype=np.int64) * MINUTE
    close = 100.0 + np.arange(n * len(symbols), dtype=np.float64).reshape(n, len(symbols)) % 7
    bars = BarBatch.from_arrays(ts, symbols, open=close, high=close + 1, low=close - 1, close=close,
                                volume=np.full_like(close, 500.0), start=0)
    return MarketData(bars, pd.Timedelta(minutes=1), Calendar.CONTINUOUS, "test", ())


def test_a_long_live_feed_holds_bounded_memory_and_serves_all_history():
    symbols = ("AAA", "BBB", "CCC")
    warm = 30
    source = _Minutes(list(symbols), T0 + warm * MINUTE)
    clock = itertools.count(0.0, 0.001)
    feed = LiveFeed(DataConfig(provider="alpaca", symbols=list(symbols), calendar="continuous", frequency="1min"),
                    ReplayConfig(warmup_bars=warm, chunk_size=10), LiveConfig(bar_grace_s=1.0), source,
                    _history(symbols, warm), clock=lambda: float(next(clock)), memory_bars=64)
    tracemalloc.start()
    k = feed.n_warmup_chunks
    for i in range(400):  # warm-up: the first, where the live bars start
        feed.next_chunk(k + i)
    held = feed.memory_bytes
    after_warm, _ = tracemalloc.get_traced_memory()
    for i in range(400, 4_000):
        feed.next_chunk(k + i)
    grown, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert feed.memory_bytes == held  # the bars in RAM: the block, whatever the history
    assert grown - after_warm < 200_000  # and nothing else grew with the bars (3,600 more of them)
    # the whole history is still there for a model that restarts: every bar from the first
    full = feed.history(0, warm + 3_000)
    assert len(full) == warm + 3_000 and full.start == 0
    np.testing.assert_array_equal(np.diff(full.timestamps), MINUTE)
    assert full.timestamps[0] == T0 and np.isfinite(full.close).all()
    info = feed.info()
    assert info["n_timestamps"] >= warm + 4_000 and info["first_timestamp"] == T0
    assert info["n_bars"] == info["n_timestamps"] * len(symbols)
    feed.close()
