"""Run a tournament: its arenas as Ray tasks, a bounded number at once, resumable, then the verdict.

``run_tournament(tournament, out_dir)``:

1. ``grid.plan`` lists the arenas (and writes windowed markets once, under ``out_dir/markets``);
   ``out_dir/tournament_config.json`` keeps the tournament as given, for ``--resume``.
2. Arenas whose folder holds ``summary.json`` are done and are not run again (``--resume``); an arena
   folder without it (one interrupted half-way) is cleared and run anew.
3. The rest run as Ray tasks (``_play``: ``run_arena`` inside a worker, on whichever node Ray
   picks, then the arena's scores), at most ``max_in_flight`` at once, fewer when the arenas'
   models reserve CPUs and the cluster has fewer than that many arenas' worth (an arena that
   could not be placed would fail, not wait). Each finished arena's summary is written as it
   arrives (atomically: a crash leaves none or a whole one); a failed arena's error goes to its
   ``error.txt`` and the others go on.
4. ``tournament.json`` is the verdict over the summaries read back from disk in the plan's order,
   written with sorted keys: the same arenas give the same bytes, resumed or not. What varies from
   run to run (seconds, the failures' tracebacks) is in ``tournament_run.json`` instead.
   ``report.html`` shows the verdict with its plots (``tournament/report.py``).

``on_event`` hears each arena start and end (the command's progress bar); the clock is injected.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray

from titan_ray.arena.runner import run_arena
from titan_ray.config import parse_config
from titan_ray.data.providers import make_provider
from titan_ray.data.synthetic import true_regimes
from titan_ray.metrics.performance import returns_from_equity
from titan_ray.metrics.regimes import accuracy, classify, market_index
from titan_ray.ray_session import ray_connected
from titan_ray.tournament.grid import Arena, plan
from titan_ray.tournament.report import write_report
from titan_ray.tournament.spec import Tournament
from titan_ray.tournament.verdict import score_arena, verdict

SUMMARY = "summary.json"


@dataclass(frozen=True)
class Event:
    """What the progress display hears: an arena ``started``, ``finished`` or ``failed``."""

    kind: str
    arena: str
    done: int  # arenas finished so far (failed included), resumed ones included
    total: int
    seconds: float  # since the tournament started
    detail: str = ""


@dataclass(frozen=True)
class TournamentRun:
    verdict: dict[str, Any]
    failed: dict[str, str]  # arena id -> error
    skipped: list[str]  # arenas already done (resume)
    seconds: float
    in_flight: int


def run_tournament(tournament: Tournament, out_dir: Path, *, address: str | None = None,
                   on_event: Callable[[Event], None] | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> TournamentRun:
    start = clock()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arenas = plan(tournament, out_dir)
    done = [a for a in arenas if (_folder(out_dir, a) / SUMMARY).exists()]
    todo = [a for a in arenas if a not in done]
    failed: dict[str, str] = {}
    emit = on_event or (lambda _e: None)
    with ray_connected(address):
        limit = _in_flight(tournament, todo)
        pending: dict[Any, Arena] = {}
        queue = list(todo)
        finished = len(done)
        while queue or pending:
            while queue and len(pending) < limit:
                a = queue.pop(0)
                folder = _folder(out_dir, a)
                shutil.rmtree(folder, ignore_errors=True)  # a half-run arena starts anew
                folder.mkdir(parents=True)
                ref = _play.remote(_identity(a), a.config, str(folder), tournament.origin)
                pending[ref] = a
                emit(Event("started", a.id, finished, len(arenas), clock() - start))
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                a = pending.pop(ref)
                finished += 1
                try:
                    summary = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - one arena's failure is recorded; the rest run
                    failed[a.id] = f"{type(err).__name__}: {err}"
                    (_folder(out_dir, a) / "error.txt").write_text(traceback.format_exc())
                    emit(Event("failed", a.id, finished, len(arenas), clock() - start, failed[a.id][:300]))
                    continue
                _write_json(_folder(out_dir, a) / SUMMARY, summary)
                emit(Event("finished", a.id, finished, len(arenas), clock() - start, _headline(summary)))
    summaries = [json.loads((_folder(out_dir, a) / SUMMARY).read_text()) for a in arenas
                 if (_folder(out_dir, a) / SUMMARY).exists()]
    result = verdict(summaries, level=tournament.config.significance_level)
    result["regime_accuracy"] = _regime_accuracy(tournament, arenas)
    result["failed_arenas"] = sorted(failed) if failed else []
    result["planned_arenas"] = len(arenas)
    _write_json(out_dir / "tournament.json", result)
    write_report(out_dir, result)
    seconds = clock() - start
    _write_json(out_dir / "tournament_run.json", {"seconds": seconds, "arenas_run": len(todo),
                                                  "arenas_resumed": [a.id for a in done], "failed": failed,
                                                  "in_flight": limit if todo else 0})
    return TournamentRun(result, failed, [a.id for a in done], seconds, limit if todo else 0)


def _folder(out_dir: Path, arena: Arena) -> Path:
    return out_dir / "arenas" / arena.id


def _identity(a: Arena) -> dict[str, Any]:
    return {"id": a.id, "market": a.market, "seed": a.seed, "window": a.window}


def _in_flight(tournament: Tournament, todo: list[Arena]) -> int:
    """``max_in_flight``, or as many arenas as the cluster's CPUs hold when the models reserve CPUs."""
    limit = tournament.config.max_in_flight
    if not todo:
        return limit
    need = sum(float(m.get("num_cpus", 0) or 0) for m in todo[0].config.get("models", []))
    if need <= 0:
        return limit
    cpus = float(ray.cluster_resources().get("CPU", 0))
    return max(1, min(limit, math.floor(cpus / need)))


@ray.remote(num_cpus=0, max_retries=0)
def _play(arena: dict[str, Any], config: dict[str, Any], folder: str, origin: dict[str, str]) -> dict[str, Any]:
    """One arena, run in a Ray worker (the arena's actors are placed by the arena, as always); its scores."""
    cfg = parse_config(config, source=f"arena {arena['id']}")
    run = run_arena(cfg, Path(folder))
    initial = float(cfg.ledger.initial_cash)
    returns = {name: returns_from_equity(r.equity, initial) for name, r in run.results.items()}
    return score_arena(arena, run.leaderboard, returns, origin)


def _regime_accuracy(tournament: Tournament, arenas: list[Arena]) -> dict[str, dict[str, float | None]]:
    """The regime classifier against the synthetic markets' true regimes, per market (the whole market)."""
    out: dict[str, dict[str, float | None]] = {}
    for a in arenas:
        if a.market in out or a.market_data.get("provider", "synthetic") != "synthetic":
            continue
        cfg = parse_config({**tournament.base, "seed": a.seed, "data": a.market_data}, source=a.market)
        bars = make_provider(cfg.data, cfg.seed).load().bars
        scores = accuracy(classify(market_index(bars.close)), true_regimes(cfg.data, cfg.seed))
        out[a.market] = {k: (float(v) if math.isfinite(v) else None) for k, v in scores.items()}
    return out


def _headline(summary: dict[str, Any]) -> str:
    best = min(summary["models"].items(), key=lambda kv: kv[1]["rank"])
    sharpe = best[1]["sharpe"]
    return f"best {best[0]} (Sharpe {sharpe:.2f})" if sharpe is not None else f"best {best[0]}"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_plain) + "\n")
    tmp.replace(path)


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON")
