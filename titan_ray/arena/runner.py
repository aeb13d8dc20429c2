"""Running an arena: actors up, replay pipelined through them, results written.

``run_arena`` starts (or joins) Ray, creates one ``MarketDataActor``, one ``ModelActor`` per
competitor, one ``LedgerActor`` and the watchdog, and drives the replay:

    bars = market.next_chunk(k)                      # one object in the store per chunk
    refs = {m: model.decide(bars) for each model}    # fanned out by reference
    ledger.apply(seq, bars, {m: ref or None})        # the decisions that came in by the deadline

Up to ``replay.max_in_flight`` chunks are in the pipeline at once, so models work on chunk k+1
while the ledger books chunk k. The driver holds references only; bars never pass through it.
A chunk waits at most ``replay.decision_timeout_s`` (from when its bars exist) for each model; a
late or dead model skips it. Every actor restarts on its own (``max_restarts``, with retried
calls): the ledger from its journal, a model from the market's history. ``resume`` continues a
run from its journal: replay starts at the first chunk the journal does not hold.

Live mode (``live`` in the config) drives the same actors from an unbounded stream: one chunk
per bar, each booked at once and the leaderboard refreshed after every bar, until a bar limit, a
time limit, the feed's end, or Ctrl-C, after which the results are written as usual
(``arena/live.py``). With ``live.paper`` one model's orders also go to an Alpaca paper account.

On a cluster of several nodes, model actors spread across the nodes (``SPREAD``), and nothing is
written to a local path that another node must read: an actor that touches the driver's files
(the market reading ``data.path``, the ledger journaling to ``journal.sqlite`` in the results
folder) is pinned to the driver's node, and a Redis journal leaves the ledger free to go anywhere.
Where each actor started is recorded in ``run.json`` (``placement``).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from titan_ray.arena import results as out
from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.arena.live import LiveStop, PaperCheck, alpaca_environ, live_chunks, write_paper_report
from titan_ray.arena.monitor import HeartbeatMonitor
from titan_ray.arena.views import portfolio_record
from titan_ray.config import ArenaConfig, ConfigError, config_to_dict, resolve_url
from titan_ray.data.actor import MarketDataActor
from titan_ray.data.providers import DataError
from titan_ray.domain.calendar import format_frequency, periods_per_year
from titan_ray.ledger.actor import LedgerActor
from titan_ray.ledger.engine import ModelResults
from titan_ray.models.actor import ModelActor
from titan_ray.provenance import code_version
from titan_ray.ray_session import ensure_ray
from titan_ray.registry import registered_models


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


@dataclass
class _Chunk:
    seq: int
    bars: Any
    decisions: dict[str, Any]  # model -> ObjectRef of its Decisions, or None when left out


def journal_spec(config: ArenaConfig, out_dir: Path | None, run_id: str) -> dict[str, Any] | None:
    """Where the ledger journals; None when it cannot outlive the ledger (no results folder, memory)."""
    j = config.ledger.journal
    if j.backend == "redis":
        url = resolve_url(j.url or config.redis.url, "ledger.journal.url")
        if url is None:
            raise ConfigError("ledger.journal.backend is redis but no URL is set; set ledger.journal.url")
        return {"backend": "redis", "url": url, "stream": f"titan-ray:{run_id}:journal"}
    if j.backend == "sqlite" and out_dir is not None:
        return {"backend": "sqlite", "path": Path(out_dir).resolve() / "journal.sqlite"}
    return None


def _on_driver_node() -> NodeAffinitySchedulingStrategy:
    """Pins an actor to the driver's node: for actors that read or write the driver's local files."""
    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)


def _local_paths_absolute(config: ArenaConfig) -> ArenaConfig:
    """``data.path`` made absolute on the driver, so an actor's working directory cannot change it."""
    data = config.data
    if data.provider == "alpaca" and data.cache.enabled:  # the bar cache is a local folder too
        from titan_ray.data.cache import default_cache_root

        cache = data.cache.model_copy(update={"path": str(default_cache_root(data.cache.path).resolve())})
        data = data.model_copy(update={"cache": cache})
    if data.path is not None:
        data = data.model_copy(update={"path": str(Path(data.path).expanduser().resolve())})
    return config if data is config.data else config.model_copy(update={"data": data})


def run_arena(
    config: ArenaConfig,
    out_dir: Path | None = None,
    *,
    address: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_actors: Callable[[dict[str, Any]], None] | None = None,
    snapshot_every: float = 0.5,
    resume: bool = False,
    run_id: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ArenaRun:
    """Run (or, with ``resume``, continue from its journal) one arena; see the module docstring.

    ``on_actors`` receives the actor handles once they exist (operations tooling, chaos tests).
    """
    if resume and config.live is not None:
        raise ConfigError("a live run cannot be resumed (the stream has moved on); start a new run")
    wall_start = clock()
    run_id = run_id or uuid.uuid4().hex[:12]
    version = code_version()
    if out_dir is not None and not resume:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        out.write_json(Path(out_dir) / "config.json", {"run_id": run_id, "config": config_to_dict(config),
                                                       "code_version": version})
    redis_url = resolve_url(config.redis.url, "redis.url")
    started_ray = ensure_ray(address)
    config = _local_paths_absolute(config)
    actors: list[Any] = []
    monitor: HeartbeatMonitor | None = None
    try:
        # the market reads the driver's files (data.path, the bar cache): keep it beside them
        files = config.data.path is not None or config.data.provider == "alpaca"
        environ = alpaca_environ() if config.data.provider == "alpaca" else None
        # a live feed cannot be rebuilt after a crash (the stream has moved on): it fails loudly instead
        restarts = 0 if config.live is not None else -1
        market = MarketDataActor.options(
            num_cpus=0, max_restarts=restarts, max_task_retries=restarts,
            scheduling_strategy=_on_driver_node() if files else "DEFAULT",
        ).remote(config.data, config.seed, config.replay, redis_url, run_id, config.live, environ)
        actors.append(market)
        info = ray.get(market.info.remote())
        if "error" in info:
            raise DataError(info["error"])
        symbols = tuple(info["symbols"])
        periods = periods_per_year(info["frequency"], info["calendar"])
        trained = registered_models(config, symbols)  # models given as `artifact:`, loaded on the driver
        models = {
            spec.name: ModelActor.options(
                num_cpus=spec.num_cpus, max_restarts=-1, max_task_retries=-1, scheduling_strategy="SPREAD",
            ).remote(spec, symbols, config.seed, market, info["warmup_bars"], prototype=trained.get(spec.name))
            for spec in config.models
        }
        actors.extend(models.values())
        model_info = dict(zip(models, ray.get([m.info.remote() for m in models.values()]), strict=True))
        journal = journal_spec(config, out_dir, run_id)
        ledger = LedgerActor.options(
            num_cpus=0, max_restarts=-1, max_task_retries=-1,
            # a SQLite journal is a file in the driver's results folder: the ledger (and any restart of
            # it) must run where that file is, and --resume reads it there
            scheduling_strategy=_on_driver_node() if journal and journal["backend"] == "sqlite" else "DEFAULT",
        ).remote(
            config.ledger, config.risk, symbols, info["calendar"],
            {name: mi["long_only"] for name, mi in model_info.items()}, periods,
            journal, redis_url, run_id,
        )
        actors.append(ledger)
        placement = {
            "driver": ray.get_runtime_context().get_node_id(),
            "market": info["node_id"],
            "ledger": ray.get(ledger.node_id.remote()),
            "models": {name: mi["node_id"] for name, mi in model_info.items()},
        }
        if config.watchdog.enabled:
            monitor = HeartbeatMonitor(config.watchdog, models, ledger)
            actors.append(monitor.watchdog)
            monitor.start()
        live, stop, paper = config.live, LiveStop(), None
        if live is not None and live.paper is not None:
            paper = PaperCheck(config, symbols, int(info["frequency"].value), run_id, environ or {})
            actors.append(paper.actor)
        if on_actors is not None:
            on_actors({"market": market, "ledger": ledger, "models": dict(models),
                       "watchdog": monitor.watchdog if monitor else None})

        n_warm, n_chunks = info["n_warmup_chunks"], info["n_chunks"]
        first = n_warm
        if resume:
            first = n_warm + ray.get(ledger.last_seq.remote()) + 1
        replay_start = clock()
        if first == n_warm:
            for k in range(n_warm):
                bars = market.next_chunk.remote(k)
                for m in models.values():
                    m.observe.remote(bars)
        total = info["n_timestamps"] - info["warmup_bars"]
        size = config.replay.chunk_size
        depth = max(1, config.replay.max_in_flight // 2)
        chunk_indices: Any = range(first, n_chunks or 0)
        if live is not None:  # one bar per chunk, booked and shown at once; total 0 = unbounded
            total, size, depth, snapshot_every = live.max_bars or 0, 1, 0, 0.0
            chunk_indices = live_chunks(market, first, live, clock, stop)
        done, last_snap = min(total, (first - n_warm) * size), clock()
        snap: list[dict[str, Any]] | None = None
        skipped: dict[str, int] = {}
        pending: deque[_Chunk] = deque()
        acks: deque[Any] = deque()
        timeout = config.replay.decision_timeout_s

        def hand_to_ledger() -> None:
            """The oldest chunk goes to the ledger with the decisions that are in by its deadline."""
            c = pending.popleft()
            # The deadline runs from when the bars exist: a paced feed releases them on its own clock.
            ray.wait([c.bars], fetch_local=False)
            waiting = [r for r in c.decisions.values() if r is not None]
            ready: set[Any] = set()
            if waiting:
                got, _ = ray.wait(waiting, num_returns=len(waiting), timeout=timeout, fetch_local=False)
                ready = set(got)
            args = {n: (r if r is not None and r in ready else None) for n, r in c.decisions.items()}
            acks.append(ledger.apply.remote(c.seq, c.bars, args))

        def settle() -> None:
            nonlocal done, last_snap, snap
            ack = ray.get(acks.popleft())
            for name in ack.get("skipped", ()):
                skipped[name] = skipped.get(name, 0) + 1
            done = (ack["seq"] + 1) * size if live is not None else min(total, (ack["seq"] + 1) * size)
            if paper is not None:
                snap, last_snap = ray.get(ledger.snapshot.remote()), clock()
            if on_progress is not None:
                fresh = None
                if paper is not None:
                    fresh = snap
                elif clock() - last_snap >= snapshot_every or done == total:
                    fresh = snap = ray.get(ledger.snapshot.remote())
                    last_snap = clock()
                on_progress(Progress(done, total, len(symbols), clock() - replay_start, fresh))

        try:
            for k in chunk_indices:
                bars = market.next_chunk.remote(k)
                removed = monitor.removed if monitor else set()
                chunk = _Chunk(
                    seq=k - n_warm, bars=bars,
                    decisions={n: (None if n in removed else m.decide.remote(bars)) for n, m in models.items()},
                )
                pending.append(chunk)
                while len(pending) > depth:
                    hand_to_ledger()
                while len(acks) > depth:
                    settle()
                if paper is not None:
                    paper.on_chunk(chunk.bars, chunk.decisions.get(paper.model), snap)
        except KeyboardInterrupt:
            if live is None:
                raise
            stop.reason = "interrupted (Ctrl-C)"  # what is in flight is still booked, then results are written
        while pending:
            hand_to_ledger()
        while acks:
            settle()
        replay_seconds = clock() - replay_start
        busy = {"ledger": ray.get(ledger.busy_seconds.remote())}
        busy.update(zip(models, ray.get([m.busy_seconds.remote() for m in models.values()]), strict=True))
        failures = ray.get(ledger.failures.remote())
        results: dict[str, ModelResults] = ray.get(ledger.results.remote())
        ray.get(ledger.close.remote())
        if live is not None:
            ray.get(market.close.remote())
            info = {**info, **ray.get(market.info.remote())}  # the bars that arrived
        paper_report = paper.finish(results[paper.model].fills) if paper is not None else None
        alerts = monitor.stop() if monitor else []
        monitor = None
    finally:
        if monitor is not None:
            monitor.stop()
        for actor in actors:
            ray.kill(actor)
        if started_ray:
            ray.shutdown()

    leaderboard = build_leaderboard(config, results, periods)
    n_bars = info["n_bars"]
    run_info = {
        "run_id": run_id,
        "config": config_to_dict(config),
        "seed": config.seed,
        "code_version": version,
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
        "resumed_from_chunk": (first - n_warm) if resume else None,
        "skipped_chunks": {name: r.skipped_chunks for name, r in results.items() if r.skipped_chunks},
        "model_failures": failures,
        "alerts": alerts,
        "replay_seconds": replay_seconds,
        "wall_seconds": clock() - wall_start,
        "bars_per_second": n_bars / replay_seconds if replay_seconds > 0 and not resume else None,
        "busy_seconds": busy,  # time each actor spent working during the replay
        "placement": placement,  # the Ray node id each actor started on
        "live": None if live is None else {
            "stopped_by": stop.reason, "bars": done, "reconnects": info.get("reconnects"),
            "backfilled_bars": info.get("backfilled_bars"), "late_bars": info.get("late_bars"),
        },
        "paper_check": paper_report["summary"] if paper_report is not None else None,
    }
    if out_dir is not None:
        if paper_report is not None:
            write_paper_report(Path(out_dir), paper_report)
        write_results(Path(out_dir), leaderboard, results, run_info)
        run_info["wall_seconds"] = clock() - wall_start
        out.write_json(Path(out_dir) / "run.json", run_info)
    return ArenaRun(leaderboard, results, run_info, Path(out_dir) if out_dir is not None else None)


def write_results(
    out_dir: Path, leaderboard: list[dict[str, Any]], results: dict[str, ModelResults], run_info: dict[str, Any]
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_json(out_dir / "leaderboard.json", leaderboard)
    out.write_json(out_dir / "portfolios.json", {name: portfolio_record(r) for name, r in results.items()})
    out.equity_frame(results).to_parquet(out_dir / "equity.parquet", index=False)
    out.trades_frame(results).to_parquet(out_dir / "trades.parquet", index=False)
    out.orders_frame(results).to_parquet(out_dir / "orders.parquet", index=False)
    out.decisions_frame(results).to_parquet(out_dir / "decisions.parquet", index=False)
    out.write_json(out_dir / "run.json", run_info)
    title = f"TitanRay arena · {run_info['n_symbols']} symbols · {run_info['frequency']} bars · seed {run_info['seed']}"
    out.plot_equity(results, out_dir / "equity.png", title=title)
