"""Running an arena: actors up, replay pipelined through them, results written.

``run_arena`` starts (or joins) Ray, creates one ``MarketDataActor``, one ``ModelActor`` per
competitor and one ``LedgerActor``, and drives the replay:

    bars_ref = market.next_chunk()              # one object in the store per chunk
    decisions = [m.decide(bars_ref) for m]      # fanned out by reference
    ledger.apply(seq, bars_ref, *decisions)     # Ray resolves the refs; actors keep call order

Up to ``replay.max_in_flight`` chunks are in the pipeline at once, so models work on chunk k+1
while the ledger books chunk k. The driver holds references only; bars never pass through it.
"""

from __future__ import annotations

import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

import titan_ray
from titan_ray.arena import results as out
from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.config import ArenaConfig, config_to_dict
from titan_ray.data.actor import MarketDataActor
from titan_ray.data.calendar import format_frequency, periods_per_year
from titan_ray.data.providers import DataError
from titan_ray.ledger.actor import LedgerActor
from titan_ray.ledger.engine import ModelResults
from titan_ray.models.actor import ModelActor


@dataclass(frozen=True)
class Progress:
    """What the driver knows while the replay runs; given to the ``on_progress`` callback."""

    done_timestamps: int
    total_timestamps: int
    n_symbols: int
    elapsed: float
    snapshot: list[dict[str, Any]] | None  # light leaderboard, refreshed every ``snapshot_every`` s


@dataclass(frozen=True)
class ArenaRun:
    leaderboard: list[dict[str, Any]]
    results: dict[str, ModelResults]
    run_info: dict[str, Any]
    out_dir: Path | None


def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5, check=False,
        ).stdout.strip()
    except OSError:
        sha = ""
    return f"{titan_ray.__version__}+{sha}" if sha else titan_ray.__version__


def ensure_ray(address: str | None) -> bool:
    """Connect to Ray (a cluster at ``address``, or a private local one); True if we started it."""
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    return True


def run_arena(
    config: ArenaConfig,
    out_dir: Path | None = None,
    *,
    address: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    snapshot_every: float = 0.5,
    clock: Callable[[], float] = time.perf_counter,
) -> ArenaRun:
    wall_start = clock()
    started_ray = ensure_ray(address)
    actors: list[Any] = []
    try:
        market = MarketDataActor.options(num_cpus=0).remote(config.data, config.seed, config.replay)
        actors.append(market)
        info = ray.get(market.info.remote())
        if "error" in info:
            raise DataError(info["error"])
        symbols = tuple(info["symbols"])
        periods = periods_per_year(info["frequency"], info["calendar"])
        models = {
            spec.name: ModelActor.options(num_cpus=spec.num_cpus).remote(spec, symbols, config.seed)
            for spec in config.models
        }
        actors.extend(models.values())
        model_info = dict(zip(models, ray.get([m.info.remote() for m in models.values()]), strict=True))
        ledger = LedgerActor.options(num_cpus=0).remote(
            config.ledger, config.risk, symbols, info["calendar"],
            {name: mi["long_only"] for name, mi in model_info.items()}, periods,
        )
        actors.append(ledger)

        replay_start = clock()
        for _ in range(info["n_warmup_chunks"]):
            bars = market.next_chunk.remote()
            for m in models.values():
                m.observe.remote(bars)
        total = info["n_timestamps"] - info["warmup_bars"]
        done, seq, last_snap = 0, 0, clock()
        in_flight: deque[Any] = deque()

        size = config.replay.chunk_size

        def settle(ref: Any) -> None:
            nonlocal done, last_snap
            ack = ray.get(ref)
            done = min(total, (ack["seq"] + 1) * size)
            if on_progress is not None:
                snap = None
                if clock() - last_snap >= snapshot_every or done == total:
                    snap, last_snap = ray.get(ledger.snapshot.remote()), clock()
                on_progress(Progress(done, total, len(symbols), clock() - replay_start, snap))

        for _ in range(info["n_chunks"] - info["n_warmup_chunks"]):
            bars = market.next_chunk.remote()
            decisions = [m.decide.remote(bars) for m in models.values()]
            in_flight.append(ledger.apply.remote(seq, bars, *decisions))
            seq += 1
            while len(in_flight) >= config.replay.max_in_flight:
                settle(in_flight.popleft())
        while in_flight:
            settle(in_flight.popleft())
        replay_seconds = clock() - replay_start
        busy = {"ledger": ray.get(ledger.busy_seconds.remote())}
        busy.update(zip(models, ray.get([m.busy_seconds.remote() for m in models.values()]), strict=True))
        results: dict[str, ModelResults] = ray.get(ledger.results.remote())
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_ray:
            ray.shutdown()

    leaderboard = build_leaderboard(config, results, periods)
    n_bars = info["n_bars"]
    run_info = {
        "config": config_to_dict(config),
        "seed": config.seed,
        "code_version": code_version(),
        "data_source": info["source"],
        "frequency": format_frequency(info["frequency"]),
        "calendar": info["calendar"],
        "periods_per_year": periods,
        "n_symbols": len(symbols),
        "n_timestamps": info["n_timestamps"],
        "n_bars": n_bars,
        "warmup_bars": info["warmup_bars"],
        "rejected_bars": info["n_rejected"],
        "rejected_bars_by_rule": info["rejected_counts"],
        "rejected_bars_sample": info["rejected_sample"],
        "skipped_chunks": {name: r.skipped_chunks for name, r in results.items() if r.skipped_chunks},
        "replay_seconds": replay_seconds,
        "wall_seconds": clock() - wall_start,
        "bars_per_second": n_bars / replay_seconds if replay_seconds > 0 else None,
        "busy_seconds": busy,  # time each actor spent working during the replay
    }
    if out_dir is not None:
        write_results(Path(out_dir), leaderboard, results, run_info)
        run_info["wall_seconds"] = clock() - wall_start
        out.write_json(Path(out_dir) / "run.json", run_info)
    return ArenaRun(leaderboard, results, run_info, Path(out_dir) if out_dir is not None else None)


def write_results(
    out_dir: Path, leaderboard: list[dict[str, Any]], results: dict[str, ModelResults], run_info: dict[str, Any]
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_json(out_dir / "leaderboard.json", leaderboard)
    out.equity_frame(results).to_parquet(out_dir / "equity.parquet", index=False)
    out.trades_frame(results).to_parquet(out_dir / "trades.parquet", index=False)
    out.orders_frame(results).to_parquet(out_dir / "orders.parquet", index=False)
    out.decisions_frame(results).to_parquet(out_dir / "decisions.parquet", index=False)
    out.write_json(out_dir / "run.json", run_info)
    title = f"TitanRay arena · {run_info['n_symbols']} symbols · {run_info['frequency']} bars · seed {run_info['seed']}"
    out.plot_equity(results, out_dir / "equity.png", title=title)
