"""Arena throughput: bars per second through the full actor pipeline, next to backtrader.

What is measured
----------------
*TitanRay*: ``titan_ray.arena.runner.run_arena`` on a real local Ray (started here, timed on
its own), with a synthetic universe of ``--symbols`` x ``--timestamps`` 15-minute bars and the
four baseline models (``sma_crossover`` 10/30, ``rsi_reversion``, ``buy_and_hold``, ``random``).
Every chunk of ``--chunk-size`` timestamps goes market-data actor -> four model actors ->
ledger actor (validator, risk, fills, commission, portfolios), exactly as in ``titan-ray arena``;
``out_dir=None``, so nothing is written. The figure is the arena's own: ``run_info``'s
``replay_seconds`` (first chunk sent to last chunk booked; Ray start, actor creation and data
generation are excluded) and ``bars_per_second`` = symbols x timestamps / replay_seconds. Because
four models each decide on every bar, "model-bars/s" (bars/s x 4) is printed as well.

*backtrader* (the established event-driven backtester) does the SAME WORK: the same four
baseline models on the same bars, each model its own ``cerebro.run`` with its own broker (the
arena's ledger also keeps one portfolio per model): an SMA(10)/SMA(30) ``CrossOver`` per feed;
Wilder's RSI(14) (``bt.ind.RSI``) long below 30, flat above 70; buy-and-hold of 1/N per feed from
the first bar; and a seeded random long/flat draw per feed every 26 bars. Each holds 1/N of
value per long feed (``order_target_percent``), commission 10 bps, next-open fills, one
``bt.feeds.PandasData`` per symbol. backtrader is single-threaded Python with per-bar overhead,
so it runs on the first ``--peer-symbols`` symbols of the SAME bars (same seed, same
timestamps). Each model's time runs from ``Strategy.start`` to ``Strategy.stop``: indicators,
the bar loop and the broker, but not the feeds' preload (converting DataFrames into line
buffers), mirroring the arena's replay time, which excludes data loading. Its bars/s = N x T /
(sum of the four models' seconds): bars pushed through all four models per second, the arena's
own definition.

Why a per-bar comparison is fair
--------------------------------
Both engines do work proportional to the number of bars they step through (every bar of every
symbol is read, indicators advance, the broker marks positions), so bars per second is a rate,
largely independent of the universe's size: backtrader's per-bar rate is close to flat in the
number of feeds (measured here at 10,000 timestamps: about 22k bars/s with 1 SMA feed and
22k-29k with 10 or 40, within its run-to-run noise), so its rate on a subset stands for its rate
on the whole universe, and the benchmark stays short. The single-model figure (SMA alone) is
printed too, for a reader who prefers to compare one strategy with four.

Run ``.venv/bin/python benchmarks/arena_throughput.py --help`` for the options. Progress goes
to stderr, the table to stdout; ``--json PATH`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd
import ray

from titan_ray.arena.pipeline import Progress
from titan_ray.arena.runner import run_arena
from titan_ray.config import ArenaConfig, DataConfig, parse_config
from titan_ray.data.market import MarketData
from titan_ray.data.providers import make_provider

FREQUENCY = "15min"
SMA_FAST = 10
SMA_SLOW = 30
COMMISSION_BPS = 10
INITIAL_CASH = 1_000_000.0
RAY_CPUS = 2
MODELS: list[dict[str, Any]] = [
    {"name": "sma", "kind": "sma_crossover", "params": {"fast": SMA_FAST, "slow": SMA_SLOW}},
    {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 14, "low": 30, "high": 70}},
    {"name": "hold", "kind": "buy_and_hold"},
    {"name": "random", "kind": "random", "params": {"every": 26, "p_long": 0.5}},
]


@dataclass(frozen=True)
class EngineFigures:
    """One row of the results table."""

    engine: str
    symbols: int
    timestamps: int
    bars: int
    seconds: float
    bars_per_second: float
    models: int
    model_bars_per_second: float


@dataclass(frozen=True)
class TitanRun:
    figures: EngineFigures
    ray_start_seconds: float
    replay_seconds: float  # the median run's
    wall_seconds: float
    all_replay_seconds: list[float]
    busy_seconds: dict[str, float]  # per actor, in the median run


@dataclass(frozen=True)
class PeerRun:
    figures: EngineFigures
    preload_seconds: float
    run_seconds: float
    final_value: float
    model_seconds: dict[str, float]


def log(message: str) -> None:
    print(f"[arena_throughput] {message}", file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Replay a synthetic universe through the full TitanRay actor pipeline (local Ray, 4 "
            "baseline models, ledger) and print bars per second next to backtrader running one "
            "SMA(10/30) crossover strategy on a subset of the same bars. The comparison is per bar."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--symbols", type=positive_int, default=100, help="symbols in the arena's universe")
    parser.add_argument(
        "--timestamps", type=int, default=10_000, help="15-minute bars per symbol (at least 2*slow = 60)"
    )
    parser.add_argument("--chunk-size", type=positive_int, default=1024, help="timestamps per replay message")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="measured arena runs after one warm-up; the median is reported (default 3)")
    parser.add_argument(
        "--peer-symbols", type=int, default=10,
        help="backtrader runs on the first N symbols (all timestamps); 0 skips it",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic market and random model")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.timestamps < 2 * SMA_SLOW:
        parser.error(f"--timestamps must be at least {2 * SMA_SLOW} so the SMA({SMA_SLOW}) can trade")
    if not 0 <= args.peer_symbols <= args.symbols:
        parser.error(f"--peer-symbols must be between 0 and --symbols ({args.symbols})")
    return args


def arena_config(symbols: int, timestamps: int, chunk_size: int, seed: int) -> ArenaConfig:
    return parse_config(
        {
            "seed": seed,
            "data": {
                "provider": "synthetic", "n_symbols": symbols, "bars": timestamps, "frequency": FREQUENCY,
            },
            "replay": {"chunk_size": chunk_size},
            "models": MODELS,
        },
        source="arena_throughput",
    )


def build_market(config: DataConfig, seed: int) -> MarketData:
    """The synthetic bars, generated the way the market-data actor generates them (same seed)."""
    return make_provider(config, seed).load()


def run_titan(config: ArenaConfig, repeats: int) -> TitanRun:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    log(f"starting Ray (num_cpus={RAY_CPUS}) ...")
    t0 = time.perf_counter()
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - t0
    last_report = [0.0]

    def on_progress(p: Progress) -> None:
        if p.elapsed - last_report[0] >= 2.0 or p.done_timestamps == p.total_timestamps:
            last_report[0] = p.elapsed
            log(f"  titan-ray: {p.done_timestamps}/{p.total_timestamps} timestamps, {p.elapsed:.1f} s")

    try:
        # Warm-up: right after ray.init Ray's own agents are still starting and compete for the
        # cores; one small arena lets them settle and starts the worker processes, as any
        # long-lived cluster would have them. It is not measured.
        log("warm-up arena (not measured) ...")
        small = config.model_copy(update={"data": config.data.model_copy(update={"bars": 200})})
        run_arena(small, out_dir=None, snapshot_every=float("inf"))
        runs = []
        for i in range(repeats):
            log(f"replay {i + 1}/{repeats} through {len(config.models)} model actors ...")
            # snapshot_every=inf: no live-leaderboard calls during the replay, only one at the end.
            runs.append(run_arena(config, out_dir=None, on_progress=on_progress, snapshot_every=float("inf")))
    finally:
        ray.shutdown()
    replays = sorted(float(r.run_info["replay_seconds"]) for r in runs)
    median = replays[len(replays) // 2]
    info = next(r.run_info for r in runs if float(r.run_info["replay_seconds"]) == median)
    log("replay seconds: " + ", ".join(f"{x:.2f}" for x in replays) + f" (median {median:.2f})")
    n_models = len(config.models)
    bps = float(info["bars_per_second"])
    figures = EngineFigures(
        engine=f"titan-ray ({n_models} models)",
        symbols=int(info["n_symbols"]),
        timestamps=int(info["n_timestamps"]),
        bars=int(info["n_bars"]),
        seconds=median,
        bars_per_second=bps,
        models=n_models,
        model_bars_per_second=bps * n_models,
    )
    return TitanRun(figures, ray_start, median, float(info["wall_seconds"]), replays, info["busy_seconds"])


def peer_frames(market: MarketData, n_symbols: int) -> list[tuple[str, pd.DataFrame]]:
    """One OHLCV DataFrame per symbol (the first ``n_symbols``), indexed by tz-naive UTC time."""
    bars = market.bars
    utc = pd.to_datetime(bars.timestamps, unit="ns", utc=True)
    index = pd.DatetimeIndex(utc.tz_localize(None), name="datetime")
    frames = []
    for s in range(n_symbols):
        frame = pd.DataFrame(
            {
                "open": bars.open[:, s],
                "high": bars.high[:, s],
                "low": bars.low[:, s],
                "close": bars.close[:, s],
                "volume": bars.volume[:, s],
            },
            index=index,
        )
        frames.append((bars.symbols[s], frame))
    return frames


class MultiModel(bt.Strategy):
    """One of the arena's baseline models over every data feed, holding ``weight`` of value when long."""

    params = (("kind", "sma"), ("weight", 0.1), ("timestamps", 0), ("seed", 7))

    def __init__(self) -> None:
        kind = self.p.kind
        if kind == "sma":
            self.signals = [bt.ind.CrossOver(bt.ind.SMA(d.close, period=SMA_FAST), bt.ind.SMA(d.close, period=SMA_SLOW))
                            for d in self.datas]
        elif kind == "rsi":
            self.signals = [bt.ind.RSI(d.close, period=14, safediv=True) for d in self.datas]
        self.rng = np.random.default_rng(self.p.seed)
        self.steps = 0
        self.started = self.last_report = self.stopped = 0.0

    def start(self) -> None:
        self.started = self.last_report = time.perf_counter()

    def next(self) -> None:
        kind, w = self.p.kind, self.p.weight
        if kind == "sma":
            for data, cross in zip(self.datas, self.signals, strict=True):
                if cross[0] > 0:
                    self.order_target_percent(data=data, target=w)
                elif cross[0] < 0:
                    self.order_target_percent(data=data, target=0.0)
        elif kind == "rsi":
            for data, rsi in zip(self.datas, self.signals, strict=True):
                if rsi[0] < 30:
                    self.order_target_percent(data=data, target=w)
                elif rsi[0] > 70:
                    self.order_target_percent(data=data, target=0.0)
        elif kind == "hold":
            if self.steps == 0:
                for data in self.datas:
                    self.order_target_percent(data=data, target=w)
        elif self.steps % RANDOM_EVERY == 0:
            draws = self.rng.random(len(self.datas)) < 0.5
            for data, hold in zip(self.datas, draws, strict=True):
                self.order_target_percent(data=data, target=w if hold else 0.0)
        self.steps += 1
        if self.steps % 256 == 0:  # look at the clock rarely; report at most every 2 s
            now = time.perf_counter()
            if now - self.last_report >= 2.0:
                self.last_report = now
                log(f"  backtrader {kind}: {self.steps}/{self.p.timestamps} timestamps, {now - self.started:.1f} s")

    def stop(self) -> None:
        self.stopped = time.perf_counter()


PEER_MODELS = ("sma", "rsi", "hold", "random")
RANDOM_EVERY = 26


def run_backtrader(frames: list[tuple[str, pd.DataFrame]], kinds: tuple[str, ...] = PEER_MODELS) -> PeerRun:
    n = len(frames)
    t = len(frames[0][1])
    engine_seconds: dict[str, float] = {}
    run_seconds, final_value = 0.0, 0.0
    for kind in kinds:
        log(f"backtrader: {kind} over {n} feeds x {t} timestamps ...")
        cerebro = bt.Cerebro(stdstats=False)
        for name, frame in frames:
            cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None), name=name)
        cerebro.addstrategy(MultiModel, kind=kind, weight=1.0 / n, timestamps=t)
        cerebro.broker.setcash(INITIAL_CASH)
        cerebro.broker.setcommission(commission=COMMISSION_BPS / 1e4)
        t0 = time.perf_counter()
        strategy = cerebro.run()[0]
        run_seconds += time.perf_counter() - t0
        engine_seconds[kind] = strategy.stopped - strategy.started
        final_value = float(cerebro.broker.getvalue())
    total = sum(engine_seconds.values())
    bars = n * t
    figures = EngineFigures(
        engine=f"backtrader ({len(kinds)} models)",
        symbols=n,
        timestamps=t,
        bars=bars,
        seconds=total,
        bars_per_second=bars / total,
        models=len(kinds),
        model_bars_per_second=bars * len(kinds) / total,
    )
    return PeerRun(figures, run_seconds - total, run_seconds, final_value, engine_seconds)


def machine() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "backtrader": bt.__version__,
    }


def format_table(rows: list[EngineFigures]) -> str:
    head = (
        f"{'engine':<30} {'symbols':>8} {'timestamps':>11} {'bars':>11} {'seconds':>9} "
        f"{'bars/s':>12} {'model-bars/s':>13}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.engine:<30} {r.symbols:>8,} {r.timestamps:>11,} {r.bars:>11,} {r.seconds:>9.2f} "
            f"{r.bars_per_second:>12,.0f} {r.model_bars_per_second:>13,.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall0 = time.perf_counter()
    config = arena_config(args.symbols, args.timestamps, args.chunk_size, args.seed)

    log(f"generating {args.symbols} symbols x {args.timestamps} timestamps of synthetic {FREQUENCY} bars ...")
    t0 = time.perf_counter()
    market = build_market(config.data, config.seed)
    log(f"  data ready in {time.perf_counter() - t0:.2f} s ({market.bars.n_bars:,} bars)")

    titan = run_titan(config, args.repeat)
    expected = (market.bars.n_bars, len(market.bars))
    got = (titan.figures.bars, titan.figures.timestamps)
    if got != expected:
        raise RuntimeError(f"the arena replayed {got} (bars, timestamps) but the benchmark built {expected}")

    peer: PeerRun | None = None
    if args.peer_symbols > 0:
        frames = peer_frames(market, args.peer_symbols)
        if not all(np.isfinite(f.to_numpy()).all() for _, f in frames):
            raise RuntimeError("synthetic bars contain NaN; backtrader needs complete feeds")
        peer = run_backtrader(frames)

    rows = [titan.figures] + ([peer.figures] if peer else [])
    m = machine()
    print()
    print(f"machine: {m['usable_cores']} usable cores (os.cpu_count {m['cpu_count']}), {m['processor']}, "
          f"Python {m['python']}, Ray {m['ray']} (num_cpus={RAY_CPUS}), backtrader {m['backtrader']}")
    print(f"data: synthetic {FREQUENCY} bars, seed {args.seed}; chunk size {args.chunk_size}")
    print(f"titan-ray: Ray start {titan.ray_start_seconds:.2f} s (not counted), one warm-up arena, then "
          f"replays of {', '.join(f'{x:.2f}' for x in titan.all_replay_seconds)} s (median "
          f"{titan.replay_seconds:.2f} s); run_arena wall {titan.wall_seconds:.2f} s (adds actors, data "
          f"generation, results)")
    print("  busy seconds per actor during the median replay: "
          + ", ".join(f"{k} {v:.2f}" for k, v in titan.busy_seconds.items()))
    if peer is not None:
        print(f"backtrader: ran on a SUBSET, the first {peer.figures.symbols} of {args.symbols} symbols, "
              f"same {peer.figures.timestamps:,} timestamps; seconds = Strategy.start..stop "
              f"(feed preload {peer.preload_seconds:.2f} s not counted; "
              f"cerebro.run {peer.run_seconds:.2f} s)")
    print()
    print(format_table(rows))
    ratio: float | None = None
    if peer is not None:
        ratio = titan.figures.bars_per_second / peer.figures.bars_per_second
        print()
        print(f"ratio titan-ray / backtrader per bar, same {peer.figures.models} models: {ratio:,.1f}x")
        sma_only = peer.figures.bars / peer.model_seconds["sma"]
        print("  backtrader per model: " + ", ".join(f"{k} {peer.figures.bars / v:,.0f} bars/s"
                                                   for k, v in peer.model_seconds.items()))
        print(f"  against backtrader running the SMA model alone ({sma_only:,.0f} bars/s): "
              f"{titan.figures.bars_per_second / sma_only:,.1f}x")
    total = time.perf_counter() - wall0
    log(f"done in {total:.1f} s")

    if args.json is not None:
        report = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": m,
            "titan_ray": {**asdict(titan.figures), "ray_start_seconds": titan.ray_start_seconds,
                          "all_replay_seconds": titan.all_replay_seconds, "busy_seconds": titan.busy_seconds,
                          "replay_seconds": titan.replay_seconds, "wall_seconds": titan.wall_seconds},
            "backtrader": (
                {**asdict(peer.figures), "preload_seconds": peer.preload_seconds,
                 "model_seconds": peer.model_seconds,
                 "run_seconds": peer.run_seconds, "final_value": peer.final_value, "subset": True}
                if peer is not None else None
            ),
            "ratio_bars_per_second": ratio,
            "benchmark_seconds": total,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
