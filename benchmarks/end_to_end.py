"""End to end: TitanRay, vectorbt and backtrader as whole processes on the same CSV files.

What is measured
----------------
The question a new user asks: "I have a folder of CSV files; how long until I have results?" So
every engine runs as its own process (``subprocess``, wall clock from spawn to exit: interpreter
start, imports, reading the files, the backtest, its results), on the same files:

- the files: ``--files`` CSV files of ``--bars`` 15-minute bars each (default 20 x 60,000 = 1.2M
  bars), generated once from TitanRay's seeded synthetic market into ``--dir`` (naive New York
  times, prices to 4 decimals) and reused while their spec (files, bars, seed) is unchanged;
- *TitanRay*: ``titan-ray arena --config arena.yaml --out DIR --quiet`` with one
  ``sma_crossover`` (10/30) model on the folder (``provider: csv``): a private Ray, the actors, the
  replay and the whole results folder (leaderboard, Parquet files, ``equity.png``). Its own
  ``run.json`` splits the wall into ``phases`` (start-up, data, replay, results, shutdown); what is
  left of the process's wall is the interpreter, the imports and the config;
- *vectorbt* 1.2.0: a script that reads the same files with pandas, computes SMA(10)/SMA(30) with
  ``vbt.MA``, crossovers as entries and exits, shifted one bar so that they fill at the next open
  as the arena's do, ``Portfolio.from_signals`` (one cash-sharing portfolio, 1/N of the initial
  cash per entry, 10 bps fees), its ``stats()``, and equity, trades and orders written to Parquet.
  Its first run is not counted: its numba cache is warm after that one;
- *backtrader*: the same SMA crossover (``bt.ind.CrossOver``, ``order_target_percent`` 1/N,
  10 bps commission) on the first ``--peer-files`` files only, because it steps through bars in
  Python. Its bars/s (``cerebro.run`` alone) gives its time for the whole universe by
  extrapolation, as ``arena_throughput.py`` does.

The peers' programs are in ``end_to_end_peers.py``; they import nothing from TitanRay. TitanRay
gets a warm-up run too (its ledger's numba cache, the files in the page cache), the two alternate
run by run so that a busy machine's load falls on both alike, and the medians of ``--repeat``
measured runs are printed (each run's figure too: on a shared 2-core machine they move by
seconds). The three are not meant to agree to the cent (vectorbt sizes by value and shares cash
its own way; backtrader sizes on the signal bar's close); the acceptance tests compare the arena
with the peers to the cent on purpose-built cases. Here the work is the same: the same bars, the
same signal, one portfolio, every trade booked with commission, a result a user can read.

Run ``.venv/bin/python benchmarks/end_to_end.py --help`` for the options; ``--quick`` is a smoke
test (4 files x 10,000 bars). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from arena_throughput import positive_int  # a sibling script: benchmarks/ is on sys.path

from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.calendar import EXCHANGE_TZ

FREQUENCY = "15min"
FAST, SLOW = 10, 30
COMMISSION_BPS = 10
INITIAL_CASH = 1_000_000
PHASES = ("startup", "data", "replay", "results", "shutdown")


PEERS = Path(__file__).with_name("end_to_end_peers.py")


@dataclass(frozen=True)
class ProcessRun:
    """One engine's process: its wall clock from spawn to exit, and what it reported about itself."""

    wall_seconds: float
    report: dict[str, Any]


@dataclass(frozen=True)
class Figures:
    """One engine's row: the median of its measured processes (and the report of that run)."""

    engine: str
    bars: int
    wall_seconds: float
    all_wall_seconds: list[float]
    report: dict[str, Any]


def log(message: str) -> None:
    print(f"[end_to_end] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time TitanRay's `titan-ray arena`, vectorbt and backtrader as whole processes on the same "
        "folder of CSV files (one SMA(10/30) crossover), side by side, with TitanRay's phases.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--files", type=positive_int, default=20, help="CSV files (one symbol each)")
    parser.add_argument("--bars", type=positive_int, default=60_000, help="15-minute bars per file")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "titan-ray-end-to-end",
                        help="where the files, the config and the results go")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 4 files x 10,000 bars, backtrader on 1 file, no repeats")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="measured runs per engine after one warm-up each; medians are printed")
    parser.add_argument("--peer-files", type=int, default=2, help="files backtrader runs on (0 skips it)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic market")
    parser.add_argument("--no-vectorbt", action="store_true", help="skip vectorbt")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.bars, args.peer_files, args.repeat = 4, 10_000, 1, 1
    if args.bars < 2 * SLOW:
        parser.error(f"--bars must be at least {2 * SLOW} so the SMA({SLOW}) can trade")
    if not 0 <= args.peer_files <= args.files:
        parser.error(f"--peer-files must be between 0 and --files ({args.files})")
    return args


# --- the files ------------------------------------------------------------------------------------


def generate(folder: Path, files: int, bars: int, seed: int) -> list[Path]:
    """``files`` CSV files of ``bars`` seeded synthetic bars in ``folder``; kept while the spec holds."""
    spec = {"files": files, "bars": bars, "seed": seed, "frequency": FREQUENCY}
    marker = folder / ".spec.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        log(f"reusing {files} files x {bars:,} bars in {folder}")
        return sorted(folder.glob("*.csv"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"generating {files} files x {bars:,} {FREQUENCY} bars into {folder} ...")
    t0 = time.perf_counter()
    config = DataConfig(provider="synthetic", n_symbols=files, bars=bars, frequency=FREQUENCY)
    b = SyntheticProvider(config, seed).load().bars
    # naive New York times, as most exports write them (the arena reads them in data.timezone)
    local = pd.to_datetime(b.timestamps, unit="ns", utc=True).tz_convert(EXCHANGE_TZ).tz_localize(None)
    stamps = local.strftime("%Y-%m-%d %H:%M:%S")
    paths = []
    for j, symbol in enumerate(b.symbols):
        frame = pd.DataFrame({
            "timestamp": stamps,
            **{f: np.round(getattr(b, f)[:, j], 4) for f in ("open", "high", "low", "close")},
            "volume": b.volume[:, j].astype(np.int64),
        })
        path = folder / f"{symbol.lower()}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    marker.write_text(json.dumps(spec))
    log(f"  written in {time.perf_counter() - t0:.1f} s")
    return paths


def arena_config(folder: Path, path: Path) -> Path:
    """The arena a user would write for these files: one SMA(10/30) model, everything else default."""
    path.write_text(
        f"seed: 7\n"
        f"data: {{provider: csv, path: {json.dumps(str(folder))}, frequency: {FREQUENCY}, calendar: equities}}\n"
        f"models:\n  - {{name: sma, kind: sma_crossover, params: {{fast: {FAST}, slow: {SLOW}}}}}\n"
    )
    return path


# --- the processes ----------------------------------------------------------------------------------


def timed(command: list[str]) -> tuple[float, str]:
    """Wall seconds from spawn to exit, and stdout; a failed process stops the benchmark with its stderr."""
    t0 = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return wall, done.stdout


def titan_ray(config: Path, out: Path) -> ProcessRun:
    executable = Path(sys.executable).with_name("titan-ray")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "titan_ray"]
    shutil.rmtree(out, ignore_errors=True)
    wall, _ = timed([*command, "arena", "--config", str(config), "--out", str(out), "--quiet"])
    return ProcessRun(wall, json.loads((out / "run.json").read_text()))


def peer(engine: str, *args: str) -> ProcessRun:
    wall, stdout = timed([sys.executable, str(PEERS), engine, *args])
    return ProcessRun(wall, json.loads(stdout.strip().splitlines()[-1]))


def median_run(engine: str, bars: int, runs: list[ProcessRun]) -> Figures:
    """The median wall, with the report of the run closest to it."""
    walls = [r.wall_seconds for r in runs]
    median = statistics.median(walls)
    closest = min(runs, key=lambda r: abs(r.wall_seconds - median))
    return Figures(engine, bars, median, walls, closest.report)


# --- the table --------------------------------------------------------------------------------------


def titan_line(f: Figures) -> str:
    r = f.report
    phases = " · ".join(f"{k} {v:.2f}" for k, v in r["phases"].items())
    other = f.wall_seconds - r["wall_seconds"]
    return (f"  titan-ray phases (s): {phases}; before and after run_arena (interpreter, imports, "
            f"config) {other:.2f}; replay {r['replay_seconds']:.2f} s = {r['bars_per_second']:,.0f} bars/s")


def vectorbt_line(f: Figures) -> str:
    r = f.report
    return (f"  vectorbt (s): import {r['import']:.2f} · data {r['data']:.2f} · signals, portfolio and stats "
            f"{r['backtest']:.2f} · results {r['results']:.2f}; {r['orders']:,} orders")


def backtrader_line(f: Figures, all_bars: int) -> str:
    r = f.report
    return (f"  backtrader (s): import {r['import']:.2f} · data {r['data']:.2f} · cerebro.run {r['run']:.2f} = "
            f"{r['bars_per_second']:,.0f} bars/s on {r['feeds']} of the files; all {all_bars:,} bars at that rate: "
            f"{all_bars / r['bars_per_second']:,.0f} s")


def table(rows: list[Figures]) -> str:
    head = f"{'engine':<34} {'bars':>11} {'wall s':>8} {'bars/s (wall)':>14}   runs (s)"
    lines = [head, "-" * len(head)]
    for f in rows:
        runs = ", ".join(f"{w:.2f}" for w in f.all_wall_seconds)
        lines.append(f"{f.engine:<34} {f.bars:>11,} {f.wall_seconds:>8.2f} {f.bars / f.wall_seconds:>14,.0f}   {runs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.dir / "bars"
    generate(folder, args.files, args.bars, args.seed)
    config = arena_config(folder, args.dir / "arena.yaml")
    all_bars = args.files * args.bars
    titan_runs: list[ProcessRun] = []
    vbt_runs: list[ProcessRun] = []
    for i in range(args.repeat + 1):  # run 0 warms both up (page cache, numba caches) and is not counted
        label = "warm-up" if i == 0 else f"run {i}/{args.repeat}"
        log(f"{label}: titan-ray arena ...")
        run = titan_ray(config, args.dir / "titan-ray")
        log(f"  {run.wall_seconds:.2f} s (run_arena {run.report['wall_seconds']:.2f} s)")
        titan_runs += [run] if i else []
        if not args.no_vectorbt:
            log(f"{label}: vectorbt ...")
            run = peer("vectorbt", str(folder), str(args.dir / "vectorbt"))
            log(f"  {run.wall_seconds:.2f} s")
            vbt_runs += [run] if i else []
    rows = [median_run("titan-ray arena (1 SMA model)", all_bars, titan_runs)]
    if vbt_runs:
        rows.append(median_run("vectorbt 1.2.0 (warm numba cache)", all_bars, vbt_runs))
    bt_row = None
    if args.peer_files:
        log(f"backtrader on {args.peer_files} of the files ...")
        run = peer("backtrader", str(folder), str(args.peer_files))
        bt_row = median_run(f"backtrader ({args.peer_files} of the files)", run.report["bars"], [run])
        rows.append(bt_row)

    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python "
          f"{platform.python_version()}; data: {args.files} CSV files x {args.bars:,} {FREQUENCY} bars in {folder}")
    print(f"each engine is a whole process (wall clock, spawn to exit); medians of {args.repeat} run(s) after a "
          "warm-up run each\n")
    print(table(rows))
    print()
    print(titan_line(rows[0]))
    if vbt_runs:
        print(vectorbt_line(rows[1]))
    if bt_row is not None:
        print(backtrader_line(bt_row, all_bars))
    if vbt_runs:
        ratio = rows[0].wall_seconds / rows[1].wall_seconds
        verdict = "at or below" if ratio <= 1 else "above"
        print(f"\ntitan-ray / vectorbt, whole process: {ratio:.2f}x ({verdict} vectorbt's wall)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
