"""Running an arena: actors up, chunks through the pipeline, the results and their report written.

``run_arena`` composes three parts, each in its own module:

- ``arena/cluster.py`` makes every Ray call: it starts (or joins) Ray, creates the market-data
  actor, one model actor per competitor, the ledger, the watchdog and the paper check, places them,
  and is the pipeline's port onto them;
- ``arena/pipeline.py`` drives the chunks through them, pipelined, each with a decision deadline
  (a late or dead model skips it), and reports progress. A ``ReplaySource`` books the history; a
  ``LiveSource`` (``arena/live.py``) books an unbounded stream one bar at a time, with the
  leaderboard refreshed after every bar, until a bar limit, a time limit, the feed's end, or Ctrl-C;
- ``arena/report.py``'s ``RunReport`` records the run: written as run.json, returned as
  ``ArenaRun.run_info``. Its ``phases`` split the wall time, measured here on the injected clock:
  start-up (Ray, the actors) and the data load until the cluster is ready, the replay, the results
  (collected from the ledger, then the leaderboard and the folder), and what the shutdown added:
  the folder is written on a background thread while the actors stop and Ray shuts down, which is
  mostly waiting for processes to exit.

``resume`` continues a run from its journal: replay starts at the first chunk the journal does not
hold. The bars, fills and leaderboard also go to Redis (``redis.url``) through the sink the actors
are given (``arena/publish.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from titan_ray.arena import results as out
from titan_ray.arena.cluster import ArenaCluster, ClusterFinish, arena_cluster
from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.arena.live import LiveSource, write_paper_report
from titan_ray.arena.pipeline import Progress, ReplayOutcome, ReplaySource, run_pipeline
from titan_ray.arena.publish import RedisPublisher
from titan_ray.arena.report import LiveSummary, Phases, RunReport
from titan_ray.arena.views import portfolio_record
from titan_ray.config import ArenaConfig, ConfigError, config_to_dict, resolve_url
from titan_ray.data.cache import default_cache_root
from titan_ray.domain.calendar import format_frequency
from titan_ray.ledger.engine import ModelResults
from titan_ray.models.llm import DEFAULT_CACHE as DEFAULT_LLM_CACHE
from titan_ray.models.llm_client import cache_only_from_env
from titan_ray.models.params import LlmParams
from titan_ray.provenance import code_version
from titan_ray.tracking import checked_uri, log_run


@dataclass(frozen=True)
class ArenaRun:
    leaderboard: list[dict[str, Any]]
    results: dict[str, ModelResults]
    run_info: dict[str, Any]  # ``report.to_dict()``: what run.json holds
    out_dir: Path | None
    report: RunReport
    tracked: str | None = None  # the run's MLflow URL when tracking is on


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
    checked_uri(config.tracking.mlflow_uri)  # a bad setting fails before the run, not after it
    wall_start = clock()
    run_id = run_id or uuid.uuid4().hex[:12]
    version = code_version()
    if out_dir is not None and not resume:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        out.write_json(Path(out_dir) / "config.json", {"run_id": run_id, "config": config_to_dict(config),
                                                       "code_version": version})
    redis_url = resolve_url(config.redis.url, "redis.url")
    sink = RedisPublisher(redis_url, run_id) if redis_url is not None else None  # each actor connects on its own
    config = _llm_settings(_local_paths_absolute(config), out_dir)
    journal = journal_spec(config, out_dir, run_id)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="arena-results") as background:
        with arena_cluster(config, address=address, run_id=run_id, journal=journal, sink=sink) as cluster:
            ready = clock()
            if on_actors is not None:
                on_actors(cluster.handles())
            n_warm = cluster.info["n_warmup_chunks"]
            first = n_warm + (cluster.last_seq() + 1 if resume else 0)
            live = LiveSource(cluster.feed, config.live, clock) if config.live is not None else None
            source = live if live is not None else _replay_source(config, cluster, snapshot_every)
            replay = run_pipeline(
                cluster, source, n_warmup_chunks=n_warm, first=first,
                decision_timeout=config.replay.decision_timeout_s, n_symbols=len(cluster.symbols), clock=clock,
                on_progress=on_progress, paper=cluster.paper,
            )
            replayed = clock()
            end = cluster.finish()
            # The leaderboard and the results folder are made while the actors stop and Ray shuts
            # down: the shutdown mostly waits for processes to exit, so the two overlap almost freely.
            wrapping_up = background.submit(_wrap_up, config, cluster.periods, end, out_dir, clock)
        leaderboard, written = wrapping_up.result()
    now = clock()
    # the market actor times its own load (it runs before the actors after it are created)
    marks = _Marks(wall_start, ready, replayed, written, data=float(end.info.get("load_seconds", 0.0)))
    report = _report(config, run_id, version, cluster, end, replay, live, first - n_warm if resume else None,
                     wall_seconds=now - wall_start, phases=marks.phases(now))
    if out_dir is not None:
        out.write_json(Path(out_dir) / "run.json", report.to_dict())
    tracked = _track(config, run_id, leaderboard, report.to_dict(), out_dir)
    _raise_llm_errors(end.accounts)
    return ArenaRun(leaderboard, end.results, report.to_dict(), Path(out_dir) if out_dir is not None else None,
                    report, tracked)


TRACKED = ("total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "profit_factor", "win_rate",
           "n_trades", "turnover", "sharpe_vs_benchmark_p")


def _track(config: ArenaConfig, run_id: str, leaderboard: list[dict[str, Any]], run_info: dict[str, Any],
           out_dir: Path | None) -> str | None:
    """The run in MLflow when ``tracking.mlflow_uri`` (or $MLFLOW_TRACKING_URI) is set: the config as
    params, each model's leaderboard metrics as ``MODEL.METRIC``, the results files as artefacts."""
    metrics: dict[str, Any] = {f"{row['model']}.{k}": row.get(k) for row in leaderboard for k in TRACKED}
    metrics |= {"wall_seconds": run_info.get("wall_seconds"), "bars": run_info.get("n_bars")}
    files = [Path(out_dir) / f for f in ("leaderboard.json", "run.json", "equity.png")] if out_dir else []
    return log_run(config.tracking.mlflow_uri, "titan-ray-arena", run_id,
                   params={**config_to_dict(config), "run_id": run_id}, metrics=metrics, artifacts=files,
                   tags={"titan_ray.kind": "arena"})


def _wrap_up(
    config: ArenaConfig, periods: float, end: ClusterFinish, out_dir: Path | None, clock: Callable[[], float],
) -> tuple[list[dict[str, Any]], float]:
    """The leaderboard, and the results folder (but run.json) written: the leaderboard and when it was done."""
    extra = {name: a["leaderboard"] for name, a in end.accounts.items() if "leaderboard" in a}
    leaderboard = build_leaderboard(config, end.results, periods, regimes=end.regimes, extra=extra)
    if out_dir is not None:
        calls = {name: a["calls"] for name, a in end.accounts.items() if "calls" in a}
        if calls:  # every LLM request's record: member, status, error, tokens, latency, cost, answer
            out.write_json(Path(out_dir) / "llm_calls.json", calls)
        if end.paper_report is not None:
            write_paper_report(Path(out_dir), end.paper_report)
        title = _title(len(end.info["symbols"]), format_frequency(end.info["frequency"]), config.seed)
        write_folder(Path(out_dir), leaderboard, end.results, title=title)
    return leaderboard, clock()


@dataclass(frozen=True)
class _Marks:
    """The runner's clock at the turns of a run, and the market's own load time: the phases' raw data."""

    start: float
    ready: float  # Ray up, the actors created, the bars loaded
    replayed: float  # the last chunk booked
    written: float  # the results collected from the ledger, the leaderboard made, the folder written
    data: float  # the market actor's load time, which ``start..ready`` includes

    def phases(self, now: float) -> Phases:
        """The phases up to ``now``; the shutdown ran while the results were written, and counts what it added."""
        before = self.ready - self.start
        data = min(max(self.data, 0.0), before)
        return Phases(startup=before - data, data=data, replay=self.replayed - self.ready,
                      results=self.written - self.replayed, shutdown=max(0.0, now - self.written))


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


def _local_paths_absolute(config: ArenaConfig) -> ArenaConfig:
    """``data.path`` made absolute on the driver, so an actor's working directory cannot change it."""
    data = config.data
    if data.provider == "alpaca" and data.cache.enabled:  # the bar cache is a local folder too
        cache = data.cache.model_copy(update={"path": str(default_cache_root(data.cache.path).resolve())})
        data = data.model_copy(update={"cache": cache})
    if data.path is not None:
        data = data.model_copy(update={"path": str(Path(data.path).expanduser().resolve())})
    return config if data is config.data else config.model_copy(update={"data": data})


def _llm_settings(config: ArenaConfig, out_dir: Path | None) -> ArenaConfig:
    """Each ``llm`` model's ``cache_dir`` made absolute on the driver (default: ``llm_cache`` in the results
    folder, ``./llm_cache`` without one), and cache-only mode (``TITAN_RAY_LLM_CACHE_ONLY``, set by
    ``--llm-cache-only``) written into its params, so actors of a Ray started before it was set obey it too."""
    models, changed = [], False
    for m in config.models:
        if m.kind == "llm":
            timeout = float(m.params.get("timeout_s", LlmParams.model_fields["timeout_s"].default))
            if timeout >= config.replay.decision_timeout_s:
                raise ConfigError(f"model {m.name!r}: params.timeout_s ({timeout:g}) must be well under "
                                  f"replay.decision_timeout_s ({config.replay.decision_timeout_s:g}), the deadline of "
                                  "a whole chunk: lower timeout_s or raise decision_timeout_s")
            folder = m.params.get("cache_dir") or (Path(out_dir) / DEFAULT_LLM_CACHE if out_dir is not None
                                                  else DEFAULT_LLM_CACHE)
            params = {**m.params, "cache_dir": str(Path(folder).expanduser().resolve())}
            if cache_only_from_env():
                params["cache_only"] = True
            m, changed = m.model_copy(update={"params": params}), True
        models.append(m)
    return config.model_copy(update={"models": models}) if changed else config


def _raise_llm_errors(accounts: dict[str, dict[str, Any]]) -> None:
    """A run whose LLM model met an error that needs a person (a cache miss in cache-only mode, naming the
    cache folder; a key variable not set; a 4xx such as a bad key) failed: its chunks were skipped, so
    its results are incomplete. Say so with the model's first such error."""
    errors = [f"model {name!r}: {a['error']}" for name, a in accounts.items() if a.get("error")]
    if errors:
        raise ConfigError("; ".join(errors))


def _replay_source(config: ArenaConfig, cluster: ArenaCluster, snapshot_every: float) -> ReplaySource:
    """The history's trading chunks, pipelined: half of ``max_in_flight`` wait for decisions, half for the ledger."""
    info = cluster.info
    return ReplaySource(
        n_chunks=info["n_chunks"], chunk_size=info["chunk_size"],
        total=info["n_timestamps"] - info["warmup_bars"], depth=max(1, config.replay.max_in_flight // 2),
        snapshot_every=snapshot_every,
    )


def _report(
    config: ArenaConfig, run_id: str, version: str, cluster: ArenaCluster, end: ClusterFinish,
    replay: ReplayOutcome, live: LiveSource | None, resumed_from: int | None, *, wall_seconds: float,
    phases: Phases,
) -> RunReport:
    info, seconds = end.info, replay.seconds
    return RunReport(
        run_id=run_id,
        config=config_to_dict(config),
        seed=config.seed,
        code_version=version,
        data_source=info["source"],
        frequency=format_frequency(info["frequency"]),
        calendar=info["calendar"],
        periods_per_year=cluster.periods,
        n_symbols=len(cluster.symbols),
        n_timestamps=info["n_timestamps"],
        n_bars=info["n_bars"],
        warmup_bars=info["warmup_bars"],
        rejected_bars=info["n_rejected"],
        rejected_bars_by_rule=info["rejected_counts"],
        rejected_bars_sample=info["rejected_sample"],
        resumed_from_chunk=resumed_from,
        skipped_chunks={name: r.skipped_chunks for name, r in end.results.items() if r.skipped_chunks},
        model_failures=end.failures,
        alerts=end.alerts,
        replay_seconds=seconds,
        wall_seconds=wall_seconds,
        phases=phases,
        # a resumed run replayed only part of the bars: a rate over all of them would flatter it
        bars_per_second=info["n_bars"] / seconds if seconds > 0 and resumed_from is None else None,
        busy_seconds=end.busy,
        journal_seconds=end.journal_seconds,
        ledger_memory=end.ledger_memory,
        placement=cluster.placement,
        live=None if live is None else LiveSummary(
            stopped_by=live.stop.reason, bars=replay.done, reconnects=info.get("reconnects"),
            backfilled_bars=info.get("backfilled_bars"), late_bars=info.get("late_bars"),
        ),
        paper_check=end.paper_report["summary"] if end.paper_report is not None else None,
    )


def write_results(
    out_dir: Path, leaderboard: list[dict[str, Any]], results: dict[str, ModelResults], run_info: dict[str, Any]
) -> None:
    """The whole results folder, ``run_info`` as run.json."""
    title = _title(run_info["n_symbols"], run_info["frequency"], run_info["seed"])
    write_folder(out_dir, leaderboard, results, title=title)
    out.write_json(out_dir / "run.json", run_info)


def _title(n_symbols: int, frequency: str, seed: int) -> str:
    return f"TitanRay arena · {n_symbols} symbols · {frequency} bars · seed {seed}"


def write_folder(
    out_dir: Path, leaderboard: list[dict[str, Any]], results: dict[str, ModelResults], *, title: str
) -> None:
    """The results folder but run.json, which the runner writes last (it times the rest)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_json(out_dir / "leaderboard.json", leaderboard)
    out.write_json(out_dir / "portfolios.json", {name: portfolio_record(r) for name, r in results.items()})
    out.equity_frame(results).to_parquet(out_dir / "equity.parquet", index=False)
    out.trades_frame(results).to_parquet(out_dir / "trades.parquet", index=False)
    out.orders_frame(results).to_parquet(out_dir / "orders.parquet", index=False)
    out.decisions_frame(results).to_parquet(out_dir / "decisions.parquet", index=False)
    out.plot_equity(results, out_dir / "equity.png", title=title)
