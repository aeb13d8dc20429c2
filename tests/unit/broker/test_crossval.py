"""The order mirror sizes orders as the ledger does, and the divergence report matches orders by decision."""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.broker.crossval import OrderMirror, PaperOrder, divergence, fills_frame, summary
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions
from titan_ray.domain.orders import Fill, Side


def _bars(close: list[list[float]], start: int = 0) -> BarBatch:
    c = np.array(close, dtype=float)
    ts = np.arange(len(c), dtype=np.int64) * 60 * 10**9
    return BarBatch.from_arrays(ts, ["A", "B"], open=c, high=c, low=c, close=c, volume=np.ones_like(c), start=start)


def _decisions(w: list[list[float]], start: int = 0) -> Decisions:
    return Decisions(model="m", start=start, weights=np.array(w, dtype=float))


def test_weight_changes_become_orders_sized_at_the_decision_close():
    mirror = OrderMirror("m", ("A", "B"), fractional=False)
    orders = mirror.orders(_bars([[10.0, 20.0], [11.0, 19.0]]), _decisions([[0.5, 0.0], [0.5, 0.25]]), 1000.0)
    assert [(o.decision_id, o.side, o.quantity, o.decision_close) for o in orders] == [
        ("m:A:0", "buy", 50.0, 10.0), ("m:B:1", "buy", 13.0, 19.0)]
    # an unchanged weight makes no order; a cut to zero sells what was asked for
    later = mirror.orders(_bars([[12.0, 18.0]], start=2), _decisions([[0.0, 0.25]], start=2), 1200.0)
    assert [(o.decision_id, o.side, o.quantity) for o in later] == [("m:A:2", "sell", 50.0)]
    frac = OrderMirror("m", ("A", "B"), fractional=True)
    [o] = frac.orders(_bars([[3.0, 1.0]]), _decisions([[0.1, 0.0]]), 100.0)
    assert o.quantity == pytest.approx(3.333333)


def test_divergence_per_order_and_summary():
    sent = PaperOrder("m:A:0", "A", "sell", 10, 0, 100.0, submitted_ns=60 * 10**9 + 2 * 10**9, status="filled",
                      fills=[(61 * 10**9, 4.0, 99.0), (62 * 10**9, 6.0, 98.0)])
    ledger = [Fill("m", 1, "m:A:0", "A", 60 * 10**9, 1, Side.SELL, 10.0, 99.5, 99.6, 0, 0),
              Fill("other", 1, "other:A:0", "A", 60 * 10**9, 1, Side.SELL, 3.0, 1.0, 1.0, 0, 0)]
    unfilled = PaperOrder("m:B:0", "B", "buy", 5, 0, 50.0, status="canceled")
    report = divergence([sent, unfilled], ledger, 60 * 10**9)
    row = report.iloc[0]
    assert row["broker_price"] == pytest.approx(98.4)
    assert row["price_diff_bps"] == pytest.approx(-(98.4 / 99.5 - 1) * 1e4)  # sold lower: worse, positive
    assert row["slippage_bps"] == pytest.approx(-(98.4 / 99.6 - 1) * 1e4)
    assert row["timing_s"] == 2.0 and row["send_delay_s"] == 2.0 and row["quantity_diff"] == 0
    assert report.iloc[1]["quantity_diff"] == 0 and np.isnan(report.iloc[1]["price_diff_bps"])
    stats = summary(report)
    assert stats["n_orders"] == 2 and stats["n_filled"] == 1 and stats["n_unfilled"] == 1
    assert stats["suggested_slippage"] == {"model": "fixed_bps", "bps": round(row["slippage_bps"], 2)}
    both = fills_frame([sent], ledger, "m")
    assert both["source"].tolist() == ["ledger", "broker", "broker"]
