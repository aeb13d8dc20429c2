"""One model's book: the state the compiled core books into, and what it has booked, as records.

A ``Book`` holds a model's virtual portfolio as numpy structured arrays (their dtypes are in
``ledger/kernel.py``): the account (cash in exact integer micro-units, the order-id counter, the
risk limits' state, the counts of records) and one row per symbol (position, average cost,
realized P&L, the last target, the target staged for the next fill bar, the working order, the
open round trip). ``kernel.book_chunk`` changes them and appends to five growable record arrays:
fills, orders, round trips, the equity curve (equity, cash, gross exposure at every close), and the
risk rules' forced flattenings (one per position flattened: the rule, when, the value that crossed
its threshold, the position's weight then).

Cash moves only by fills (each fill's exact value and commission), equity is
``cash + sum(position * mark)``, and a round trip's P&L is the exact sum of its fills' cash
flows, so the round trips of a run add up to its realized cash P&L to the micro-unit.

The records stay columns; results carry them as ``Records`` (``ledger/records.py``), which make
the domain's NamedTuples only when read. The kernel writes without growing anything: a chunk (or
a kill switch, or a staged target) is booked into a ``Scratch`` that holds the most records any
chunk of its size can write, one per thread (a thread books one model at a time), and
``Book.booking`` appends what was written to the model's own tables. So a book's memory follows the
records it has, not the worst case of every chunk (five orders per bar and symbol).

In the arena a book's memory is also bounded in time: each kind of record is a ``SpilledColumns``
table (``data/spill.py``) and the explanation batches a ``SpilledList``, which keep the newest
``memory_rows`` to twice that in RAM and the older in files of the book's folder; results read
them back whole. Nothing in the booking reads an older record, so spilling changes no number. A
book made without ``memory_rows`` keeps everything in RAM (a test, the training env).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from titan_ray.data.spill import SpilledColumns, SpilledList
from titan_ray.ledger.kernel import (
    ACCOUNT,
    CURVE,
    FILL,
    FORCED,
    ORDER,
    REJECTED,
    SYMBOL_STATE,
    TRIP,
    records_bound,
)

# the kinds of record, in the kernel's order, each with the account's count of it
KINDS = ("fill", "order", "round_trip", "curve", "forced")
_COUNTS = ("n_fills", "n_orders", "n_trips", "n_curve", "n_forced")
_DTYPES = (FILL, ORDER, TRIP, CURVE, FORCED)


class Scratch:
    """Record arrays for one chunk's booking: room for the most records a chunk can write
    (``records_bound``), grown when a longer chunk or more symbols come. One per thread
    (``Scratch.here()``), shared by every book that thread books."""

    _local = threading.local()

    def __init__(self) -> None:
        self.records = tuple(np.empty(0, dtype) for dtype in _DTYPES)

    @classmethod
    def here(cls) -> Scratch:
        """This thread's scratch."""
        scratch = getattr(cls._local, "scratch", None)
        if scratch is None:
            scratch = cls._local.scratch = cls()
        return scratch

    def arrays(self, n_bars: int, n_symbols: int, stops: bool = False) -> tuple[np.ndarray, ...]:
        bounds = records_bound(n_bars, n_symbols, stops)
        if any(bound > len(r) for r, bound in zip(self.records, bounds, strict=True)):
            self.records = tuple(r if bound <= len(r) else np.empty(bound, r.dtype)
                                 for r, bound in zip(self.records, bounds, strict=True))
        return self.records


class Book:
    """Everything the ledger knows about one model."""

    def __init__(self, model: str, n_symbols: int, long_only: bool, initial_cash_micro: int, *,
                 memory_rows: int | None = None, folder: Path | None = None, var_window: int = 1,
                 stops: bool = False) -> None:
        self.model = model
        self.long_only = long_only
        self.seq = -1  # last chunk sequence number applied
        self.account = np.zeros(1, ACCOUNT)  # its counts of records are the totals, spilled or not
        initial = initial_cash_micro / 1e6
        for name, value in (("cash", initial_cash_micro), ("initial_cash", initial_cash_micro),
                            ("last_equity", initial), ("peak", initial), ("day", -1), ("day_start_equity", initial),
                            ("last_bar", -1)):
            self.account[name] = value
        self.state = np.zeros(n_symbols, SYMBOL_STATE)
        self.returns = np.zeros(2 * var_window)  # the model's last returns, for the VaR limit: a ring, then sorted
        self.stops = stops  # protective exits write more records per bar
        self._own_folder = memory_rows is not None and folder is None
        if self._own_folder:
            folder = Path(tempfile.mkdtemp(prefix="titan-ray-book-"))
        elif folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self._tables = {kind: SpilledColumns({kind: ((), dtype)}, memory_rows=memory_rows, folder=folder)
                        for kind, dtype in zip(KINDS, _DTYPES, strict=True)}
        self.explanations = SpilledList(  # per chunk, as the model sent them
            memory_rows=memory_rows, file=None if folder is None else folder / "explanations.pickle")
        self._folder = folder
        self.skipped: list[int] = []  # chunk sequence numbers without decisions
        self._rejected = 0  # orders that ended rejected, counted as they are booked

    @contextmanager
    def booking(self, scratch: Scratch, n_bars: int) -> Iterator[tuple[np.ndarray, ...]]:
        """The record arrays to hand the kernel for a chunk of ``n_bars`` (0: a kill switch; 1 for a
        staged target): ``scratch``'s, with this book's counts at 0 while it writes; then what it
        wrote is appended to the book's tables and the counts move on."""
        a = self.account[0]
        counts = [int(a[name]) for name in _COUNTS]
        for name in _COUNTS:
            a[name] = 0
        try:
            yield scratch.arrays(n_bars, len(self.state), self.stops)
        finally:  # even after an error: the book keeps what was written, as it did writing in place
            for kind, name, base, written in zip(KINDS, _COUNTS, counts, scratch.records, strict=True):
                n = int(a[name])
                if n:
                    self._tables[kind].extend(**{kind: written[:n]})
                    if kind == "order":
                        self._rejected += int(np.count_nonzero(written["status"][:n] == REJECTED))
                a[name] = base + n

    def rows(self, kind: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Records ``start..stop-1`` of ``kind`` (one of ``KINDS``), from the files and RAM alike."""
        table = self._tables[kind]
        return table.slice(start, len(table) if stop is None else stop)[kind]

    def fills(self) -> np.ndarray:
        return self.rows("fill")

    def orders(self) -> np.ndarray:
        """The orders that have ended (filled, rejected, replaced), in the order they ended."""
        return self.rows("order")

    def round_trips(self) -> np.ndarray:
        return self.rows("round_trip")

    def curve(self) -> np.ndarray:
        """Timestamp, equity, cash and gross exposure at every close booked."""
        return self.rows("curve")

    def forced(self) -> np.ndarray:
        """The risk rules' forced flattenings, one per position, in the order the rules fired."""
        return self.rows("forced")

    def working(self) -> np.ndarray:
        """Symbol indices with an order still working."""
        return np.flatnonzero(self.state["wk_id"])

    @property
    def rows_in_memory(self) -> int:
        """Records and explanation batches held in RAM now (bounded when the book spills)."""
        return sum(t.rows_in_memory for t in self._tables.values()) + self.explanations.memory_items

    @property
    def memory_bytes(self) -> int:
        """What the record tables hold in RAM (their arrays), whatever the run's length when they spill."""
        return sum(t.memory_bytes for t in self._tables.values())

    def close(self) -> None:
        """Delete the spilled files (read the results first)."""
        for table in self._tables.values():
            table.close()
        self.explanations.close()
        if self._own_folder:
            shutil.rmtree(self._folder, ignore_errors=True)

    @property
    def n_fills(self) -> int:
        return int(self.account[0]["n_fills"])

    @property
    def n_round_trips(self) -> int:
        return int(self.account[0]["n_trips"])

    @property
    def n_curve(self) -> int:
        return int(self.account[0]["n_curve"])

    @property
    def n_records(self) -> int:
        """Records of every kind booked so far, spilled or in RAM."""
        return sum(len(t) for t in self._tables.values())

    @property
    def n_rejected(self) -> int:
        return self._rejected

    @property
    def cash_micro(self) -> int:
        return int(self.account[0]["cash"])

    @property
    def initial_cash_micro(self) -> int:
        return int(self.account[0]["initial_cash"])

    @property
    def last_equity(self) -> float:
        """Equity at the last close booked (the initial cash before any)."""
        return float(self.account[0]["last_equity"])

    @property
    def target(self) -> np.ndarray:
        """The last accepted target weights."""
        return np.ascontiguousarray(self.state["target"])
