"""The results folder of a run: what ``titan-ray arena --out DIR`` leaves behind.

- ``leaderboard.json``: one object per model (DESIGN.md's fields, plus the benchmark test);
- ``equity.parquet``: long format ``timestamp, model, equity, cash, gross_exposure``;
- ``trades.parquet``: every fill (``record = "fill"``) and every closed round trip
  (``record = "round_trip"``), one table;
- ``orders.parquet``: every order with its status and, when rejected, its reason code and detail;
- ``decisions.parquet``: one row per decision that changed a position: the explanation (method,
  features, base value, ``gap`` = |attributions summed + base - model output| for additive
  methods, sentence led by the trade once filled: "Bought 120 BBB ...") joined with what came of
  it (order status, filled quantity, fill price);
- ``run.json``: config, seed, code version, data summary, timings and throughput;
- ``equity.png``: every model's equity curve on one chart, drawdowns below.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from titan_ray.ledger.engine import ModelResults


def _utc(ns: np.ndarray | list[int]) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True)


def equity_frame(results: dict[str, ModelResults]) -> pd.DataFrame:
    frames = [
        pd.DataFrame(
            {
                "timestamp": _utc(r.timestamps),
                "model": name,
                "equity": r.equity,
                "cash": r.cash,
                "gross_exposure": r.gross_exposure,
            }
        )
        for name, r in results.items()
    ]
    return pd.concat(frames, ignore_index=True)


def trades_frame(results: dict[str, ModelResults]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for r in results.values():
        for f in r.fills:
            rows.append({
                "record": "fill", "model": f.model, "symbol": f.symbol, "timestamp": f.timestamp,
                "bar": f.bar, "order_id": f.order_id, "decision_id": f.decision_id, "side": f.side.value,
                "quantity": f.quantity, "price": f.price, "reference_price": f.reference_price,
                "value": f.value_micro / 1e6, "commission": f.commission_micro / 1e6,
                "value_micro": f.value_micro, "commission_micro": f.commission_micro,
            })
        for t in r.round_trips:
            rows.append({
                "record": "round_trip", "model": t.model, "symbol": t.symbol, "timestamp": t.exit_timestamp,
                "bar": t.exit_bar, "direction": t.direction, "entry_timestamp": t.entry_timestamp,
                "entry_bar": t.entry_bar, "quantity": t.quantity, "entry_price": t.entry_price,
                "exit_price": t.exit_price, "pnl": t.pnl_micro / 1e6, "pnl_micro": t.pnl_micro,
                "commission": t.commission_micro / 1e6, "commission_micro": t.commission_micro,
                "bars_held": t.exit_bar - t.entry_bar,
            })
    df = pd.DataFrame(rows, columns=_TRADE_COLUMNS)
    for col in ("timestamp", "entry_timestamp"):
        df[col] = _utc(df[col].fillna(0).astype(np.int64)).where(df[col].notna())
    return df


_TRADE_COLUMNS = [
    "record", "model", "symbol", "timestamp", "bar", "order_id", "decision_id", "side", "direction",
    "quantity", "price", "reference_price", "value", "commission", "value_micro", "commission_micro",
    "entry_timestamp", "entry_bar", "entry_price", "exit_price", "pnl", "pnl_micro", "bars_held",
]


def orders_frame(results: dict[str, ModelResults]) -> pd.DataFrame:
    rows = [
        {
            "model": o.model, "order_id": o.order_id, "decision_id": o.decision_id, "symbol": o.symbol,
            "timestamp": o.timestamp, "bar": o.bar, "side": o.side.value, "quantity": o.quantity,
            "filled": o.filled, "status": o.status.value, "reason": o.reason.value if o.reason else None,
            "detail": o.detail,
        }
        for r in results.values()
        for o in r.orders
    ]
    df = pd.DataFrame(rows, columns=["model", "order_id", "decision_id", "symbol", "timestamp", "bar", "side",
                                     "quantity", "filled", "status", "reason", "detail"])
    df["timestamp"] = _utc(df["timestamp"].astype(np.int64))
    return df


def decisions_frame(results: dict[str, ModelResults]) -> pd.DataFrame:
    """One row per decision that changed a position, with its explanation and its outcome."""
    outcome: dict[str, dict[str, Any]] = {}
    for r in results.values():
        for o in r.orders:
            outcome[o.decision_id] = {"order_status": o.status.value, "reject_reason": o.reason.value if o.reason
                                      else None, "ordered_quantity": o.quantity, "filled_quantity": o.filled}
        fills: dict[str, list] = {}
        for f in r.fills:
            fills.setdefault(f.decision_id, []).append(f)
        for did, fs in fills.items():
            qty = sum(f.quantity for f in fs)
            outcome.setdefault(did, {})["fill_price"] = sum(f.quantity * f.price for f in fs) / qty
            outcome[did]["bought"] = sum(f.quantity if f.side.value == "BUY" else -f.quantity for f in fs)
    rows = []
    for r in results.values():
        for e in r.explanation_records():
            out = outcome.get(e.decision_id, {})
            rows.append({
                "decision_id": e.decision_id, "model": e.model, "timestamp": e.timestamp, "bar": e.bar,
                "symbol": e.symbol, "old_weight": e.old_weight, "new_weight": e.new_weight, "price": e.price,
                "method": e.method, "base_value": e.base_value,
                "features": json.dumps([{"name": f.name, "value": _num(f.value), "attribution": _num(f.attribution)}
                                        for f in e.features]),
                "sentence": traded_sentence(e.sentence, e.symbol, e.old_weight, e.new_weight, out.get("bought", 0.0)),
                "gap": e.gap,
                "order_status": out.get("order_status", "NO_ORDER"),
                "reject_reason": out.get("reject_reason"),
                "ordered_quantity": out.get("ordered_quantity", 0.0),
                "filled_quantity": out.get("filled_quantity", 0.0),
                "fill_price": out.get("fill_price", math.nan),
            })
    df = pd.DataFrame(rows, columns=["decision_id", "model", "timestamp", "bar", "symbol", "old_weight",
                                     "new_weight", "price", "method", "base_value", "features", "sentence", "gap",
                                     "order_status", "reject_reason", "ordered_quantity", "filled_quantity",
                                     "fill_price"])
    df["timestamp"] = _utc(df["timestamp"].astype(np.int64))
    return df


def traded_sentence(sentence: str, symbol: str, old: float, new: float, bought: float) -> str:
    """The model's sentence led by what the decision traded: 'Bought 120 BBB (weight 0 → 0.08): ...'.

    Model sentences start with the action ('Went long BBB (weight 0 → 0.08): reason'); once the
    ledger knows the filled quantity, that lead becomes the trade. Unfilled decisions keep theirs.
    """
    head, sep, reason = sentence.partition(": ")
    if not bought or not sep or symbol not in head:
        return sentence
    verb = "Bought" if bought > 0 else "Sold"
    return f"{verb} {abs(bought):g} {symbol} (weight {old:.4g} → {new:.4g}): {reason}"


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def plot_equity(results: dict[str, ModelResults], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, dpi=110
    )
    for name, r in results.items():
        if not len(r.equity):
            continue
        when = _utc(r.timestamps).tz_convert(None)
        top.plot(when, r.equity, label=name, linewidth=1.2)
        peak = np.maximum.accumulate(np.concatenate([[r.initial_cash_micro / 1e6], r.equity]))[1:]
        bottom.plot(when, (r.equity / peak - 1) * 100, linewidth=0.9)
    top.set_title(title)
    top.set_ylabel("equity")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8, ncol=2)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
