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

*backtrader* (the established event-driven backtester): ONE strategy holding an SMA(10) /
SMA(30) ``CrossOver`` per data feed, ``order_target_percent`` of 1/N per feed on a cross (the
arena's SMA model also holds 1/S per symbol), commission 10 bps, next-open fills, one
``bt.feeds.PandasData`` per symbol. backtrader is single-threaded Python with per-bar overhead,
so it runs on the first ``--peer-symbols`` symbols of the SAME bars (same seed, same
timestamps). Its time runs from ``Strategy.start`` to ``Strategy.stop``: indicator computation,
the bar loop and the broker, but not the feeds' preload (converting DataFrames into line
buffers), mirroring the arena's replay time, which excludes data loading. The preload time is
printed separately. Its bars/s = N x T / seconds.

Why a per-bar comparison is fair
--------------------------------
Both engines do work proportional to the number of bars they step through (every bar of every
symbol is read, indicators advance, the broker marks positions), so bars per second is a rate,
largely independent of the universe's size. backtrader's per-bar rate is close to flat in the
number of feeds (on a 2-core machine at 10,000 timestamps: about 22k bars/s with 1 feed and
22k-29k with 10 or 40, within its run-to-run noise of about +-30%), so its rate on a subset
stands for its rate on the whole universe, and the benchmark stays short (all 100 feeds would
add about a minute, half of it the feeds' preload). The setup otherwise favours
backtrader: it runs one cheap strategy while the arena runs four models plus a full ledger
(risk checks, fills and cash in exact integer micro-units) on every bar, and its feed preload
is not counted.

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

from titan_ray.arena.runner import Progress, run_arena
from titan_ray.config import ArenaConfig, DataConfig, parse_config
from titan_ray.data.providers import MarketData, make_provider

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
    replay_seconds: float
    wall_seconds: float


@dataclass(frozen=True)
class PeerRun:
    figures: EngineFigures
    preload_seconds: float
    run_seconds: float
    final_value: float


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
    parser.add_argument("--chunk-size", type=positive_int, default=512, help="timestamps per replay message")
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


def run_titan(config: ArenaConfig) -> TitanRun:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    log(f"starting Ray (num_cpus={RAY_CPUS}) ...")
    t0 = time.perf_counter()
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - t0
    log(f"Ray up in {ray_start:.2f} s; replaying through {len(config.models)} model actors ...")
    last_report = [0.0]

    def on_progress(p: Progress) -> None:
        if p.elapsed - last_report[0] >= 2.0 or p.done_timestamps == p.total_timestamps:
            last_report[0] = p.elapsed
            log(f"  titan-ray: {p.done_timestamps}/{p.total_timestamps} timestamps, {p.elapsed:.1f} s")

    try:
        # snapshot_every=inf: no live-leaderboard calls during the replay, only one at the end.
        run = run_arena(config, out_dir=None, on_progress=on_progress, snapshot_every=float("inf"))
    finally:
        ray.shutdown()
    info = run.run_info
    n_models = len(config.models)
    bps = float(info["bars_per_second"])
    figures = EngineFigures(
        engine=f"titan-ray ({n_models} models)",
        symbols=int(info["n_symbols"]),
        timestamps=int(info["n_timestamps"]),
        bars=int(info["n_bars"]),
        seconds=float(info["replay_seconds"]),
        bars_per_second=bps,
        models=n_models,
        model_bars_per_second=bps * n_models,
    )
    return TitanRun(figures, ray_start, float(info["replay_seconds"]), float(info["wall_seconds"]))


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


class MultiSmaCross(bt.Strategy):
    """One SMA(fast) / SMA(slow) crossover per data feed, holding ``weight`` of value when long."""

    params = (("fast", SMA_FAST), ("slow", SMA_SLOW), ("weight", 0.1), ("timestamps", 0))

    def __init__(self) -> None:
        self.crosses = [
            bt.ind.CrossOver(bt.ind.SMA(d.close, period=self.p.fast), bt.ind.SMA(d.close, period=self.p.slow))
            for d in self.datas
        ]
        self.pairs = list(zip(self.datas, self.crosses, strict=True))
        self.steps = 0
        self.started = 0.0
        self.last_report = 0.0
        self.stopped = 0.0

    def start(self) -> None:
        self.started = self.last_report = time.perf_counter()

    def next(self) -> None:
        for data, cross in self.pairs:
            if cross[0] > 0:
                self.order_target_percent(data=data, target=self.p.weight)
            elif cross[0] < 0:
                self.order_target_percent(data=data, target=0.0)
        self.steps += 1
        if self.steps % 256 == 0:  # look at the clock rarely; report at most every 2 s
            now = time.perf_counter()
            if now - self.last_report >= 2.0:
                self.last_report = now
                log(f"  backtrader: {self.steps}/{self.p.timestamps} timestamps, {now - self.started:.1f} s")

    def stop(self) -> None:
        self.stopped = time.perf_counter()


def run_backtrader(frames: list[tuple[str, pd.DataFrame]]) -> PeerRun:
    n = len(frames)
    t = len(frames[0][1])
    log(f"backtrader: 1 SMA({SMA_FAST}/{SMA_SLOW}) strategy over {n} feeds x {t} timestamps ...")
    cerebro = bt.Cerebro(stdstats=False)
    for name, frame in frames:
        cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None), name=name)
    cerebro.addstrategy(MultiSmaCross, fast=SMA_FAST, slow=SMA_SLOW, weight=1.0 / n, timestamps=t)
    cerebro.broker.setcash(INITIAL_CASH)
    cerebro.broker.setcommission(commission=COMMISSION_BPS / 1e4)
    t0 = time.perf_counter()
    strategy = cerebro.run()[0]
    run_seconds = time.perf_counter() - t0
    engine_seconds = strategy.stopped - strategy.started
    bars = n * t
    bps = bars / engine_seconds
    figures = EngineFigures(
        engine="backtrader (1 SMA strategy)",
        symbols=n,
        timestamps=t,
        bars=bars,
        seconds=engine_seconds,
        bars_per_second=bps,
        models=1,
        model_bars_per_second=bps,
    )
    return PeerRun(figures, run_seconds - engine_seconds, run_seconds, float(cerebro.broker.getvalue()))


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

    titan = run_titan(config)
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
    print(f"titan-ray: Ray start {titan.ray_start_seconds:.2f} s (not counted), "
          f"replay {titan.replay_seconds:.2f} s, run_arena wall {titan.wall_seconds:.2f} s "
          f"(adds actors, data generation, results)")
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
        print(f"ratio titan-ray / backtrader per bar: {ratio:,.1f}x")
        print(f"  (per-bar throughput; titan-ray runs {titan.figures.models} models + ledger on every bar, "
              f"backtrader 1 strategy; in model-bars/s the ratio is "
              f"{titan.figures.model_bars_per_second / peer.figures.model_bars_per_second:,.1f}x)")
    total = time.perf_counter() - wall0
    log(f"done in {total:.1f} s")

    if args.json is not None:
        report = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": m,
            "titan_ray": {**asdict(titan.figures), "ray_start_seconds": titan.ray_start_seconds,
                          "replay_seconds": titan.replay_seconds, "wall_seconds": titan.wall_seconds},
            "backtrader": (
                {**asdict(peer.figures), "preload_seconds": peer.preload_seconds,
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
