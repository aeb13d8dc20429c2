"""A model's fills, orders and round trips as the ledger booked them: columns, read as NamedTuples.

The ledger's results leave its actor as the kernel's record arrays (``ledger/kernel.py``'s ``FILL``,
``ORDER`` and ``TRIP`` rows), not as hundreds of thousands of Python objects: pickling those, and
making them again on the driver, cost more than the whole replay of a long run. ``Records`` is the
read-only sequence a ``ModelResults`` holds for each: ``len`` and ``fields`` (one column per
field, as the results folder and the leaderboard read them) never make a record; indexing or
iterating makes the domain's NamedTuples (``Fill``, ``OrderRecord``, ``RoundTrip``), each once,
exactly as the ledger would have. The orders and fills of one model share a ``Causes``, so that
they share one ``DecisionId`` per decision, as they did when the ledger made them while booking.

``fields`` also reads a plain list of NamedTuples (the reference ledger of the tests makes those).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any, Generic, TypeVar

import numpy as np

from titan_ray.domain.decisions import DecisionId
from titan_ray.domain.orders import Cause, Fill, OrderRecord, OrderStatus, RejectReason, RoundTrip, Side
from titan_ray.ledger import kernel
from titan_ray.risk.engine import FORCED_BY

T = TypeVar("T", Fill, OrderRecord, RoundTrip)

STATUS = {int(kernel.FILLED): OrderStatus.FILLED, int(kernel.PARTIALLY_FILLED): OrderStatus.PARTIALLY_FILLED,
          int(kernel.REJECTED): OrderStatus.REJECTED, int(kernel.REPLACED): OrderStatus.REPLACED}
REASON: dict[int, RejectReason | None] = {
    int(kernel.NO_REASON): None, **{int(getattr(kernel, r.name)): r for r in RejectReason},
}
SIDE = {int(kernel.BUY): Side.BUY, int(kernel.SELL): Side.SELL}
# a NamedTuple field → the record column that holds it, where the names differ
_COLUMN = {"value_micro": "value", "commission_micro": "commission", "pnl_micro": "pnl"}


class Causes:
    """What caused a model's records: one ``DecisionId`` per decision, one ``ForcedId`` per risk
    rule's flattening of a symbol at a bar, each made once and shared by the orders and fills."""

    def __init__(self, model: str, symbols: tuple[str, ...]) -> None:
        self.model, self.symbols = model, symbols
        self.memo: dict[tuple[int, int, int], DecisionId] = {}

    def ids(self, codes: list[int], bars: list[int], symbols: list[int]) -> list[Cause]:
        memo, m, sym = self.memo, self.model, self.symbols
        out: list[Cause] = []
        for code, bar, s in zip(codes, bars, symbols, strict=True):
            did = memo.get((code, bar, s))
            if did is None:
                did = memo[code, bar, s] = (DecisionId(m, sym[s], bar) if code == kernel.CAUSE_DECISION
                                            else FORCED_BY[code].decision_id(m, sym[s], bar))
            out.append(did)
        return out

    def texts(self, codes: np.ndarray, bars: np.ndarray, symbols: np.ndarray) -> list[str]:
        """The ids' texts, without making the ids: ``MODEL:SYMBOL:BAR``, ``risk:RULE:MODEL:SYMBOL:BAR``."""
        prefix = {int(c): f"{FORCED_BY[int(c)].value}:" for c in np.unique(codes) if c != kernel.CAUSE_DECISION}
        prefix[int(kernel.CAUSE_DECISION)] = ""
        names = np.asarray(self.symbols, dtype=object)[symbols].tolist() if len(symbols) else []
        m = self.model
        return [f"{prefix[c]}{m}:{s}:{b}" for c, s, b in zip(codes.tolist(), names, bars.tolist(), strict=True)]

    def __getstate__(self) -> tuple[str, tuple[str, ...]]:
        return self.model, self.symbols  # the ids are made again where they are read

    def __setstate__(self, state: tuple[str, tuple[str, ...]]) -> None:
        self.__init__(*state)


class Records(Sequence[T], Generic[T]):
    """One kind of a model's records (``fill``, ``order`` or ``round_trip``) as the kernel's rows.

    ``details`` are the orders' detail texts, one per row (the ledger writes them: they need its
    risk config).
    """

    def __init__(self, kind: str, causes: Causes, rows: np.ndarray, details: list[str] | None = None) -> None:
        if kind not in _MAKE:
            raise ValueError(f"unknown record kind {kind!r}; one of {sorted(_MAKE)}")
        self.kind, self.causes, self.rows, self.details = kind, causes, rows, details
        self._items: list[T] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):  # type: ignore[override]
        return self._list()[i]

    def __iter__(self) -> Iterator[T]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Records({self.kind!r}, {len(self)} rows of {self.causes.model!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return Records, (self.kind, self.causes, self.rows, self.details)  # the rows, never the NamedTuples

    def _list(self) -> list[T]:
        if self._items is None:
            # The cyclic garbage collector paused while the records become NamedTuples: hundreds of
            # thousands of new tuples would otherwise trigger collections that scan them all, again
            # and again; they hold no cycles, so nothing is left to collect.
            enabled = gc.isenabled()
            gc.disable()
            try:
                self._items = _MAKE[self.kind](self)
            finally:
                if enabled:
                    gc.enable()
        return self._items

    def fields(self, *names: str) -> dict[str, Any]:
        """One column per NamedTuple field in ``names``, with the values its records would hold:
        arrays for numbers, lists or object arrays for the rest; no record is made."""
        return {name: self._column(name) for name in names}

    def _column(self, name: str) -> Any:
        r, c = self.rows, self.causes
        if name == "model":
            return [c.model] * len(r)
        if name == "decision_id":
            return c.texts(r["cause"], r["cause_bar"], r["symbol"])
        if name == "symbol":
            return np.asarray(c.symbols, dtype=object)[r["symbol"]]
        if name == "side":
            return _lookup(SIDE, r["side"])
        if name == "status":
            return _lookup(STATUS, r["status"])
        if name == "reason":
            return _lookup(REASON, r["reason"])
        if name == "detail":
            return list(self.details or [""] * len(r))
        return r[_COLUMN.get(name, name)]


def fields(records: Sequence[tuple], names: tuple[str, ...], *wanted: str) -> dict[str, Any]:
    """Records transposed: one column per field (``wanted`` of the NamedTuple's ``names``, or all)."""
    if isinstance(records, Records):
        return records.fields(*(wanted or names))
    return {name: list(map(itemgetter(names.index(name)), records)) for name in wanted or names}


def _lookup(table: dict[int, Any], codes: np.ndarray) -> np.ndarray:
    """The domain value of each code, as an object array."""
    keys = np.unique(codes)
    values = np.empty(len(keys), dtype=object)
    values[:] = [table[int(k)] for k in keys]
    return values[np.searchsorted(keys, codes)] if len(codes) else np.empty(0, dtype=object)


def _fills(records: Records[Fill]) -> list[Fill]:
    r, causes = records.rows, records.causes
    c = {name: r[name].tolist() for name in kernel.FILL.names}
    return list(map(Fill._make, zip(
        [causes.model] * len(r), c["order_id"], causes.ids(c["cause"], c["cause_bar"], c["symbol"]),
        map(causes.symbols.__getitem__, c["symbol"]), c["timestamp"], c["bar"], map(SIDE.__getitem__, c["side"]),
        c["quantity"], c["price"], c["reference_price"], c["value"], c["commission"], strict=True)))


def _orders(records: Records[OrderRecord]) -> list[OrderRecord]:
    r, causes = records.rows, records.causes
    c = {name: r[name].tolist() for name in kernel.ORDER.names}
    details = records.details if records.details is not None else [""] * len(r)
    return list(map(OrderRecord._make, zip(
        [causes.model] * len(r), c["order_id"], causes.ids(c["cause"], c["cause_bar"], c["symbol"]),
        map(causes.symbols.__getitem__, c["symbol"]), c["timestamp"], c["bar"], map(SIDE.__getitem__, c["side"]),
        c["quantity"], c["filled"], map(STATUS.__getitem__, c["status"]), map(REASON.__getitem__, c["reason"]),
        details, strict=True)))


def _round_trips(records: Records[RoundTrip]) -> list[RoundTrip]:
    r, causes = records.rows, records.causes
    c = [r[name].tolist() for name in kernel.TRIP.names]
    c[0] = list(map(causes.symbols.__getitem__, c[0]))
    return list(map(RoundTrip._make, zip([causes.model] * len(r), *c, strict=True)))


_MAKE = {"fill": _fills, "order": _orders, "round_trip": _round_trips}
