"""results.py: the column-wise frames hold exactly what frames built record by record held.

The reference builders below are the per-record writers the column-wise ones replaced (one dict per
fill, order, round trip and explanation), kept here as the specification: for several in-process
arenas (fills, rejections, partial fills over many bars, risk-forced flattening, no trades) and for
hand-made explanation batches (no sentences, non-finite features, odd feature names, features that
change within a model), every frame must be equal value for value and dtype for dtype, and its
Parquet file byte for byte.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from titan_ray.arena import results as out
from titan_ray.config import parse_config
from titan_ray.data.providers import make_provider
from titan_ray.domain.decisions import ExplanationBatch
from titan_ray.ledger.engine import ModelResults
from titan_ray.ml.backtest import backtest
from titan_ray.models.kinds import build_model

BASE: dict[str, Any] = {
    "seed": 3,
    "data": {"provider": "synthetic", "n_symbols": 3, "bars": 400, "frequency": "15min"},
    "ledger": {"initial_cash": 100000, "commission_bps": 5},
    "models": [
        {"name": "sma", "kind": "sma_crossover", "params": {"fast": 3, "slow": 8}},
        {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 5, "low": 40, "high": 60}},
        {"name": "hold", "kind": "buy_and_hold"},
        {"name": "random", "kind": "random", "params": {"every": 5, "p_long": 0.5}},
    ],
}
ARENAS: dict[str, dict[str, Any]] = {
    "fills": {},
    "rejections": {"risk": {"max_position_pct": 0.3}},
    "partial fills": {"ledger": {**BASE["ledger"], "max_participation": 0.0005}},
    "forced flattening": {"risk": {"daily_loss_limit_pct": 0.002, "max_drawdown_pct": 0.01}},
    "fixed quantity": {"ledger": {**BASE["ledger"], "sizing": {"mode": "fixed_quantity", "quantity": 7}}},
    "no trades": {"ledger": {**BASE["ledger"], "initial_cash": 1}, "models": [{"name": "hold", "kind": "buy_and_hold"}]},
}


def _arena(changes: dict[str, Any], chunk: int = 64) -> dict[str, ModelResults]:
    """The arena without Ray: models and one Ledger driven chunk by chunk."""
    cfg = parse_config({**BASE, **changes})
    market = make_provider(cfg.data, cfg.seed).load()
    models = [build_model(m.name, m.kind, m.params, market.bars.symbols, seed=cfg.seed) for m in cfg.models]
    return backtest(models, market.bars, warmup=0, ledger=cfg.ledger, risk=cfg.risk, chunk_size=chunk,
                    calendar=market.calendar).results


# --- the per-record reference --------------------------------------------------------------------

def _utc(ns: Any) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True)


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def trades_by_record(results: dict[str, ModelResults]) -> pd.DataFrame:
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
    df = pd.DataFrame(rows, columns=out._TRADE_COLUMNS)
    for col in ("timestamp", "entry_timestamp"):
        df[col] = _utc(df[col].fillna(0).astype(np.int64)).where(df[col].notna())
    return df


def orders_by_record(results: dict[str, ModelResults]) -> pd.DataFrame:
    rows = [
        {
            "model": o.model, "order_id": o.order_id, "decision_id": o.decision_id, "symbol": o.symbol,
            "timestamp": o.timestamp, "bar": o.bar, "side": o.side.value, "quantity": o.quantity,
            "filled": o.filled, "status": o.status.value, "reason": o.reason.value if o.reason else None,
            "detail": o.detail, **_execution(row),
        }
        for r in results.values()
        for o, row in zip(r.orders, r.orders.rows, strict=True)
    ]
    df = pd.DataFrame(rows, columns=out._ORDER_COLUMNS)
    df["timestamp"] = _utc(df["timestamp"].astype(np.int64))
    return df


def _execution(row: np.void) -> dict[str, float]:
    """An order's execution, from its record's numbers one by one (Perold's shortfall, by hand)."""
    filled, arrival, value = float(row["filled"]), float(row["arrival"]), float(row["value"])
    if not (filled > 0 and math.isfinite(arrival) and arrival > 0):
        return {"arrival_price": arrival, "avg_fill_price": value / filled if filled > 0 else math.nan,
                "shortfall": math.nan, "shortfall_bps": math.nan}
    cost = (value - filled * arrival) if row["side"] > 0 else (filled * arrival - value)
    cost += int(row["commission"]) / 1e6
    return {"arrival_price": arrival, "avg_fill_price": value / filled, "shortfall": cost,
            "shortfall_bps": cost / (filled * arrival) * 1e4}


def decisions_by_record(results: dict[str, ModelResults]) -> pd.DataFrame:
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
            o = outcome.get(e.decision_id, {})
            rows.append({
                "decision_id": e.decision_id, "model": e.model, "timestamp": e.timestamp, "bar": e.bar,
                "symbol": e.symbol, "old_weight": e.old_weight, "new_weight": e.new_weight, "price": e.price,
                "method": e.method, "base_value": e.base_value,
                "features": json.dumps([{"name": f.name, "value": _num(f.value), "attribution": _num(f.attribution)}
                                        for f in e.features]),
                "sentence": out.traded_sentence(e.sentence, e.symbol, e.old_weight, e.new_weight, o.get("bought", 0.0)),
                "gap": e.gap,
                "order_status": o.get("order_status", "NO_ORDER"),
                "reject_reason": o.get("reject_reason"),
                "ordered_quantity": o.get("ordered_quantity", 0.0),
                "filled_quantity": o.get("filled_quantity", 0.0),
                "fill_price": o.get("fill_price", math.nan),
            })
    df = pd.DataFrame(rows, columns=out._DECISION_COLUMNS)
    df["timestamp"] = _utc(df["timestamp"].astype(np.int64))
    return df


REFERENCE = {out.trades_frame: trades_by_record, out.orders_frame: orders_by_record,
             out.decisions_frame: decisions_by_record}


def _parquet(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _assert_same(results: dict[str, ModelResults]) -> None:
    for columnwise, by_record in REFERENCE.items():
        expected, got = by_record(results), columnwise(results)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert list(got.dtypes) == list(expected.dtypes), columnwise.__name__
        assert _parquet(got) == _parquet(expected), columnwise.__name__


# --- the tests ------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=list(ARENAS))
def arena(request) -> dict[str, ModelResults]:
    return _arena(ARENAS[request.param])


def test_frames_are_those_built_record_by_record(arena):
    _assert_same(arena)


def test_the_arenas_cover_what_the_frames_join():
    partial = _arena(ARENAS["partial fills"])
    per_decision = pd.Series([f.decision_id for r in partial.values() for f in r.fills]).value_counts()
    assert per_decision.max() >= 8  # sums of many fills per decision (numpy's own sums are pairwise)
    forced = _arena(ARENAS["forced flattening"])
    assert any(not str(f.decision_id).startswith(f"{f.model}:") for r in forced.values() for f in r.fills)
    rejected = _arena(ARENAS["rejections"])
    assert all(not r.fills for r in rejected.values()) and any(r.orders for r in rejected.values())


def test_hand_made_explanations_are_written_as_records_would_be():
    results = _arena(ARENAS["fills"])
    sma = results["sma"]
    batch = ExplanationBatch.concat(sma.explanations)
    n = len(batch)
    half = n // 2
    odd_names = ('100% "quoted"', "naïve,\nname", "z")
    values = np.array([[np.nan, np.inf, -0.0], [1e-300, -np.inf, 1.5e16]] * n)[:n]
    odd = replace(batch, feature_names=odd_names, values=values, attributions=values[:, ::-1] * 3.0,
                  sentences=None, writer=None, gap=np.linspace(0, 1, n))
    bare = replace(batch, feature_names=(), values=np.empty((n, 0)), attributions=np.empty((n, 0)), writer=None)
    first, second = (replace(b, **{k: getattr(b, k)[sl] for k in ("bar", "symbol", "timestamp", "old_weight",
                                                                   "new_weight", "price", "base_value", "values",
                                                                   "attributions")},
                             sentences=None if b.sentences is None else b.sentences[sl],
                             gap=None if b.gap is None else b.gap[sl])
                     for b, sl in ((odd, slice(0, half)), (bare, slice(half, n))))
    results["sma"] = replace(sma, explanations=[first, second])  # the features change within a model
    _assert_same(results)


def test_equity_frame_is_long_format():
    results = _arena(ARENAS["fills"])
    frame = out.equity_frame(results)
    assert list(frame.columns) == ["timestamp", "model", "equity", "cash", "gross_exposure"]
    assert len(frame) == sum(len(r.equity) for r in results.values()) and str(frame["timestamp"].dt.tz) == "UTC"


def test_empty_runs_give_empty_frames_with_every_column():
    assert list(out.trades_frame({}).columns) == out._TRADE_COLUMNS
    assert list(out.orders_frame({}).columns) == out._ORDER_COLUMNS
    assert list(out.decisions_frame({}).columns) == out._DECISION_COLUMNS


def test_the_envelope_keeps_every_slices_extremes_and_both_ends():
    rng = np.random.default_rng(1)
    curve = np.cumsum(rng.standard_normal(100_003))
    keep = out.envelope(curve, points=2000)
    assert len(keep) <= 2002 and keep[0] == 0 and keep[-1] == len(curve) - 1
    assert np.all(np.diff(keep) > 0)
    assert curve[keep].max() == curve.max() and curve[keep].min() == curve.min()
    size = math.ceil(len(curve) / 1000)
    for start in range(0, len(curve), size * 97):  # every slice's extremes are drawn
        part = curve[start:start + size]
        assert start + int(part.argmax()) in keep and start + int(part.argmin()) in keep
    short = np.arange(50.0)
    assert out.envelope(short, points=2000).tolist() == list(range(50))
    gaps = np.full(10_000, np.nan)
    gaps[::7] = 1.0
    assert len(out.envelope(gaps, points=100)) <= 102  # slices without a number do not fail


def test_the_chart_is_written(tmp_path):
    path = tmp_path / "equity.png"
    out.plot_equity(_arena(ARENAS["fills"]), path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
