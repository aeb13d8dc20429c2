"""A ledger's memory is flat in the length of the run: records spill to files and come back whole.

A live arena books one bar at a time for as long as the market is open. Each book keeps the newest
``memory_rows`` to twice that records of a kind (and explanation batches) in RAM and spills the
older to files; nothing in the booking reads an older record, so every result is the same as a
ledger that keeps everything, and the results read the files back.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
from helpers import batch, ledger

from titan_ray.domain.decisions import Decisions, ExplanationBatch
from titan_ray.ledger.kernel import REJECTED
from titan_ray.ledger.portfolio import KINDS
from titan_ray.metrics.performance import RunningReturns, max_drawdown, returns_from_equity, sharpe

N_S = 3


def _explained(model: str, weights: np.ndarray, start: int) -> Decisions:
    """Decisions with one explanation row per weight that changed within the chunk."""
    changed = np.argwhere(np.diff(weights, axis=0, prepend=weights[:1] * 0) != 0)
    n = len(changed)
    bars, syms = start + changed[:, 0], changed[:, 1]
    batch_ = ExplanationBatch(
        model=model, kind="test", method="rule", bar=bars.astype(np.int64), symbol=syms.astype(np.int64),
        timestamp=bars.astype(np.int64) * 7, old_weight=np.zeros(n), new_weight=weights[changed[:, 0], syms],
        price=np.full(n, 100.0), base_value=np.zeros(n), feature_names=("x",), values=bars[:, None] * 1.0,
        attributions=np.ones((n, 1)), sentences=tuple(f"row {b}" for b in bars.tolist()))
    return Decisions(model=model, start=start, weights=weights, explanations=batch_)


def _market(n_t: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_t, N_S)), axis=0))
    weights = {m: np.repeat(rng.uniform(-0.6, 0.6, (n_t // k + 1, N_S)), k, axis=0)[:n_t]
               for m, k in (("fast", 3), ("slow", 11))}
    return close, weights


def _run(n_t: int, chunk: int, memory_rows: int | None, *, check=None, event_at: int | None = None, **kw):
    close, weights = _market(n_t)
    led = ledger(models=list(weights), n_symbols=N_S, long_only=False, memory_rows=memory_rows,
                 risk={"daily_loss_limit_pct": 0.03, "max_position_pct": 0.5}, **kw)
    for seq, lo in enumerate(range(0, n_t, chunk)):
        hi = min(lo + chunk, n_t)
        led.apply(seq, batch(close[lo:hi], start=lo), [_explained(m, w[lo:hi], lo) for m, w in weights.items()])
        if lo <= (n_t // 2 if event_at is None else event_at) < hi:  # a kill switch and a target staged outside a chunk: their records spill too
            led.kill_switch("slow", True)
            led.stage("fast", np.full(N_S, 0.1), hi - 1, int(batch(close[hi - 1 : hi], start=hi - 1).timestamps[0]))
        if check is not None:
            check(led)
    return led


def test_a_spilling_ledger_books_and_reports_what_one_that_keeps_everything_does(tmp_path):
    block = 32
    held = []

    def check(led):
        for book in led.books.values():
            # each kind's table at most twice the block; explanation batches at most a block of rows
            held.append(book.rows_in_memory)
            assert book.rows_in_memory <= len(KINDS) * 2 * block + block + 1

    bounded = _run(1_500, 7, block, check=check, spill=tmp_path / "spill")
    kept = _run(1_500, 7, None)
    assert max(held) < 1_500  # far below what the run booked (1,500 curve rows alone per model)
    new, old = bounded.results(), kept.results()
    for m in old:
        a, b = new[m], old[m]
        assert len(b.fills) > 4 * block and len(b.orders) > 4 * block  # blocks of them went to files
        for kind in KINDS:  # bit for bit (a forced flattening's unused numbers are NaN)
            assert bounded.books[m].rows(kind).tobytes() == kept.books[m].rows(kind).tobytes(), kind
        for field in ("timestamps", "equity", "cash", "gross_exposure"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.orders == b.orders and a.fills == b.fills and a.round_trips == b.round_trips
        assert a.orders.details == b.orders.details
        assert [e.decision_id for e in a.explanation_records()] == [e.decision_id for e in b.explanation_records()]
        assert len(a.explanation_records()) > 4 * block
        assert (a.positions, a.cash_micro, a.halted) == (b.positions, b.cash_micro, b.halted)
        # the live sink's "fills since n": the same across what went to the files and what is in RAM
        for start in (0, 5, len(b.fills) // 2, len(b.fills) - 1):
            assert bounded.fills(m, start) == kept.fills(m, start)
        rejected = int(np.count_nonzero(kept.books[m].orders()["status"] == REJECTED))
        assert bounded.books[m].n_rejected == kept.books[m].n_rejected == rejected > 0
    assert any(f.stat().st_size for f in (tmp_path / "spill").rglob("*") if f.is_file())
    bounded.close()
    assert not any(f.is_file() for f in (tmp_path / "spill").rglob("*"))


def test_a_ledger_booking_bar_by_bar_holds_flat_memory():
    """4,000 one-bar chunks (a live run): after the first 500, the rest add no memory that grows
    with them; a ledger that keeps everything grows by its records."""

    def growth(memory_rows):
        sizes = []
        n_t = 4_000

        def check(led):
            if len(sizes) in (500, n_t - 1):
                sizes.append(tracemalloc.get_traced_memory()[0])
            else:
                sizes.append(None)

        tracemalloc.start()
        try:
            led = _run(n_t, 1, memory_rows, check=check, event_at=100)  # its code loaded before bar 500
        finally:
            tracemalloc.stop()
        led.close()
        first, last = sizes[500], sizes[-1]
        return last - first

    bounded, kept = growth(64), growth(None)
    assert bounded < 150_000, f"{bounded:,} bytes grew over 3,500 bars"
    assert kept > 4 * bounded + 500_000, (kept, bounded)  # the check sees growth where it is


def test_running_sharpe_and_drawdown_are_those_of_the_whole_curve():
    rng = np.random.default_rng(11)
    equity = 1e6 * np.exp(np.cumsum(rng.normal(0.0002, 0.01, 3_000)))
    equity[1_000:1_010] = 0.0  # a bankruptcy: 0/0 returns are missing bars, as in ``sharpe``
    equity[1_010:] *= 0.0
    for curve in (equity[:1_000], equity[:1_000] * 1.0, np.full(50, 1e6), equity[:3], equity):
        cuts = np.sort(rng.choice(np.arange(1, len(curve)), size=min(20, len(curve) - 1), replace=False))
        running = RunningReturns(1e6)
        for part in np.split(curve, cuts):
            running.add(part)
        r = returns_from_equity(curve, 1e6)
        np.testing.assert_allclose(running.sharpe(252), sharpe(r, 252), rtol=1e-9)
        np.testing.assert_allclose(running.max_drawdown(), max_drawdown(r), rtol=1e-9, atol=1e-15)
        assert running.n == len(curve) and running.last == curve[-1]
    assert np.isnan(RunningReturns(1e6).sharpe(252)) and np.isnan(RunningReturns(1e6).max_drawdown())
