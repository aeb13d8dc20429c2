"""The leaderboard: every model's performance summary and its Sharpe test against the benchmark.

Rows are sorted by Sharpe ratio (best first, undefined last, then by name), so two runs of the same
config and seed give the same file bit for bit. ``beats_benchmark`` is True only when the paired
bootstrap rejects "Sharpe <= benchmark's" at the configured level: the arena does not crown noise.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from titan_ray.config import ArenaConfig
from titan_ray.domain.orders import OrderStatus
from titan_ray.ledger.engine import ModelResults
from titan_ray.metrics.performance import returns_from_equity, summarize
from titan_ray.metrics.significance import sharpe_difference_test


def build_leaderboard(
    config: ArenaConfig, results: dict[str, ModelResults], periods: float
) -> list[dict[str, Any]]:
    bench = config.benchmark_model
    initial = float(config.ledger.initial_cash)
    returns = {name: returns_from_equity(r.equity, initial) for name, r in results.items()}
    rows = []
    for name, res in results.items():
        summary = summarize(
            res.equity,
            initial,
            periods,
            gross_exposure=res.gross_exposure,
            traded_value=sum(f.value_micro for f in res.fills) / 1e6,
            round_trip_pnl=np.array([t.pnl_micro / 1e6 for t in res.round_trips]),
            n_orders=len(res.orders),
            n_rejected=sum(o.status is OrderStatus.REJECTED for o in res.orders),
        )
        row: dict[str, Any] = {"model": name, **summary.to_dict()}
        row.update(_significance(config, name, bench, returns, periods))
        row["halted"] = res.halted
        rows.append(row)
    rows.sort(key=_rank)
    return rows


def _significance(
    config: ArenaConfig, name: str, bench: str | None, returns: dict[str, np.ndarray], periods: float
) -> dict[str, Any]:
    empty = {"benchmark": bench, "sharpe_vs_benchmark_p": None, "beats_benchmark": None}
    if bench is None or name == bench or len(returns[name]) < 3:
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


def _rank(row: dict[str, Any]) -> tuple[int, float, str]:
    s = row.get("sharpe")
    ok = s is not None and math.isfinite(s)
    return (0 if ok else 1, -s if ok else 0.0, row["model"])
