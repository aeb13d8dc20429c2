"""The arena's HTTP payloads, built from a finished run folder or from a live ledger's state.

Both paths first build one ``RunData`` (the run's tables in the results folder's format), and the
same pure functions turn it into the JSON bodies of the HTTP API, so ``titan-ray report`` and the
live server cannot disagree:

    load_run(folder)                          -> RunData  (leaderboard.json, *.parquet, run.json)
    live_run(results, leaderboard, ...)       -> RunData  (ModelResults from LedgerActor.results())

    leaderboard(run)                  GET /v1/leaderboard  (rows: sample_too_small, sample_note)
    equity(run, points=2000)          GET /v1/equity?points=
    portfolio(run, model)             GET /v1/portfolios/{model}
    trades(run, model, limit=200)     GET /v1/trades/{model}?limit=
    why(run, decision_id)             GET /v1/decisions/{id}/why

An unknown model or decision raises ``NotFound`` (the HTTP layer answers 404 with its message).
Timestamps are ISO 8601 UTC strings, except ``equity``'s, which are unix seconds (a chart's x axis).
Every payload is strict JSON: non-finite floats become ``null``. A leaderboard row whose sample is
too short to annualise (``titan_ray.metrics.sample``) has ``null`` annualised figures and p-value,
``sample_too_small: true`` and the reason in ``sample_note``; every row has both keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from titan_ray.arena import results as out
from titan_ray.arena.publish import json_safe
from titan_ray.domain.decisions import DecisionId, Explanation
from titan_ray.domain.orders import Fill
from titan_ray.ledger.engine import ModelResults

STATUSES = ("running", "finished", "idle")


class NotFound(KeyError):
    """An unknown model or decision id; ``str()`` is the message for the user."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


@dataclass(frozen=True)
class RunData:
    """One run's state in the results folder's format (live or finished)."""

    run_id: str | None
    status: str
    benchmark: str | None
    bars_done: int
    bars_total: int | None
    initial_cash: float
    models: tuple[str, ...]
    leaderboard: list[dict[str, Any]]
    equity: pd.DataFrame  # timestamp (UTC), model, equity, ...
    trades: pd.DataFrame  # trades.parquet: fills and round trips
    orders: pd.DataFrame  # orders.parquet
    portfolios: dict[str, dict[str, Any]]  # model -> portfolio_record()
    decisions: pd.DataFrame | None = None  # decisions.parquet (finished runs)
    results: Mapping[str, ModelResults] | None = field(default=None, repr=False)  # live runs


# --- building RunData ---------------------------------------------------------------------------


def load_run(folder: str | Path) -> RunData:
    """A results folder written by ``titan-ray arena --out DIR`` (finished when run.json exists)."""
    folder = Path(folder)
    board_path = folder / "leaderboard.json"
    if not board_path.is_file():
        raise FileNotFoundError(f"{folder} is not a finished arena run: leaderboard.json is missing "
                                "(give the --out folder of `titan-ray arena`)")
    board = json.loads(board_path.read_text())
    info = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
    saved = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    config = info.get("config") or saved.get("config") or {}
    initial = float(config.get("ledger", {}).get("initial_cash", 1_000_000))
    equity_df = pd.read_parquet(folder / "equity.parquet")
    portfolios_path = folder / "portfolios.json"
    portfolios = json.loads(portfolios_path.read_text()) if portfolios_path.is_file() else {}
    n = info.get("n_timestamps")
    total = None if n is None else int(n) - int(info.get("warmup_bars") or 0)
    models = tuple(row["model"] for row in board)
    return RunData(
        run_id=info.get("run_id") or saved.get("run_id"),
        status="finished" if info else "running",
        benchmark=next((row.get("benchmark") for row in board if row.get("benchmark")), None),
        bars_done=total if total is not None else _n_timestamps(equity_df),
        bars_total=total,
        initial_cash=initial,
        models=models,
        leaderboard=board,
        equity=equity_df,
        trades=pd.read_parquet(folder / "trades.parquet"),
        orders=pd.read_parquet(folder / "orders.parquet"),
        portfolios=portfolios,
        decisions=pd.read_parquet(folder / "decisions.parquet"),
    )


def live_run(
    results: Mapping[str, ModelResults],
    leaderboard_rows: list[dict[str, Any]],
    *,
    run_id: str | None,
    status: str,
    benchmark: str | None,
    bars_done: int,
    bars_total: int | None,
    initial_cash: float,
) -> RunData:
    """A running (or just finished) arena, from ``LedgerActor.results()`` and its leaderboard."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    return RunData(
        run_id=run_id,
        status=status,
        benchmark=benchmark,
        bars_done=bars_done,
        bars_total=bars_total,
        initial_cash=initial_cash,
        models=tuple(results),
        leaderboard=leaderboard_rows,
        equity=out.equity_frame(dict(results)) if results else _empty_equity(),
        trades=out.trades_frame(dict(results)),
        orders=out.orders_frame(dict(results)),
        portfolios={name: portfolio_record(r) for name, r in results.items()},
        results=results,
    )


def idle_run() -> RunData:
    """No arena yet: every list empty, status ``idle``."""
    return RunData(run_id=None, status="idle", benchmark=None, bars_done=0, bars_total=None, initial_cash=0.0,
                   models=(), leaderboard=[], equity=_empty_equity(), trades=out.trades_frame({}),
                   orders=out.orders_frame({}), portfolios={})


def portfolio_record(r: ModelResults) -> dict[str, Any]:
    """A model's portfolio at its last bar (what ``portfolios.json`` holds per model)."""
    marks = dict(zip(r.symbols, r.marks, strict=True)) if r.marks else {}
    cash = r.cash_micro / 1e6
    held = []
    for symbol, qty in r.positions.items():
        mark = marks.get(symbol, math.nan)
        cost = r.avg_cost.get(symbol, math.nan)
        held.append((symbol, qty, cost, mark, qty * mark, (mark - cost) * qty))
    equity = cash + sum(v for *_, v, _u in held if math.isfinite(v))
    positions = [
        {"symbol": s, "quantity": q, "avg_cost": _num(c), "mark": _num(m), "market_value": _num(v),
         "unrealized_pnl": _num(u), "weight": _num(v / equity) if equity else None}
        for s, q, c, m, v, u in sorted(held)
    ]
    return {"cash": cash, "equity": equity, "realized_pnl": r.realized_pnl, "halted": r.halted,
            "positions": positions}


# --- the payloads ---------------------------------------------------------------------------------


def leaderboard(run: RunData) -> dict[str, Any]:
    rows = []
    for row in run.leaderboard:
        p = row.get("sharpe_vs_benchmark_p")
        # a folder written before the sample rule has no flag: its figures are shown as they are
        rows.append({**json_safe(row), "p_value": _num(p) if p is not None else None,
                     "beats_benchmark": bool(row.get("beats_benchmark") or False),
                     "sample_too_small": bool(row.get("sample_too_small") or False),
                     "sample_note": row.get("sample_note")})
    return {
        "run_id": run.run_id,
        "status": run.status,
        "benchmark": run.benchmark or "",
        "progress": {"bars_done": int(run.bars_done), "bars_total": run.bars_total},
        "rows": rows,
    }


def equity(run: RunData, points: int = 2000) -> dict[str, Any]:
    """Equity and drawdown per model, downsampled evenly to at most ``points`` (last bar kept)."""
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    df = run.equity
    if df.empty:
        return {"timestamps": [], "models": {}}
    wide = df.pivot(index="timestamp", columns="model", values="equity").sort_index()
    n = len(wide)
    keep = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(np.int64))
    seconds = (wide.index.asi8[keep] // 1_000_000_000).tolist()
    models: dict[str, Any] = {}
    for name in [m for m in run.models if m in wide.columns] or list(wide.columns):
        eq = wide[name].to_numpy(dtype=np.float64)
        peak = np.fmax.accumulate(np.concatenate([[run.initial_cash or eq[0]], eq]))[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = eq / peak - 1.0
        models[name] = {"equity": _list(eq[keep]), "drawdown": _list(dd[keep])}
    return {"timestamps": seconds, "models": models}


def portfolio(run: RunData, model: str) -> dict[str, Any]:
    _check_model(run, model)
    record = run.portfolios.get(model)
    if record is None:
        raise NotFound(f"no portfolio recorded for model {model!r} (a run folder written before portfolios.json)")
    return {"model": model, **json_safe(record)}


def trades(run: RunData, model: str, limit: int = 200) -> dict[str, Any]:
    """The model's latest ``limit`` fills, orders and round trips, oldest first."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    _check_model(run, model)
    t = run.trades[run.trades["model"] == model]
    fills_df = t[t["record"] == "fill"].sort_values(["timestamp", "order_id"], kind="stable").tail(limit)
    trips_df = t[t["record"] == "round_trip"].sort_values("timestamp", kind="stable").tail(limit)
    o = run.orders[run.orders["model"] == model].sort_values("order_id", kind="stable").tail(limit)
    return {
        "model": model,
        "fills": [fill_row(r) for r in fills_df.to_dict("records")],
        "orders": [
            {"decision_id": r["decision_id"], "timestamp": _iso(r["timestamp"]), "symbol": r["symbol"],
             "side": r["side"], "quantity": _num(r["quantity"]), "filled": _num(r["filled"]),
             "status": r["status"], "reason": r["reason"] if isinstance(r["reason"], str) else None,
             "detail": r["detail"] or ""}
            for r in o.to_dict("records")
        ],
        "round_trips": [
            {"symbol": r["symbol"], "direction": "long" if r["direction"] > 0 else "short",
             "entry_time": _iso(r["entry_timestamp"]), "exit_time": _iso(r["timestamp"]),
             "quantity": _num(r["quantity"]), "entry_price": _num(r["entry_price"]),
             "exit_price": _num(r["exit_price"]), "pnl": _num(r["pnl"])}
            for r in trips_df.to_dict("records")
        ],
    }


def why(run: RunData, decision_id: str) -> dict[str, Any]:
    """The explanation of one decision that changed a position."""
    if run.results is not None:
        record = _explanation_from_results(run.results, decision_id)
        if record is None:
            raise _no_decision(decision_id)
        payload = explanation_payload(record)
        # as decisions.parquet has it: once filled, the sentence leads with the trade ("Bought 120 BBB")
        bought = sum(f.quantity if f.side.value == "BUY" else -f.quantity
                     for f in run.results[record.model].fills if f.decision_id == decision_id)
        payload["sentence"] = out.traded_sentence(record.sentence, record.symbol, record.old_weight,
                                                  record.new_weight, bought)
        return payload
    df = run.decisions
    rows = df[df["decision_id"] == decision_id] if df is not None else None
    if rows is None or rows.empty:
        raise _no_decision(decision_id)
    r = rows.iloc[0]
    return {
        "decision_id": r["decision_id"], "model": r["model"], "timestamp": _iso(r["timestamp"]),
        "symbol": r["symbol"], "old_weight": _num(r["old_weight"]), "new_weight": _num(r["new_weight"]),
        "price": _num(r["price"]), "method": r["method"], "base_value": _num(r["base_value"]),
        "features": [_feature(f["name"], f["value"], f["attribution"]) for f in decision_features(r)],
        "sentence": r["sentence"],
    }


def explanation_payload(e: Explanation) -> dict[str, Any]:
    return {
        "decision_id": e.decision_id, "model": e.model, "timestamp": _iso(e.timestamp), "symbol": e.symbol,
        "old_weight": _num(e.old_weight), "new_weight": _num(e.new_weight), "price": _num(e.price),
        "method": e.method, "base_value": _num(e.base_value),
        "features": [_feature(f.name, f.value, f.attribution) for f in e.features],
        "sentence": e.sentence,
    }


def decision_features(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A decisions.parquet row's ``features`` cell (JSON text, or a list once read back) as a list of
    ``{name, value, attribution}``."""
    cell = row["features"]
    return json.loads(cell) if isinstance(cell, str) else list(cell)


def _feature(name: str, value: Any, attribution: Any) -> dict[str, Any]:
    return {"name": name, "value": _num(value), "attribution": _num(attribution)}


def _no_decision(decision_id: str) -> NotFound:
    return NotFound(f"no decision {decision_id!r}; ids look like MODEL:SYMBOL:BAR (or risk:RULE:MODEL:SYMBOL:BAR "
                    "for a risk rule's flattening) and name a decision that changed a position (see "
                    "decision_id in /v1/trades/{model})")


def fill_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """One fill as the API shows it, from a trades.parquet row (or a ``Fill`` via ``fill_payload``)."""
    return {"model": r["model"], "decision_id": r["decision_id"], "timestamp": _iso(r["timestamp"]),
            "symbol": r["symbol"], "side": r["side"], "quantity": _num(r["quantity"]), "price": _num(r["price"]),
            "commission": _num(r["commission"])}


def fill_payload(f: Fill) -> dict[str, Any]:
    return fill_row({"model": f.model, "decision_id": f.decision_id, "timestamp": f.timestamp,
                     "symbol": f.symbol, "side": f.side.value, "quantity": f.quantity, "price": f.price,
                     "commission": f.commission_micro / 1e6})


# --- helpers ----------------------------------------------------------------------------------------


def _explanation_from_results(results: Mapping[str, ModelResults], decision_id: str) -> Explanation | None:
    did = DecisionId.parse(decision_id)
    r = results.get(did.model) if did is not None else None
    if r is None or did.symbol not in r.symbols:
        return None
    s = r.symbols.index(did.symbol)
    rule = getattr(did, "rule", None)  # a ForcedId's: a risk rule's flattening
    for batch in r.explanations:
        if batch.rule != rule or len(batch) == 0 or did.bar < batch.bar[0] or did.bar > batch.bar[-1]:
            continue
        hits = np.flatnonzero((batch.bar == did.bar) & (batch.symbol == s))
        if len(hits):
            return batch.record(int(hits[0]), r.symbols)
    return None


def _check_model(run: RunData, model: str) -> None:
    if model not in run.models:
        known = ", ".join(run.models) or "none yet"
        raise NotFound(f"unknown model {model!r}; models in this run: {known}")


def _n_timestamps(df: pd.DataFrame) -> int:
    return int(df["timestamp"].nunique()) if len(df) else 0


def _empty_equity() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": pd.to_datetime(pd.Series([], dtype=np.int64), utc=True),
                         "model": pd.Series([], dtype=object), "equity": pd.Series([], dtype=np.float64)})


def _iso(ts: Any) -> str | None:
    """ISO 8601 UTC of a pandas/numpy timestamp or int nanoseconds; None for a missing one."""
    if ts is None or (isinstance(ts, float) and math.isnan(ts)) or ts is pd.NaT:
        return None
    stamp = pd.Timestamp(ts, unit="ns", tz="UTC") if isinstance(ts, int | np.integer) else pd.Timestamp(ts)
    if stamp is pd.NaT:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC").isoformat()


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _list(a: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in a.tolist()]
