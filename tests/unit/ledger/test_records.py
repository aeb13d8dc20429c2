"""Results leave the ledger as the kernel's rows (``Records``): pickled as arrays, read as NamedTuples.

Every column ``fields`` reads without making a record must equal the same field of the NamedTuples
that indexing makes, for fills, orders (ended, rejected with a detail, still working) and round
trips, forced flattenings included; a pickled ``Records`` carries no NamedTuple.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
from helpers import batch, decisions, ledger

from titan_ray.domain.decisions import DecisionId, ForcedId
from titan_ray.domain.orders import Fill, OrderRecord, OrderStatus, RoundTrip
from titan_ray.ledger.engine import _threads
from titan_ray.ledger.portfolio import KINDS
from titan_ray.ledger.records import Records, fields


def _results():
    # two symbols; a participation cap leaves an order working at the end; a circuit breaker forces a
    # flattening; an invalid weight is rejected with a detail text
    # (model m), and model p's last order is still working
    led = ledger(models=("m", "p"), n_symbols=2, long_only=False, risk={"max_drawdown_pct": 0.1},
                 ledger={"commission_bps": 5, "max_participation": 0.5})
    opens = np.array([[100, 50], [101, 51], [103, 49], [60, 48], [61, 47], [62, 46], [63, 47]], dtype=float)
    volume = np.array([[1e6, 1e6]] * 6 + [[10, 1e6]])
    led.apply(0, batch(opens, volume=volume), [
        decisions("m", [[0.5, -0.3], [0.5, -0.3], [0.2, np.nan], [0.2, 0.1], [0.9, 0.1], [0.1, 0.1], [0.1, 0.1]]),
        decisions("p", [[0, 0.1], [0, 0.1], [0, 0.2], [0, 0.2], [0, 0], [0.5, 0], [0.5, 0]]),
    ])
    return led.results()


def test_columns_equal_the_records_fields_without_making_them():
    both = _results()
    for (records, kind), res in ((k, r) for r in both.values() for k in (
            (r.fills, Fill), (r.orders, OrderRecord), (r.round_trips, RoundTrip))):
        assert isinstance(records, Records) and len(records) > 0
        columns = records.fields(*kind._fields)
        assert records._items is None  # reading columns made no record
        rows = list(records)
        for name in kind._fields:
            assert [getattr(r, name) for r in rows] == list(columns[name]), name
        assert fields(rows, kind._fields) == {k: [getattr(r, k) for r in rows] for k in kind._fields}
    m, p = both["m"], both["p"]
    assert any(o.status is OrderStatus.REJECTED and o.detail.startswith("INVALID_WEIGHT") for o in m.orders)
    assert any(isinstance(f.decision_id, ForcedId) for f in m.fills)
    assert p.orders[-1].status is OrderStatus.PARTIALLY_FILLED and p.orders[-1].detail.startswith("PARTIALLY")
    for r in (m, p):
        assert [o.order_id for o in r.orders] == sorted(o.order_id for o in r.orders)


def test_orders_and_fills_of_a_decision_share_one_id_and_pickles_carry_rows_only():
    res = _results()["m"]
    ids = {id(o.decision_id): o.decision_id for o in res.orders}
    for f in res.fills:
        assert isinstance(f.decision_id, DecisionId) and id(f.decision_id) in ids
    fresh = _results()["m"]
    copy = pickle.loads(pickle.dumps(fresh, protocol=5))
    assert copy.fills._items is None and copy.orders._items is None
    assert copy.fills == res.fills and copy.orders == res.orders and copy.round_trips == res.round_trips
    assert copy.orders != res.orders[:-1]


def test_a_book_holds_what_it_booked_not_every_chunks_worst_case():
    """Chunks are booked into a scratch the size of a chunk's worst case (five orders per bar and
    symbol), one per booking thread; each book keeps only the records written, so 20 models booking
    long chunks with few trades hold a few hundred records each, and the results are the same as
    booking in short chunks (long ones are booked on several threads at once, short ones on one)."""
    n_t, n_s, models = 2_000, 5, [f"m{i}" for i in range(20)]
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_t, n_s)), axis=0))
    every = {m: 40 + 7 * i for i, m in enumerate(models)}  # a new target every so many bars
    weights = {m: np.repeat(rng.uniform(0, 0.2, (n_t // every[m] + 1, n_s)), every[m], axis=0)[:n_t] for m in models}

    def run(size: int):
        led = ledger(models=models, symbols=[f"S{i}" for i in range(n_s)])
        for seq, lo in enumerate(range(0, n_t, size)):
            bars = batch(close[lo : lo + size], start=lo)
            led.apply(seq, bars, [decisions(m, weights[m][lo : lo + size], start=lo) for m in models])
        return led

    long, short = run(1_000), run(37)
    for m in models:
        book = long.books[m]
        n_orders = int(book.account[0]["n_orders"])
        assert 0 < n_orders < 2 * n_t * n_s // every[m] + 2 * n_s  # about two orders a symbol a target
        booked = sum(book.rows(kind).nbytes for kind in KINDS)
        assert booked <= book.memory_bytes <= 2 * booked  # held: what was booked, grown by doubling
        np.testing.assert_array_equal(book.fills(), short.books[m].fills())
        np.testing.assert_array_equal(book.orders(), short.books[m].orders())
        np.testing.assert_array_equal(book.curve(), short.books[m].curve())
    assert _threads(len(models), 1_000 * n_s) == min(4, len(os.sched_getaffinity(0)))
    assert _threads(len(models), 37 * n_s) == 1
