"""Paper cross-validation without a broker: orders from target weights, and the divergence report.

``OrderMirror`` sizes one model's orders the way the ledger does (a change of target weight
becomes an order for ``trunc(weight x equity / price) - position`` shares), but at the moment the
model decides, with the decision bar's close as the price and the ledger's latest equity for that
model: a real deployment could not know the next bar's open. Each order carries the decision id
that the ledger puts on its own fills, so the two can be matched.

``divergence`` puts each paper order next to the ledger's fills of the same decision and reports
per order: the price difference (``price_diff_bps``, signed so that positive means the broker
filled worse than the ledger assumed), the realised slippage against the ledger's reference price
(the bar's open: ``slippage_bps``, what ``ledger.slippage.bps`` should be), the quantity
difference, and the timing (broker fill time minus the ledger's fill bar time, and how long after
the decision bar closed the order was sent). ``summary`` aggregates them, with a suggested
``fixed_bps`` slippage setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import DecisionId, Decisions

_STEP = 1e-6  # fractional quantities: a millionth of a share, as in the ledger
TERMINAL = frozenset({"filled", "canceled", "expired", "rejected", "done_for_day", "replaced"})


@dataclass
class PaperOrder:
    decision_id: str
    symbol: str
    side: str  # "buy" | "sell"
    quantity: float  # requested, positive
    decision_ts: int  # ns UTC: the decision bar's time
    decision_close: float  # the price the order was sized with
    submitted_ns: int = 0
    order_id: str | None = None
    status: str = "pending"
    reason: str = ""
    fills: list[tuple[int, float, float]] = field(default_factory=list)  # (ns, qty, price)

    @property
    def filled(self) -> float:
        return sum(q for _, q, _ in self.fills)

    @property
    def avg_price(self) -> float:
        q = self.filled
        return sum(q_ * p for _, q_, p in self.fills) / q if q > 0 else math.nan

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class OrderMirror:
    """One model's target weights in, broker orders out (see the module docstring)."""

    def __init__(self, model: str, symbols: tuple[str, ...], *, fractional: bool) -> None:
        self.model, self.symbols, self.fractional = model, tuple(symbols), fractional
        self.target = np.zeros(len(symbols))  # last target weight
        self.position = np.zeros(len(symbols))  # shares asked for so far (the intended position)

    def orders(self, bars: BarBatch, decisions: Decisions, equity: float) -> list[PaperOrder]:
        out = []
        w = np.asarray(decisions.weights, dtype=np.float64)
        for t in range(len(bars)):
            changed = np.flatnonzero((w[t] != self.target) & np.isfinite(w[t]))
            for s in changed:
                s = int(s)
                price = float(bars.close[t, s])
                self.target[s] = w[t, s]
                if not math.isfinite(price) or price <= 0:
                    continue
                raw = w[t, s] * equity / price
                target = math.trunc(raw / _STEP) * _STEP if self.fractional else float(math.trunc(raw))
                qty = target - self.position[s]
                if abs(qty) < (_STEP if self.fractional else 1):
                    continue
                self.position[s] = target
                out.append(PaperOrder(
                    decision_id=DecisionId(self.model, self.symbols[s], bars.start + t),
                    symbol=self.symbols[s], side="buy" if qty > 0 else "sell", quantity=round(abs(qty), 6),
                    decision_ts=int(bars.timestamps[t]), decision_close=price,
                ))
        return out


def divergence(orders: list[PaperOrder], ledger_fills: list[Any], bar_ns: int) -> pd.DataFrame:
    """One row per paper order: the broker's fill beside the ledger's, and how far apart they are."""
    by_decision: dict[str, list[Any]] = {}
    for f in ledger_fills:
        by_decision.setdefault(f.decision_id, []).append(f)
    rows = []
    for o in orders:
        sign = 1.0 if o.side == "buy" else -1.0
        lf = by_decision.get(o.decision_id, [])
        l_qty = sum(f.quantity for f in lf)
        l_price = sum(f.quantity * f.price for f in lf) / l_qty if l_qty else math.nan
        l_ref = sum(f.quantity * f.reference_price for f in lf) / l_qty if l_qty else math.nan
        l_time = min((f.timestamp for f in lf), default=None)
        b_qty, b_price = o.filled, o.avg_price
        b_first = min((t for t, _, _ in o.fills), default=None)
        b_last = max((t for t, _, _ in o.fills), default=None)
        both = b_qty > 0 and l_qty > 0
        rows.append({
            "decision_id": o.decision_id, "symbol": o.symbol, "side": o.side.upper(),
            "decision_time": pd.Timestamp(o.decision_ts, tz="UTC"),
            "submitted_at": pd.Timestamp(o.submitted_ns, tz="UTC") if o.submitted_ns else pd.NaT,
            "order_id": o.order_id, "broker_status": o.status, "broker_reason": o.reason,
            "requested_quantity": o.quantity,
            "broker_quantity": b_qty, "broker_price": b_price,
            "broker_first_fill": pd.Timestamp(b_first, tz="UTC") if b_first else pd.NaT,
            "broker_last_fill": pd.Timestamp(b_last, tz="UTC") if b_last else pd.NaT,
            "broker_fills": len(o.fills),
            "ledger_quantity": l_qty, "ledger_price": l_price, "ledger_reference_price": l_ref,
            "ledger_fill_time": pd.Timestamp(l_time, tz="UTC") if l_time is not None else pd.NaT,
            "price_diff_bps": sign * (b_price / l_price - 1) * 1e4 if both else math.nan,
            "slippage_bps": sign * (b_price / l_ref - 1) * 1e4 if both else math.nan,
            "quantity_diff": b_qty - l_qty,
            "timing_s": (b_last - l_time) / 1e9 if both else math.nan,
            "send_delay_s": (o.submitted_ns - (o.decision_ts + bar_ns)) / 1e9 if o.submitted_ns else math.nan,
        })
    columns = ["decision_id", "symbol", "side", "decision_time", "submitted_at", "order_id", "broker_status",
               "broker_reason", "requested_quantity", "broker_quantity", "broker_price", "broker_first_fill",
               "broker_last_fill", "broker_fills", "ledger_quantity", "ledger_price", "ledger_reference_price",
               "ledger_fill_time", "price_diff_bps", "slippage_bps", "quantity_diff", "timing_s", "send_delay_s"]
    return pd.DataFrame(rows, columns=columns)


def fills_frame(orders: list[PaperOrder], ledger_fills: list[Any], model: str) -> pd.DataFrame:
    """The broker's fills next to the ledger's simulated fills (long format, ``source`` tells which)."""
    rows = [{"source": "broker", "decision_id": o.decision_id, "symbol": o.symbol, "side": o.side.upper(),
             "timestamp": pd.Timestamp(t, tz="UTC"), "quantity": q, "price": p}
            for o in orders for t, q, p in o.fills]
    rows += [{"source": "ledger", "decision_id": f.decision_id, "symbol": f.symbol, "side": f.side.value,
              "timestamp": pd.Timestamp(f.timestamp, tz="UTC"), "quantity": f.quantity, "price": f.price}
             for f in ledger_fills if f.model == model]
    frame = pd.DataFrame(rows, columns=["source", "decision_id", "symbol", "side", "timestamp", "quantity", "price"])
    return frame.sort_values(["timestamp", "source"], kind="stable").reset_index(drop=True)


def summary(report: pd.DataFrame) -> dict[str, Any]:
    """Aggregates of the divergence report for run.json; NaN-free (None where nothing to measure)."""
    def stat(col: str, fn) -> float | None:
        x = report[col].dropna().to_numpy(dtype=np.float64)
        return float(fn(x)) if len(x) else None

    matched = report.dropna(subset=["price_diff_bps"])
    slip = stat("slippage_bps", np.median)
    return {
        "n_orders": len(report),
        "n_filled": int((report["broker_status"] == "filled").sum()),
        "n_partially_filled": int(((report["broker_quantity"] > 0) & (report["broker_status"] != "filled")).sum()),
        "n_unfilled": int((report["broker_quantity"] == 0).sum()),
        "n_matched": len(matched),
        "n_ledger_without_broker_fill": int(((report["ledger_quantity"] > 0) & (report["broker_quantity"] == 0)).sum()),
        "price_diff_bps": {"mean": stat("price_diff_bps", np.mean), "median": stat("price_diff_bps", np.median),
                           "p90_abs": stat("price_diff_bps", lambda x: np.percentile(np.abs(x), 90))},
        "slippage_bps": {"mean": stat("slippage_bps", np.mean), "median": slip},
        "quantity_diff": {"total": float(report["quantity_diff"].sum()) if len(report) else 0.0,
                          "mean_abs": stat("quantity_diff", lambda x: np.mean(np.abs(x)))},
        "timing_s": {"mean": stat("timing_s", np.mean), "median": stat("timing_s", np.median)},
        "send_delay_s": {"median": stat("send_delay_s", np.median)},
        "suggested_slippage": {"model": "fixed_bps", "bps": round(max(slip, 0.0), 2)} if slip is not None else None,
    }
