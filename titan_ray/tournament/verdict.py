"""From arenas to a verdict: each arena's scores, then every model's record across the arenas.

``score_arena`` reads one finished arena (its leaderboard rows and each model's per-bar returns)
into a JSON-safe dict, ``summary.json`` in the arena's folder: the leaderboard's metrics, whether
the model beat the benchmark (raw Sharpe, and the arena's bootstrap test), its per-period Sharpe
ratio with the sample's skewness and raw kurtosis, the Probabilistic Sharpe Ratio against 0, and
the Deflated Sharpe Ratio (``metrics/significance.py``): the PSR against the Sharpe ratio the best
of the arena's trials would reach by luck, the trials being every model of the arena but the
benchmark (each variant counts as a model tried).

``verdict`` folds the summaries (read back from disk, in the plan's order, so an interrupted
tournament that is resumed writes the same bytes) into ``tournament.json``: per model the
distribution of each metric across arenas (median, quartiles, worst), its win rate against the
benchmark, its mean rank and rank spread, the median PSR and DSR and the share of arenas where the
DSR is significant, ``pass_all`` (a higher Sharpe than the benchmark in every arena) and the word
a researcher wants: ``robust`` (pass_all and a significant DSR everywhere), ``mixed``, or ``noise``
(a significant DSR nowhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from titan_ray.metrics.significance import deflated_sharpe_ratio

METRICS = ("sharpe", "sortino", "calmar", "total_return", "max_drawdown", "profit_factor", "win_rate")
# the worst of a metric is its lowest value for all of these (drawdowns are negative numbers)


def score_arena(arena: dict[str, Any], leaderboard: list[dict[str, Any]], returns: dict[str, np.ndarray],
                origin: dict[str, str]) -> dict[str, Any]:
    """One arena's summary; ``arena`` holds its id, market, seed and window; the leaderboard's rows
    carry each model's metrics per market regime (``regimes``), when the arena had the labels."""
    bench = next((r.get("benchmark") for r in leaderboard if r.get("benchmark")), None)
    sharpes = {name: _per_period_sharpe(r) for name, r in returns.items()}
    trials = [s for name, s in sharpes.items() if name != bench and math.isfinite(s)]
    bench_sharpe = next((r.get("sharpe") for r in leaderboard if r["model"] == bench), None)
    models: dict[str, Any] = {}
    for rank, row in enumerate(leaderboard, start=1):
        name = row["model"]
        ds = deflated_sharpe_ratio(returns[name], trials or [sharpes[name]])
        models[name] = {
            "origin": origin.get(name, name),
            "rank": rank,
            **{m: _number(row.get(m)) for m in METRICS},
            "beats_benchmark_sharpe": (None if name == bench or bench_sharpe is None or row.get("sharpe") is None
                                       else bool(row["sharpe"] > bench_sharpe)),
            "beats_benchmark_test": row.get("beats_benchmark"),
            "sr_per_period": _number(ds.sharpe),
            "skew": _number(ds.skew),
            "kurtosis": _number(ds.kurtosis),
            "n_returns": int(ds.n),
            "psr": _number(ds.psr),
            "dsr": None if name == bench else _number(ds.dsr),
            "sr0": None if name == bench else _number(ds.sr0),
            "regimes": row.get("regimes") or {},
        }
    return {**arena, "benchmark": bench, "n_trials": len(trials), "models": models}


def _per_period_sharpe(r: np.ndarray) -> float:
    r = np.asarray(r, dtype=np.float64)
    r = r[~np.isnan(r)]
    if r.size < 2 or r.max() == r.min():
        return math.nan
    return float(r.mean() / r.std(ddof=1))


def _number(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def verdict(summaries: Sequence[dict[str, Any]], *, level: float = 0.95) -> dict[str, Any]:
    """Every model's record across ``summaries`` (the arenas that finished, in the plan's order)."""
    names = list(dict.fromkeys(n for s in summaries for n in s["models"]))
    bench = next((s["benchmark"] for s in summaries if s.get("benchmark")), None)
    models = {}
    for name in names:
        rows = [s["models"][name] for s in summaries if name in s["models"]]
        models[name] = _record(name, rows, bench, level)
    order = sorted(names, key=lambda n: (-_or(models[n]["metrics"]["sharpe"]["median"]), n))
    return {
        "n_arenas": len(summaries),
        "markets": sorted({s["market"] for s in summaries}),
        "benchmark": bench,
        "significance_level": level,
        "ranking": order,
        "models": {n: models[n] for n in order},
        "arenas": [{"id": s["id"], "market": s["market"], "seed": s["seed"], "window": s["window"],
                    "n_trials": s["n_trials"],
                    "ranks": {n: m["rank"] for n, m in s["models"].items()},
                    "sharpe": {n: m["sharpe"] for n, m in s["models"].items()}} for s in summaries],
    }


def _record(name: str, rows: list[dict[str, Any]], bench: str | None, level: float) -> dict[str, Any]:
    metrics = {m: _distribution([r[m] for r in rows]) for m in METRICS}
    ranks = np.array([r["rank"] for r in rows], dtype=np.float64)
    is_bench = name == bench
    beats = [r["beats_benchmark_sharpe"] for r in rows]
    tested = [r["beats_benchmark_test"] for r in rows if r["beats_benchmark_test"] is not None]
    dsr = [r["dsr"] for r in rows if r["dsr"] is not None]
    significant = [d >= level for d in dsr]
    pass_all = (not is_bench) and bool(rows) and all(b is True for b in beats)
    if is_bench:
        word = "benchmark"
    elif pass_all and significant and all(significant) and len(significant) == len(rows):
        word = "robust"
    elif not any(significant):
        word = "noise"
    else:
        word = "mixed"
    return {
        "origin": rows[0]["origin"] if rows else name,
        "n_arenas": len(rows),
        "metrics": metrics,
        "win_rate_vs_benchmark": None if is_bench else _share([b is True for b in beats]),
        "significant_vs_benchmark": None if is_bench or not tested else _share(tested),
        "mean_rank": float(ranks.mean()) if ranks.size else None,
        "rank_std": float(ranks.std()) if ranks.size else None,
        "psr": _distribution([r["psr"] for r in rows]),
        "dsr": None if is_bench else _distribution(dsr),
        "dsr_significant_share": None if is_bench else _share(significant),
        # per regime, the distribution across arenas of the Sharpe ratio over the bars of that regime
        "regimes": {r: _distribution([(row.get("regimes") or {}).get(r, {}).get("sharpe") for row in rows])
                    for r in sorted({r for row in rows for r in (row.get("regimes") or {})})},
        "pass_all": pass_all,
        "verdict": word,
    }


def _distribution(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Median, quartiles and worst (lowest) of the finite values, and how many there were."""
    x = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return {"median": None, "q25": None, "q75": None, "worst": None, "n": 0}
    q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "worst": float(x.min()), "n": int(x.size)}


def _share(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def _or(x: float | None) -> float:
    return x if x is not None else -math.inf
