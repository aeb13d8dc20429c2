"""The results folder of a run: what ``titan-ray arena --out DIR`` leaves behind.

- ``leaderboard.json``: one object per model (DESIGN.md's fields, plus the benchmark test);
- ``equity.parquet``: long format ``timestamp, model, equity, cash, gross_exposure``;
- ``trades.parquet``: every fill (``record = "fill"``) and every closed round trip
  (``record = "round_trip"``), one table;
- ``orders.parquet``: every order with its status and, when rejected, its reason code and detail,
  and its execution against the arrival price (``arrival_price``, ``avg_fill_price``,
  ``shortfall`` in the account currency, ``shortfall_bps``: ``metrics/execution.py``);
- ``decisions.parquet``: one row per decision that changed a position: the explanation (method,
  features, base value, ``gap`` = |attributions summed + base - model output| for additive
  methods, sentence led by the trade once filled: "Bought 120 BBB ...") joined with what came of
  it (order status, filled quantity, fill price); a risk rule's flattening has a row too (method
  ``risk``, id ``risk:RULE:MODEL:SYMBOL:BAR``: the rule, its threshold, the value that crossed it),
  so every fill's ``decision_id`` has a row;
- ``run.json``: config, seed, code version, data summary, timings (the wall and its phases) and
  throughput;
- ``equity.png``: every model's equity curve on one chart, drawdowns below.

The frames are built column by column: a busy run has hundreds of thousands of fills, orders and
explanations, and one dict per record on the way to Parquet cost more than the replay itself.
Records arrive as lists of NamedTuples (read field by field, ``itemgetter``) and explanations as the
models' columnar ``ExplanationBatch`` arrays; what each row needs from elsewhere (a decision's
order and fills) is joined by decision id with pandas indexes. Only text that is per row by
nature (ids, the features' JSON, sentences) is formatted per row. The files hold the same values
and dtypes as a frame built record by record would (the unit tests build one and compare): every
column gets the dtype pandas infers for those records, string columns included.

The chart draws each curve from at most ``PLOT_POINTS`` points, the minimum and maximum of each
slice of bars, so a million bars cost no more than a thousand and every peak and trough stays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from titan_ray.domain.decisions import ExplanationBatch
from titan_ray.domain.orders import Fill, OrderRecord, RoundTrip, Side
from titan_ray.ledger.engine import ModelResults
from titan_ray.ledger.records import Records, fields
from titan_ray.metrics.execution import of_orders

PLOT_POINTS = 2000  # per curve: about two per pixel of the chart's width, minimum and maximum kept


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


# --- columns from records -----------------------------------------------------------------------

Columns = dict[str, np.ndarray]


def _objects(values: Sequence[Any]) -> np.ndarray:
    """Values as an object array (text; pandas infers the string dtype when the frame is built)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _enum_values(members: Sequence[Any]) -> np.ndarray:
    """``member.value`` for each enum member (None stays None), looked up once per distinct member."""
    lookup = {m: (None if m is None else m.value) for m in set(members)}
    return _objects(list(map(lookup.__getitem__, members)))


def _micro(values: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Exact micro-units as int64, and the same in units (``micro / 1e6``, as Python divides)."""
    micro = np.asarray(values)
    return micro, micro / 1e6


def _frame(blocks: list[tuple[int, Columns]], columns: list[str]) -> pd.DataFrame:
    """Blocks of rows stacked; a column a block lacks is NaN there, as for records without that key."""
    data = {}
    for col in columns:
        parts = [b[col] if col in b else np.full(n, np.nan) for n, b in blocks]
        data[col] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return pd.DataFrame(data, columns=columns)


def _fill_columns(fills: list[Fill]) -> Columns:
    f = fields(fills, Fill._fields)
    value_micro, value = _micro(f["value_micro"])
    commission_micro, commission = _micro(f["commission_micro"])
    return {
        "record": _objects(["fill"] * len(fills)), "model": _objects(f["model"]), "symbol": _objects(f["symbol"]),
        "timestamp": np.asarray(f["timestamp"]), "bar": np.asarray(f["bar"]), "order_id": np.asarray(f["order_id"]),
        "decision_id": _objects(f["decision_id"]), "side": _enum_values(f["side"]),
        "quantity": np.asarray(f["quantity"]), "price": np.asarray(f["price"]),
        "reference_price": np.asarray(f["reference_price"]), "value": value, "commission": commission,
        "value_micro": value_micro, "commission_micro": commission_micro,
    }


def _round_trip_columns(trips: list[RoundTrip]) -> Columns:
    t = fields(trips, RoundTrip._fields)
    pnl_micro, pnl = _micro(t["pnl_micro"])
    commission_micro, commission = _micro(t["commission_micro"])
    exit_bar, entry_bar = np.asarray(t["exit_bar"]), np.asarray(t["entry_bar"])
    return {
        "record": _objects(["round_trip"] * len(trips)), "model": _objects(t["model"]),
        "symbol": _objects(t["symbol"]), "timestamp": np.asarray(t["exit_timestamp"]), "bar": exit_bar,
        "direction": np.asarray(t["direction"]), "entry_timestamp": np.asarray(t["entry_timestamp"]),
        "entry_bar": entry_bar, "quantity": np.asarray(t["quantity"]), "entry_price": np.asarray(t["entry_price"]),
        "exit_price": np.asarray(t["exit_price"]), "pnl": pnl, "pnl_micro": pnl_micro, "commission": commission,
        "commission_micro": commission_micro, "bars_held": exit_bar - entry_bar,
    }


def trades_frame(results: dict[str, ModelResults]) -> pd.DataFrame:
    blocks: list[tuple[int, Columns]] = []
    for r in results.values():  # each model's fills, then its round trips
        if r.fills:
            blocks.append((len(r.fills), _fill_columns(r.fills)))
        if r.round_trips:
            blocks.append((len(r.round_trips), _round_trip_columns(r.round_trips)))
    df = _frame(blocks, _TRADE_COLUMNS) if blocks else pd.DataFrame(columns=_TRADE_COLUMNS)
    for col in ("timestamp", "entry_timestamp"):
        df[col] = _utc(df[col].fillna(0).astype(np.int64)).where(df[col].notna())
    return df


_TRADE_COLUMNS = [
    "record", "model", "symbol", "timestamp", "bar", "order_id", "decision_id", "side", "direction",
    "quantity", "price", "reference_price", "value", "commission", "value_micro", "commission_micro",
    "entry_timestamp", "entry_bar", "entry_price", "exit_price", "pnl", "pnl_micro", "bars_held",
]
_ORDER_COLUMNS = ["model", "order_id", "decision_id", "symbol", "timestamp", "bar", "side", "quantity", "filled",
                  "status", "reason", "detail", "arrival_price", "avg_fill_price", "shortfall", "shortfall_bps"]


def orders_frame(results: dict[str, ModelResults]) -> pd.DataFrame:
    blocks = [(len(r.orders), _order_columns(r.orders)) for r in results.values() if r.orders]
    df = _frame(blocks, _ORDER_COLUMNS) if blocks else pd.DataFrame(columns=_ORDER_COLUMNS)
    df["timestamp"] = _utc(df["timestamp"].astype(np.int64))
    return df


def _order_columns(orders: list[OrderRecord]) -> Columns:
    o = fields(orders, OrderRecord._fields)
    return {
        "model": _objects(o["model"]), "order_id": np.asarray(o["order_id"]), "decision_id": _objects(o["decision_id"]),
        "symbol": _objects(o["symbol"]), "timestamp": np.asarray(o["timestamp"]), "bar": np.asarray(o["bar"]),
        "side": _enum_values(o["side"]), "quantity": np.asarray(o["quantity"]), "filled": np.asarray(o["filled"]),
        "status": _enum_values(o["status"]), "reason": _enum_values(o["reason"]), "detail": _objects(o["detail"]),
        **execution_columns(orders),
    }


def execution_columns(orders: Sequence[OrderRecord]) -> Columns:
    """Each order's arrival price, average fill price and implementation shortfall (money, bps);
    NaN for orders that are not the ledger's records (a test's reference ledger keeps none)."""
    if not isinstance(orders, Records):
        nan = np.full(len(orders), np.nan)
        return {"arrival_price": nan, "avg_fill_price": nan, "shortfall": nan, "shortfall_bps": nan}
    r = orders.rows
    money, bps = of_orders(r)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = np.where(r["filled"] > 0, r["value"] / r["filled"], np.nan)
    return {"arrival_price": r["arrival"].copy(), "avg_fill_price": average, "shortfall": money, "shortfall_bps": bps}


# --- decisions ----------------------------------------------------------------------------------

_DECISION_COLUMNS = ["decision_id", "model", "timestamp", "bar", "symbol", "old_weight", "new_weight", "price",
                     "method", "base_value", "features", "sentence", "gap", "order_status", "reject_reason",
                     "ordered_quantity", "filled_quantity", "fill_price"]


def decisions_frame(results: dict[str, ModelResults]) -> pd.DataFrame:
    """One row per decision that changed a position, with its explanation and its outcome."""
    blocks = []
    for r in results.values():
        outcomes = _Outcomes(r)
        blocks += [(len(batch), _decision_columns(batch, r.symbols, outcomes)) for batch in _uniform_runs(r.explanations)]
    df = _frame(blocks, _DECISION_COLUMNS) if blocks else pd.DataFrame(columns=_DECISION_COLUMNS)
    df["timestamp"] = _utc(df["timestamp"].astype(np.int64))
    return df


def _uniform_runs(batches: list[ExplanationBatch]) -> list[ExplanationBatch]:
    """Consecutive batches joined wherever they share features, method and kind of sentences, in order."""
    runs: list[list[ExplanationBatch]] = []
    key = None
    for b in batches:
        if not len(b):
            continue
        k = (b.model, b.kind, b.method, b.feature_names, b.sentences is None, b.writer, b.rule)
        if k != key:
            runs.append([])
            key = k
        runs[-1].append(b)
    return [b for run in runs if (b := ExplanationBatch.concat(run)) is not None]


def _decision_columns(b: ExplanationBatch, all_symbols: tuple[str, ...], outcomes: _Outcomes) -> Columns:
    n = len(b)
    symbols = np.asarray(all_symbols, dtype=object)[b.symbol].tolist()
    bars = b.bar.astype(np.int64).tolist()
    prefix = "" if b.rule is None else f"risk:{b.rule}:"  # a risk rule's flattening: ForcedId's text
    ids = [f"{prefix}{b.model}:{s}:{k}" for s, k in zip(symbols, bars, strict=True)]  # DecisionId's text
    old, new = b.old_weight.astype(np.float64), b.new_weight.astype(np.float64)
    sentences = b.texts(all_symbols)
    outcome, bought = outcomes.of(ids)
    for i in np.flatnonzero(bought != 0):  # the sentence leads with the trade once filled
        sentences[i] = traded_sentence(sentences[i], symbols[i], float(old[i]), float(new[i]), float(bought[i]))
    return {
        "decision_id": _objects(ids), "model": _objects([b.model] * n), "timestamp": b.timestamp.astype(np.int64),
        "bar": np.asarray(bars, dtype=np.int64), "symbol": _objects(symbols), "old_weight": old, "new_weight": new,
        "price": b.price.astype(np.float64), "method": _objects([b.method] * n),
        "base_value": b.base_value.astype(np.float64),
        "features": _objects(_features_json(b.feature_names, b.values, b.attributions, n)),
        "sentence": _objects(sentences),
        "gap": np.full(n, np.nan) if b.gap is None else b.gap.astype(np.float64),
        **outcome,
    }


class _Outcomes:
    """What came of one model's decisions, by decision id: the last order each led to, and its fills.

    A decision's fill price is the volume-weighted price of its fills, and what it bought their
    signed sum, each added in fill order (``_sums_in_order``).
    """

    def __init__(self, r: ModelResults) -> None:
        o = fields(r.orders, OrderRecord._fields, "decision_id", "status", "reason", "quantity", "filled")
        ids = pd.Index(_objects(o["decision_id"]), dtype=object)
        last = ~ids.duplicated(keep="last")  # a decision's later order (the rest of a replaced one) wins
        self._orders = ids[last]
        self._order = {
            "order_status": _enum_values(o["status"])[last], "reject_reason": _enum_values(o["reason"])[last],
            "ordered_quantity": np.asarray(o["quantity"])[last], "filled_quantity": np.asarray(o["filled"])[last],
        }
        f = fields(r.fills, Fill._fields, "decision_id", "quantity", "price", "side")
        codes, decided = pd.factorize(_objects(f["decision_id"]))
        qty = np.asarray(f["quantity"], dtype=np.float64)
        buy = np.fromiter((side is Side.BUY for side in f["side"]), dtype=bool, count=len(qty))
        total = _sums_in_order(codes, qty, len(decided))
        self._filled = pd.Index(decided, dtype=object)
        self._fill_price = _sums_in_order(codes, qty * np.asarray(f["price"], dtype=np.float64), len(decided)) / total
        self._bought = _sums_in_order(codes, np.where(buy, qty, -qty), len(decided))

    def of(self, ids: list[str]) -> tuple[Columns, np.ndarray]:
        """The outcome columns of decisions ``ids`` (no order: ``NO_ORDER``), and what each bought."""
        keys = pd.Index(_objects(ids), dtype=object)
        at = self._orders.get_indexer(keys)
        columns = {name: _pick(values, at, missing) for (name, values), missing in
                   zip(self._order.items(), ("NO_ORDER", None, 0.0, 0.0), strict=True)}
        at = self._filled.get_indexer(keys)
        columns["fill_price"] = _pick(self._fill_price, at, np.nan)
        return columns, _pick(self._bought, at, 0.0)


def _pick(values: np.ndarray, at: np.ndarray, missing: Any) -> np.ndarray:
    """``values[at]``, ``missing`` where ``at`` is -1, in the dtype records holding both would get."""
    if (at >= 0).all():
        return values[at]
    padded = np.concatenate([values, np.array([missing], dtype=object if values.dtype == object else None)])
    return padded[np.where(at >= 0, at, len(values))]


def _sums_in_order(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Per group, its values added one after another in their order, as ``sum()`` adds them.

    Bit for bit the same as Python's left-to-right sum (numpy's own sums are pairwise): step k adds
    the k-th value of every group at once, so the loop runs as often as the largest group has values.
    """
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    rank = np.arange(len(codes)) - np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    out = np.zeros(groups)
    for k in range(int(rank.max()) + 1 if len(rank) else 0):
        at = rank == k
        out[sorted_codes[at]] += values[order[at]]
    return out


def _features_json(names: tuple[str, ...], values: np.ndarray, attributions: np.ndarray, n: int) -> list[str]:
    """Each row's features as ``json.dumps([{"name", "value", "attribution"}, ...])`` writes them."""
    if not names:
        return ["[]"] * n
    template = "[" + ", ".join(
        '{"name": ' + json.dumps(name).replace("%", "%%") + ', "value": %s, "attribution": %s}' for name in names
    ) + "]"
    cells = [_json_numbers(m[:, j]) for j in range(len(names)) for m in (values, attributions)]
    return list(map(template.__mod__, zip(*cells, strict=True)))


def _json_numbers(column: np.ndarray) -> list[str]:
    """Floats as JSON writes them (``repr``), ``null`` where not finite."""
    column = column.astype(np.float64)
    text = list(map(float.__repr__, column.tolist()))
    for i in np.flatnonzero(~np.isfinite(column)):
        text[i] = "null"
    return text


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


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


# --- the chart ----------------------------------------------------------------------------------


def envelope(values: np.ndarray, points: int = PLOT_POINTS) -> np.ndarray:
    """Indices of at most ``points`` (+2) values that draw the same line: each slice's minimum and maximum.

    The series is cut into ``points // 2`` slices of consecutive values; the first and last values
    are always kept. A series of ``points`` values or fewer is kept whole.
    """
    n = len(values)
    if n <= points:
        return np.arange(n)
    slices = max(1, points // 2)
    size = math.ceil(n / slices)
    padded = np.concatenate([values, np.full(slices * size - n, values[-1])]).reshape(slices, size)
    # nanargmin and nanargmax refuse a slice without a number: such a slice gives its first index
    empty = np.isnan(padded).all(axis=1)
    padded[empty, 0] = 0.0
    offsets = np.arange(slices) * size
    picks = np.concatenate([[0, n - 1], offsets + np.nanargmin(padded, axis=1), offsets + np.nanargmax(padded, axis=1)])
    return np.unique(np.minimum(picks, n - 1))


def plot_equity(results: dict[str, ModelResults], path: Path, *, title: str) -> None:
    # a Figure of its own, not pyplot: no global figure state, no GUI backend, and a lighter import
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6.5), dpi=110, layout="tight")  # laid out while saving: one draw, not two
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name, r in results.items():
        if not len(r.equity):
            continue
        peak = np.maximum.accumulate(np.concatenate([[r.initial_cash_micro / 1e6], r.equity]))[1:]
        drawdown = (r.equity / peak - 1) * 100
        keep = envelope(r.equity)
        top.plot(_utc(r.timestamps[keep]).tz_convert(None), r.equity[keep], label=name, linewidth=1.2)
        keep = envelope(drawdown)
        bottom.plot(_utc(r.timestamps[keep]).tz_convert(None), drawdown[keep], linewidth=0.9)
    top.set_title(title)
    top.set_ylabel("equity")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8, ncol=2)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.savefig(path)
