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
the domain's NamedTuples only when read. The kernel writes without growing anything: a chunk is
booked into a ``Scratch`` that holds the most records any chunk of its size can write, one per
thread (a thread books one model at a time), and ``Book.booking`` appends what was written
to the model's own arrays, which hold what was booked and grow by doubling. So a book's memory
follows the records it has, not the worst case of every chunk (five orders per bar and symbol):
before, each model reserved that worst case, tens of MB per model at 5,000-bar chunks, and
allocating it was a third of the booking's time at 32 models. ``reserve`` makes room in the book
itself for the small writes outside a chunk (a kill switch, a staged target).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from titan_ray.domain.decisions import ExplanationBatch
from titan_ray.domain.orders import Fill
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

_RECORDS = ("fill_records", "order_records", "trip_records", "curve_records", "forced_records")
_COUNTS = ("n_fills", "n_orders", "n_trips", "n_curve", "n_forced")


def _put(into: np.ndarray, at: int, rows: np.ndarray) -> None:
    """``into[at : at + len(rows)] = rows`` for records of one dtype, as bytes: numpy copies a record
    array field by field, ten to twenty times slower than the memory copy this is."""
    size = rows.dtype.itemsize
    into.view(np.uint8)[at * size : (at + len(rows)) * size] = rows.view(np.uint8)


class Scratch:
    """Record arrays for one chunk's booking: room for the most records a chunk can write
    (``records_bound``), grown when a longer chunk or more symbols come. One per thread
    (``Scratch.here()``), shared by every book that thread books."""

    _local = threading.local()

    def __init__(self) -> None:
        self.records = tuple(np.empty(0, dtype) for dtype in (FILL, ORDER, TRIP, CURVE, FORCED))

    @classmethod
    def here(cls) -> Scratch:
        """This thread's scratch."""
        scratch = getattr(cls._local, "scratch", None)
        if scratch is None:
            scratch = cls._local.scratch = cls()
        return scratch

    def arrays(self, n_bars: int, n_symbols: int) -> tuple[np.ndarray, ...]:
        bounds = records_bound(n_bars, n_symbols)
        if any(bound > len(r) for r, bound in zip(self.records, bounds, strict=True)):
            self.records = tuple(r if bound <= len(r) else np.empty(bound, r.dtype)
                                 for r, bound in zip(self.records, bounds, strict=True))
        return self.records


class Book:
    """Everything the ledger knows about one model."""

    def __init__(self, model: str, n_symbols: int, long_only: bool, initial_cash_micro: int) -> None:
        self.model = model
        self.long_only = long_only
        self.seq = -1  # last chunk sequence number applied
        self.account = np.zeros(1, ACCOUNT)
        initial = initial_cash_micro / 1e6
        for name, value in (("cash", initial_cash_micro), ("initial_cash", initial_cash_micro),
                            ("last_equity", initial), ("peak", initial), ("day", -1), ("day_start_equity", initial),
                            ("last_bar", -1)):
            self.account[name] = value
        self.state = np.zeros(n_symbols, SYMBOL_STATE)
        self.fill_records = np.empty(0, FILL)
        self.order_records = np.empty(0, ORDER)
        self.trip_records = np.empty(0, TRIP)
        self.curve_records = np.empty(0, CURVE)
        self.forced_records = np.empty(0, FORCED)
        self.explanations: list[ExplanationBatch] = []  # per chunk, as the model sent them
        self.skipped: list[int] = []  # chunk sequence numbers without decisions
        # The fills as the domain's NamedTuples, each made once when first read (by ``Ledger``: the
        # live sink and the training env read the new ones after every chunk)
        self.fill_list: list[Fill] = []

    def reserve(self, n_bars: int) -> None:
        """Make room in the book for the most records ``n_bars`` bars (0: a kill switch) can write."""
        a = self.account[0]
        for attr, name, bound in zip(_RECORDS, _COUNTS, records_bound(n_bars, len(self.state)), strict=True):
            self._grow(attr, int(a[name]), int(a[name]) + bound)

    @contextmanager
    def booking(self, scratch: Scratch, n_bars: int) -> Iterator[tuple[np.ndarray, ...]]:
        """The record arrays to hand the kernel for a chunk of ``n_bars``: ``scratch``'s, with this
        book's counts at 0 while it writes; then what it wrote is appended here and the counts move on."""
        a = self.account[0]
        counts = [int(a[name]) for name in _COUNTS]
        for name in _COUNTS:
            a[name] = 0
        try:
            yield scratch.arrays(n_bars, len(self.state))
        finally:  # even after an error: the book keeps what was written, as it did writing in place
            for attr, name, base, written in zip(_RECORDS, _COUNTS, counts, scratch.records, strict=True):
                n = int(a[name])
                self._grow(attr, base, base + n)
                _put(getattr(self, attr), base, written[:n])
                a[name] = base + n

    def _grow(self, attr: str, count: int, need: int) -> None:
        """Room for ``need`` records in ``attr``, of which the first ``count`` are kept (doubling)."""
        records = getattr(self, attr)
        if need > len(records):
            grown = np.empty(max(2 * len(records), need), records.dtype)
            _put(grown, 0, records[:count])
            setattr(self, attr, grown)

    def fills(self) -> np.ndarray:
        return self.fill_records[: self.n_fills]

    def orders(self) -> np.ndarray:
        """The orders that have ended (filled, rejected, replaced), in the order they ended."""
        return self.order_records[: int(self.account[0]["n_orders"])]

    def round_trips(self) -> np.ndarray:
        return self.trip_records[: self.n_round_trips]

    def curve(self) -> np.ndarray:
        """Timestamp, equity, cash and gross exposure at every close booked."""
        return self.curve_records[: int(self.account[0]["n_curve"])]

    def forced(self) -> np.ndarray:
        """The risk rules' forced flattenings, one per position, in the order the rules fired."""
        return self.forced_records[: int(self.account[0]["n_forced"])]

    def working(self) -> np.ndarray:
        """Symbol indices with an order still working."""
        return np.flatnonzero(self.state["wk_id"])

    @property
    def n_fills(self) -> int:
        return int(self.account[0]["n_fills"])

    @property
    def n_round_trips(self) -> int:
        return int(self.account[0]["n_trips"])

    @property
    def n_rejected(self) -> int:
        return int(np.count_nonzero(self.orders()["status"] == REJECTED))

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
