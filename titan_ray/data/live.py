"""The live feed: bars from a stream, one chunk per bar time, behind the market-data actor.

``LiveFeed`` is to live trading what ``MarketFeed`` is to replay, and the market-data actor drives
either. It starts with warm-up history (the last ``replay.warmup_bars`` bar times over REST), then
appends one row per bar time as the stream delivers it:

- ``BarAssembler`` turns per-symbol stream bars (one message per symbol and minute) into rows of
  one bar time for all symbols. A bar time is complete when every symbol has sent its last minute,
  when a later bar time begins, or ``live.bar_grace_s`` after its first bar arrived (a symbol that
  did not trade then has NaN, as in replay). Minute bars are aggregated into longer bars
  (``data.frequency``: 5min, 15min, ...). A bar for a time already handed out is late and dropped.
- After a reconnect (every connection after the first) the bars missed while the stream was down
  are fetched over REST and go through the same assembler before the stream's next bars.
- ``data.session.outside`` applies to live bars too (keep / drop / reject).

The plan of chunks is: warm-up chunks over the history (``replay.chunk_size`` bar times each),
then one chunk per live bar time, unbounded. ``wait_chunk(k, timeout)`` says whether chunk ``k``
exists yet (True), not yet (False) or never will (None: the feed ended); ``next_chunk(k)`` returns
it. ``history`` serves restarted models, never beyond the bars handed out. The clock and the wall
time are injected.

Memory stays flat however long the feed runs: the bars live in a ``SpilledColumns`` table (the
newest ``memory_bars`` to twice that in RAM, older ones in files that ``close`` deletes), and of the
bars rejected on the way only the counts per rule and the first ``REJECTED_SAMPLE`` are kept.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from titan_ray.config import DataConfig, LiveConfig, ReplayConfig
from titan_ray.data.alpaca import AlpacaLiveSource, AlpacaProvider, assemble, with_session_rule
from titan_ray.data.files import time_bounds
from titan_ray.data.market import BadBarRule, DataError, MarketData, RejectedBar
from titan_ray.data.market_calendar import UsEquityCalendar
from titan_ray.data.spill import SpilledColumns
from titan_ray.domain.bars import FIELDS, BarBatch
from titan_ray.domain.calendar import Calendar

log = logging.getLogger("titan_ray.data.live")
_MINUTE = 60 * 1_000_000_000
MEMORY_BARS = 4096  # bar times the live feed keeps in RAM (to twice that); older ones are in files
REJECTED_SAMPLE = 1000  # rejected bars kept with their details; the rest are only counted


class LiveSource(Protocol):
    symbols: list[str]

    def start(self) -> None: ...
    def get(self, timeout: float) -> tuple | None: ...
    def fetch(self, start_ns: int, end_ns: int | None, *, minutes: bool = False) -> dict[str, pd.DataFrame]: ...
    def close(self) -> None: ...


@dataclass
class BarAssembler:
    """Per-symbol minute bars in, complete rows (one bar time, all symbols) out."""

    symbols: list[str]
    bar_ns: int
    grace_s: float
    late: int = 0
    _index: dict[str, int] = field(default_factory=dict)
    _bucket: int | None = None
    _opened_at: float = 0.0
    _row: np.ndarray | None = None  # (5, S)
    _seen: set[tuple[int, int]] = field(default_factory=set)  # (symbol, minute) in the open bucket
    _done: np.ndarray | None = None  # symbols whose last minute of the bucket arrived
    _emitted: int | None = None  # last bar time handed out

    def __post_init__(self) -> None:
        self._index = {s: j for j, s in enumerate(self.symbols)}

    def add(self, symbol: str, t_ns: int, values: tuple[float, float, float, float, float],
            now: float) -> list[tuple[int, np.ndarray]]:
        j = self._index.get(symbol)
        if j is None:
            return []
        bucket = t_ns - t_ns % self.bar_ns
        if self._emitted is not None and bucket <= self._emitted:
            self.late += 1
            return []
        out = []
        if self._bucket is not None and bucket > self._bucket:
            out.append(self._finish())
        if self._bucket is None:
            self._bucket, self._opened_at = bucket, now
            self._row = np.full((5, len(self.symbols)), np.nan)
            self._row[4] = 0.0
            self._done = np.zeros(len(self.symbols), dtype=bool)
            self._seen = set()
        if (j, t_ns) in self._seen:
            return out  # the same minute twice (stream and backfill): counted once
        self._seen.add((j, t_ns))
        o, h, low, c, v = values
        row = self._row
        if math.isnan(row[0, j]):
            row[:, j] = (o, h, low, c, v)
        else:  # a later minute of the same longer bar
            row[1, j] = max(row[1, j], h)
            row[2, j] = min(row[2, j], low)
            row[3, j] = c
            row[4, j] += v
        if t_ns + _MINUTE >= bucket + self.bar_ns:
            self._done[j] = True
        if self._done.all():
            out.append(self._finish())
        return out

    def poll(self, now: float) -> list[tuple[int, np.ndarray]]:
        if self._bucket is not None and now - self._opened_at >= self.grace_s:
            return [self._finish()]
        return []

    def _finish(self) -> tuple[int, np.ndarray]:
        done = (self._bucket, self._row)
        self._emitted = self._bucket
        self._bucket, self._row, self._done = None, None, None
        return done

    @property
    def last_emitted(self) -> int | None:
        return self._emitted


class LiveFeed:
    """History, then stream bars, as chunks for the market-data actor (see the module docstring)."""

    def __init__(
        self,
        data: DataConfig,
        replay: ReplayConfig,
        live: LiveConfig,
        source: LiveSource,
        history: MarketData,
        *,
        clock: Callable[[], float] = time.monotonic,
        now_ns: Callable[[], int] = time.time_ns,
        memory_bars: int = MEMORY_BARS,
    ) -> None:
        self.data, self.live, self.source = data, live, source
        self._clock, self._now_ns = clock, now_ns
        self.symbols = tuple(source.symbols)
        self.frequency = history.frequency
        self.calendar = history.calendar
        self.source_name = history.source
        self.rejected: list[RejectedBar] = []  # the first REJECTED_SAMPLE
        self.rejected_counts: dict[str, int] = {}
        for r in history.rejected:
            self._reject(r)
        bar_ns = int(self.frequency.value)
        if bar_ns < _MINUTE or bar_ns % _MINUTE:
            raise DataError(f"live bars are whole minutes; data.frequency {data.frequency!r} is not (use 1min, "
                            "5min, 15min, ...)")
        self.assembler = BarAssembler(list(self.symbols), bar_ns, live.bar_grace_s)
        self._rule = data.session_rule
        self._session: UsEquityCalendar | None = None
        if self.calendar is Calendar.EQUITIES:
            self._session = UsEquityCalendar(data.session.extra_holidays)
        h = history.bars
        warm = min(replay.warmup_bars, len(h))
        h = h.slice(len(h) - warm, len(h))
        n_s = len(self.symbols)
        self._rows = SpilledColumns({"timestamp": ((), np.int64), **{f: ((n_s,), np.float64) for f in FIELDS}},
                                    memory_rows=max(1, memory_bars))
        self._finite = 0  # bars with a close, over every row appended: the feed's n_bars
        self._first_ts: int | None = None  # the first and last bar times appended, kept as they come
        self._last_ts: int | None = None
        for t in range(warm):
            self._append(int(h.timestamps[t]), np.array([getattr(h, f)[t] for f in FIELDS]))
        if warm:
            self.assembler._emitted = int(h.timestamps[-1])
        size = replay.chunk(0, n_s)  # the warm-up's chunks: live bars come one at a time
        self._warm_plan = [(i, min(i + size, warm)) for i in range(0, warm, size)]
        self.n_warmup_chunks = len(self._warm_plan)
        self.warmup_bars = warm
        self._handed = 0  # rows handed out (the clock: nothing beyond it is visible)
        self.ended: str | None = None
        self.reconnects = 0
        self.backfilled = 0
        self._day_close: int | None = None
        self._started = False

    # --- the plan -------------------------------------------------------------------------------

    def _span(self, index: int) -> tuple[int, int]:
        if index < self.n_warmup_chunks:
            return self._warm_plan[index]
        row = self.warmup_bars + index - self.n_warmup_chunks
        return row, row + 1

    def wait_chunk(self, index: int, timeout: float) -> bool | None:
        """True once chunk ``index`` exists, False if not yet within ``timeout`` s, None if it never will."""
        stop = self._span(index)[1]
        deadline = self._clock() + timeout
        while len(self._rows) < stop:
            if self.ended is not None:
                return None
            left = deadline - self._clock()
            if left <= 0:
                return False
            self._pump(min(left, 0.25))
        return True

    def next_chunk(self, index: int) -> BarBatch | None:
        while (ready := self.wait_chunk(index, 1.0)) is False:
            pass
        if ready is None:
            return None
        i, j = self._span(index)
        self._handed = max(self._handed, j)
        return self._batch(i, j)

    def history(self, start: int, stop: int) -> BarBatch:
        if stop > self._handed:
            raise ValueError(f"bars up to {stop} asked for, but the clock is at {self._handed}: no look-ahead")
        return self._batch(start, stop)

    def _batch(self, i: int, j: int) -> BarBatch:
        cols = self._rows.slice(i, j)
        return BarBatch.from_arrays(cols.pop("timestamp"), self.symbols, **cols, start=i)

    # --- the stream -------------------------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        if not self._started:
            self._started = True
            self._announce()
            self.source.start()
        event = self.source.get(timeout)
        now = self._clock()
        rows: list[tuple[int, np.ndarray]] = []
        if event is not None:
            if event[0] == "bar":
                _, symbol, t_ns, *values = event
                rows += self.assembler.add(symbol, t_ns, tuple(values), now)
            elif event[0] == "connected":
                self.reconnects += event[1] > 1
                rows += self._backfill(now)
        rows += self.assembler.poll(now)
        for t, row in rows:
            self._accept(t, row)
        if self.live.stop_at_close and self._session is not None:
            self._check_close()

    def _backfill(self, now: float) -> list[tuple[int, np.ndarray]]:
        """Minute bars since the last bar time handed out, from REST, through the assembler.

        Runs on every connection: the first covers the gap between the warm-up history and the
        stream, later ones the bars missed while the stream was down.
        """
        last = self.assembler.last_emitted
        if last is None:
            return []
        try:
            frames = self.source.fetch(last + 1, None, minutes=True)
        except DataError as err:
            log.warning("could not backfill the bars missed before the stream connected: %s", err)
            return []
        minutes = []
        for s, f in frames.items():
            values = f[list(FIELDS)].to_numpy(np.float64)
            minutes += [(int(t), s, tuple(v)) for t, v in zip(f["timestamp"].to_numpy(np.int64), values, strict=True)]
        out = []
        for t, s, v in sorted(minutes):
            out += self.assembler.add(s, t, v, now)
        self.backfilled += len(minutes)
        if minutes:
            log.info("backfilled %d minute bars from REST after a stream connection", len(minutes))
        return out

    def _accept(self, t: int, row: np.ndarray) -> None:
        if self._session is not None and self._rule != "keep" and not self._session.in_session(np.array([t]))[0]:
            if self._rule == "reject":
                when = pd.Timestamp(t, tz="UTC")
                for s in np.flatnonzero(np.isfinite(row[3])):
                    self._reject(RejectedBar("alpaca stream", len(self._rows) + 1, self.symbols[s],
                                             BadBarRule.OUTSIDE_SESSION, f"{when} is outside the session"))
            return
        self._append(t, row)

    def _append(self, t: int, row: np.ndarray) -> None:
        self._rows.append(timestamp=t, **{f: row[k] for k, f in enumerate(FIELDS)})
        self._first_ts = t if self._first_ts is None else self._first_ts
        self._last_ts = t
        self._finite += int(np.isfinite(row[FIELDS.index("close")]).sum())

    def _reject(self, bar: RejectedBar) -> None:
        self.rejected_counts[bar.rule.value] = self.rejected_counts.get(bar.rule.value, 0) + 1
        if len(self.rejected) < REJECTED_SAMPLE:
            self.rejected.append(bar)

    def _announce(self) -> None:
        """Live pacing: say when an equities market that is closed now opens next."""
        if self._session is None:
            return
        now = self._now_ns()
        s = self._session.next_open(now)
        if now < s.open_ns:
            wait = (s.open_ns - now) / 3.6e12
            log.warning("the US equities market is closed; the next session opens %s (in %.1f h); bars start then",
                        s.open.strftime("%Y-%m-%d %H:%M %Z"), wait)

    def _check_close(self) -> None:
        now = self._now_ns()
        if self._day_close is None:
            s = self._session.next_open(now)
            self._day_close = s.close_ns
        if now >= self._day_close:
            self.ended = "session closed"

    # --- bookkeeping -------------------------------------------------------------------------------

    def market(self) -> MarketData:
        """Every bar so far, as replay's ``MarketData`` (for the run's record; read back from the files),
        with the rejected bars kept as a sample."""
        return MarketData(self._batch(0, len(self._rows)), self.frequency, self.calendar, self.source_name,
                          tuple(self.rejected))

    @property
    def memory_bytes(self) -> int:
        """The bars held in RAM: bounded by ``memory_bars``, whatever the history."""
        return self._rows.memory_bytes

    def info(self) -> dict[str, Any]:
        n = len(self._rows)
        return {
            "live": True,
            "symbols": self.symbols,
            "n_timestamps": n,
            "n_bars": self._finite,
            "first_timestamp": self._first_ts,
            "last_timestamp": self._last_ts,
            "frequency": self.frequency,
            "calendar": self.calendar.value,
            "source": self.source_name,
            "rejected_counts": dict(self.rejected_counts),
            "rejected_sample": [str(r) for r in self.rejected[:20]],
            "n_rejected": sum(self.rejected_counts.values()),
            "n_chunks": None,
            "n_warmup_chunks": self.n_warmup_chunks,
            "warmup_bars": self.warmup_bars,
            "reconnects": self.reconnects,
            "backfilled_bars": self.backfilled,
            "late_bars": self.assembler.late,
            "ended": self.ended,
        }

    def close(self) -> None:
        self.source.close()
        self._rows.close()


def alpaca_live_feed(data: DataConfig, replay: ReplayConfig, live: LiveConfig, *,
                     environ: Mapping[str, str] | None = None, now_ns: Callable[[], int] = time.time_ns) -> LiveFeed:
    """A ``LiveFeed`` on Alpaca: warm-up history over REST, then the bar stream."""
    if data.frequency is None:
        data = data.model_copy(update={"frequency": "1min"})
    provider = AlpacaProvider(data, environ=environ, now_ns=now_ns)
    source = AlpacaLiveSource(provider, environ=environ)  # raises, naming the variables, when the keys are missing
    symbols = list(data.symbols or [])
    now = now_ns()
    if replay.warmup_bars > 0:
        start = time_bounds(data)[0]
        if start is None:
            start = now - live.history_days * 86_400 * 1_000_000_000
        frames = source.fetch(start, None)
        empty = {s: f for s, f in frames.items() if f.empty}
        for s in empty:  # a symbol without history still trades live
            log.warning("no warm-up history for %s", s)
        if len(empty) == len(frames):
            raise DataError(f"no warm-up history for {', '.join(symbols)} since {pd.Timestamp(start, tz='UTC')}; "
                            "set live.history_days higher or replay.warmup_bars: 0")
        frames = {s: f for s, f in frames.items() if not f.empty}
        history = assemble(frames, list(frames), provider.bar, Calendar(data.calendar), "")
        history = with_session_rule(history, data)
        if set(frames) != set(symbols):  # align to every symbol
            bars = history.bars
            idx = {s: j for j, s in enumerate(bars.symbols)}
            arrays = {f: np.full((len(bars), len(symbols)), np.nan if f != "volume" else 0.0) for f in FIELDS}
            for j, s in enumerate(symbols):
                if s in idx:
                    for f in FIELDS:
                        arrays[f][:, j] = getattr(bars, f)[:, idx[s]]
            history = MarketData(BarBatch.from_arrays(bars.timestamps, symbols, **arrays), history.frequency,
                                 history.calendar, "", history.rejected)
    else:
        empty_bars = BarBatch.from_arrays(np.empty(0, np.int64), symbols,
                                          **{f: np.empty((0, len(symbols))) for f in FIELDS})
        history = MarketData(empty_bars, provider.bar, Calendar(data.calendar), "")
    where = provider.cfg
    name = f"alpaca live {where.asset_class} {where.feed_name} stream"
    history = MarketData(history.bars, history.frequency, history.calendar, name, history.rejected)
    return LiveFeed(data, replay, live, source, history, now_ns=now_ns)
