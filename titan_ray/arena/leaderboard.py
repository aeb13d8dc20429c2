"""The leaderboard: every model's performance summary and its Sharpe test against the benchmark.

Rows are sorted by Sharpe ratio (best first, undefined last, then by name), so two runs of the same
config and seed give the same file bit for bit; rows whose sample is too short to annualise (no
Sharpe yet) come after those with one, by total return. ``beats_benchmark`` is True only when the
paired bootstrap rejects "Sharpe <= benchmark's" at the configured level: the arena does not crown
noise.

With the market's regime labels (``metrics/regimes.py``: trend x volatility of the equal-weight
index, causal) each row holds ``regimes``: per regime its Sharpe (withheld on too short a sample),
total return and bars, each return counted under the regime known when it was earned.

A model with fewer returns than ``titan_ray.metrics.sample`` asks for (the longer of 30 returns and
one trading day of bars) has its annualised figures and the benchmark test withheld (``None``), and
every row says so in ``sample_too_small`` and ``sample_note``, its last two keys.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from titan_ray.config import ArenaConfig
from titan_ray.domain.orders import Fill, OrderRecord, OrderStatus, RoundTrip
from titan_ray.ledger.engine import ModelResults
from titan_ray.ledger.records import Records, fields
from titan_ray.metrics.execution import of_orders, total_bps
from titan_ray.metrics.performance import returns_from_equity, summarize
from titan_ray.metrics.regimes import held_labels, regime_metrics
from titan_ray.metrics.sample import Sample, annualisation_sample, withhold
from titan_ray.metrics.significance import sharpe_difference_test


def build_leaderboard(
    config: ArenaConfig, results: dict[str, ModelResults], periods: float, *,
    regimes: tuple[np.ndarray, np.ndarray] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The rows, best first; with ``regimes`` (every market bar's timestamp and regime label) each
    row also holds its metrics per market regime (``regimes``); ``extra`` adds keys to some models'
    rows (an LLM's ``llm_tokens``, ``llm_latency_s``, ``llm_cost``, ``contaminated``, ...)."""
    bench = config.benchmark_model
    initial = float(config.ledger.initial_cash)
    returns = {name: returns_from_equity(r.equity, initial) for name, r in results.items()}
    rows = []
    for name, res in results.items():
        # read as columns: no fill, order or round trip is made for the leaderboard
        value = np.asarray(fields(res.fills, Fill._fields, "value_micro")["value_micro"], dtype=np.int64)
        pnl = np.asarray(fields(res.round_trips, RoundTrip._fields, "pnl_micro")["pnl_micro"], dtype=np.int64)
        status = fields(res.orders, OrderRecord._fields, "status")["status"]
        summary = summarize(
            res.equity,
            initial,
            periods,
            gross_exposure=res.gross_exposure,
            traded_value=sum(value.tolist()) / 1e6,  # exact: Python's integers
            round_trip_pnl=pnl / 1e6,
            n_orders=len(res.orders),
            n_rejected=sum(s is OrderStatus.REJECTED for s in status),
        )
        sample = annualisation_sample(len(res.equity), periods, config.data.calendar)
        row: dict[str, Any] = {"model": name, **summary.to_dict()}
        row["implementation_shortfall"] = _shortfall_bps(res.orders)
        row.update(_significance(config, name, bench, returns, periods, sample))
        row["halted"] = res.halted
        row.update((extra or {}).get(name, {}))
        if regimes is not None:
            row["regimes"] = _by_regime(returns[name], held_labels(*regimes, res.timestamps), periods, config)
        rows.append(withhold(row, sample))
    rows.sort(key=_rank)
    return rows


def _shortfall_bps(orders: Any) -> float | None:
    """The model's implementation shortfall over its orders that filled, in basis points of their
    arrival notional (``metrics/execution.py``); None without any (or without the ledger's records)."""
    if not isinstance(orders, Records) or not len(orders):
        return None
    r = orders.rows
    money, _ = of_orders(r)
    value = total_bps(money, r["filled"], r["arrival"])
    return value if math.isfinite(value) else None


def _significance(
    config: ArenaConfig,
    name: str,
    bench: str | None,
    returns: dict[str, np.ndarray],
    periods: float,
    sample: Sample,
) -> dict[str, Any]:
    empty = {"benchmark": bench, "sharpe_vs_benchmark_p": None, "beats_benchmark": None}
    if bench is None or name == bench or sample.too_small:
        return empty
    sig = config.significance
    rng = np.random.default_rng([config.seed, zlib.crc32(name.encode())])
    test = sharpe_difference_test(
        returns[name], returns[bench], periods, n_resamples=sig.n_resamples, block=sig.block, rng=rng
    )
    p = float(test.p_value)
    if not math.isfinite(p):
        return empty
    return {"benchmark": bench, "sharpe_vs_benchmark_p": p, "beats_benchmark": bool(p < sig.alpha)}


def _by_regime(r: np.ndarray, labels: np.ndarray, periods: float, config: ArenaConfig) -> dict[str, Any]:
    """Sharpe, total return and bars per market regime; the Sharpe withheld on a regime's sample too
    short to annualise, as the row's own."""
    out = {}
    for name, m in regime_metrics(r, labels, periods).items():
        short = annualisation_sample(int(m["n_bars"]), periods, config.data.calendar).too_small
        s = float(m["sharpe"])
        out[name] = {"sharpe": None if short or not math.isfinite(s) else s,
                     "total_return": float(m["total_return"]), "n_bars": int(m["n_bars"])}
    return out


def _rank(row: dict[str, Any]) -> tuple[int, float, str]:
    s = row.get("sharpe")
    if s is not None and math.isfinite(s):
        return (0, -s, row["model"])
    r = row.get("total_return")
    if row.get("sample_too_small") and r is not None and math.isfinite(r):
        return (1, -r, row["model"])
    return (2, 0.0, row["model"])
