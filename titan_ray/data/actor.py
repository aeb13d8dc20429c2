"""MarketDataActor: the arena's only clock.

It loads the history once (in its own worker, so a large file never passes through the driver),
then hands out ``BarBatch`` chunks in time order: first the warm-up bars, then the bars to trade.
Each chunk it returns is stored once in Ray's object store, and the driver fans that one
reference out to every model and to the ledger.

With ``replay.pace`` set it releases a chunk only when its last bar is due on the wall clock
(bar time since the first traded bar, divided by ``speed``): a live-like feed.

With ``live`` set (live mode) the actor drives a ``LiveFeed`` instead: warm-up history, then one
chunk per bar from the provider's stream, unbounded; ``wait_chunk`` tells the driver whether a
chunk exists yet, so it can keep its own time limit and Ctrl-C while the market is quiet. The
live feed's module (Alpaca's client behind it) is loaded by name, only by an actor that streams.

Each traded chunk (not the warm-up) also goes to the ``sink`` the driver handed in, if any.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray

from titan_ray.config import DataConfig, LiveConfig, ReplayConfig
from titan_ray.data.market import DataError, MarketData
from titan_ray.data.providers import make_provider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.events import EventSink
from titan_ray.lazy import load
from titan_ray.metrics.regimes import classify, market_index

_LIVE_FEED = "titan_ray.data.live:alpaca_live_feed"


class MarketFeed:
    """The plain-Python clock behind the actor (tested without Ray)."""

    def __init__(
        self,
        market: MarketData,
        replay: ReplayConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.market = market
        self.replay = replay
        self._clock, self._sleep = clock, sleep
        bars = market.bars
        n = len(bars)
        warm = min(replay.warmup_bars, n)
        self.chunk_size = size = replay.chunk(n - warm, len(bars.symbols))
        self._plan = [(i, min(i + size, warm)) for i in range(0, warm, size)]
        self.n_warmup_chunks = len(self._plan)
        self._plan += [(i, min(i + size, n)) for i in range(warm, n, size)]
        self._trade_start = warm
        self._cursor = 0
        self._t0: float | None = None

    @property
    def n_chunks(self) -> int:
        return len(self._plan)

    def seek(self, chunk: int) -> None:
        """Continue from chunk number ``chunk`` of the plan (a resumed run)."""
        self._cursor = max(0, min(chunk, len(self._plan)))

    def history(self, start: int, stop: int) -> BarBatch:
        """Bars [start, stop) that the feed has already handed out: the past, never the future."""
        handed = self._plan[self._cursor - 1][1] if self._cursor else 0
        if stop > handed:
            raise ValueError(f"bars up to {stop} asked for, but the clock is at {handed}: no look-ahead")
        return self.market.bars.slice(start, stop)

    def next_chunk(self, index: int | None = None) -> BarBatch | None:
        """The next chunk, or chunk number ``index`` of the plan (idempotent: safe to retry)."""
        index = self._cursor if index is None else index
        if index >= len(self._plan):
            return None
        i, j = self._plan[index]
        self._cursor = max(self._cursor, index + 1)
        chunk = self.market.bars.slice(i, j)
        if self.replay.pace is not None and i >= self._trade_start:
            self._wait_until_due(chunk)
        return chunk

    def _wait_until_due(self, chunk: BarBatch) -> None:
        ts = self.market.bars.timestamps
        if self._t0 is None:
            self._t0 = self._clock()
        bar_seconds = (int(chunk.timestamps[-1]) - int(ts[self._trade_start])) / 1e9
        due = self._t0 + bar_seconds / self.replay.pace.speed
        delay = due - self._clock()
        if delay > 0:
            self._sleep(delay)


@ray.remote
class MarketDataActor:
    def __init__(
        self, data: DataConfig, seed: int, replay: ReplayConfig, sink: EventSink | None = None,
        live: LiveConfig | None = None, environ: dict[str, str] | None = None,
    ) -> None:
        self._error: str | None = None
        self._live = live is not None
        self._sink = sink
        loading = time.perf_counter()
        try:
            if live is not None:
                self._feed = load(_LIVE_FEED)(data, replay, live, environ=environ)
            else:
                self._feed = MarketFeed(make_provider(data, seed, environ=environ).load(), replay)
        except DataError as err:
            # Kept and reported by info(), so the driver can show a clean message, not a traceback.
            self._error = str(err)
        self._load_seconds = time.perf_counter() - loading  # run.json's phases.data

    def info(self) -> dict[str, Any]:
        if self._error is not None:
            return {"error": self._error}
        if self._live:
            return {**self._feed.info(), "load_seconds": self._load_seconds,
                    "node_id": ray.get_runtime_context().get_node_id()}
        m = self._feed.market
        return {
            "symbols": m.bars.symbols,
            "n_timestamps": len(m.bars),
            "n_bars": m.bars.n_bars,
            "first_timestamp": int(m.bars.timestamps[0]),
            "last_timestamp": int(m.bars.timestamps[-1]),
            "frequency": m.frequency,
            "calendar": m.calendar.value,
            "source": m.source,
            "rejected_counts": m.rejected_counts(),
            "rejected_sample": [str(r) for r in m.rejected[:20]],
            "n_rejected": len(m.rejected),
            "n_chunks": self._feed.n_chunks,
            "chunk_size": self._feed.chunk_size,
            "n_warmup_chunks": self._feed.n_warmup_chunks,
            "warmup_bars": self._feed._trade_start,
            "load_seconds": self._load_seconds,
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def wait_chunk(self, index: int, timeout: float) -> bool | None:
        """Live mode: does chunk ``index`` exist yet (True), not yet (False), or never (None)."""
        return self._feed.wait_chunk(index, timeout) if self._live else index < self._feed.n_chunks or None

    def close(self) -> None:
        """Live mode: stop the stream (replay has nothing to close)."""
        if self._live:
            self._feed.close()

    def next_chunk(self, index: int | None = None) -> BarBatch | None:
        chunk = self._feed.next_chunk(index)
        trade_start = self._feed.warmup_bars if self._live else self._feed._trade_start
        if chunk is not None and self._sink is not None and chunk.start >= trade_start:
            self._sink.bars(chunk)
        return chunk

    def seek(self, chunk: int) -> None:
        self._feed.seek(chunk)

    def history(self, start: int, stop: int) -> BarBatch:
        return self._feed.history(start, stop)

    def regimes(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every bar's timestamp and market regime (``metrics/regimes.py``: trend x volatility of the
        equal-weight index, each label from the bars up to it); None for a live stream."""
        if self._live:
            return None
        bars = self._feed.market.bars
        return np.asarray(bars.timestamps), classify(market_index(bars.close))

    def plan(self) -> list[tuple[int, int]]:
        return list(self._feed._plan)
