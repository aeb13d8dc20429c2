"""The ledger's memory against the length of the run: flat with spilling, growing without.

A live arena books bar after bar for as long as the market is open; what the ledger actor holds
must not grow with that. This runs the whole command a user runs, ``titan-ray arena --config ...
--out ... --quiet`` (a private Ray), on runs of increasing length, twice for each length:

- ``spill``: the default, ``ledger.memory_rows: 16384``: each model's book keeps the newest 16,384
  to 32,768 records of a kind (fills, orders, round trips, equity rows, forced flattenings) and
  explanation batches in RAM, and the older in files that the results read back;
- ``in RAM``: ``ledger.memory_rows: 1000000000``, every record in RAM (what the ledger did before).

For each it prints, from run.json's ``ledger_memory`` (the ledger's own account at the end of the
replay, before the results), the records the books booked and those they hold in RAM, and the
ledger process's USS (the memory only that process holds) then; the ledger's and the market-data
actor's peak USS over the whole run (sampled every 0.2 s: it includes the results phase, which
reads every record back to write the results folder); and run.json's replay and results seconds.
The models are ``sma_crossover`` variants and a few ``random`` ones that trade more, on a synthetic
universe, in chunks of ``--chunk-size`` bars.

The market actor here replays a file, so it holds the run's bars by design; in live mode its feed
keeps a bounded block too (``data/spill.py``, tests/unit/data/test_spill.py).

Run ``.venv/bin/python benchmarks/ledger_memory.py --help``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cost_curve import TITAN_RAY, MemorySampler  # the same sampler and command as the cost curve
from servers import ray_env

IN_RAM = 1_000_000_000


def config(bars: int, models: int, symbols: int, chunk: int, memory_rows: int) -> dict:
    n_random = max(1, models // 5)
    return {
        "seed": 3,
        "data": {"provider": "synthetic", "n_symbols": symbols, "bars": bars, "frequency": "15min"},
        "replay": {"chunk_size": chunk, "models_per_actor": models},
        "ledger": {"commission_bps": 10, "memory_rows": memory_rows},
        "models": [{"name": f"sma{i}", "kind": "sma_crossover", "params": {"fast": 5 + i, "slow": 20 + 3 * i}}
                   for i in range(models - n_random)]
        + [{"name": f"rand{i}", "kind": "random", "params": {"every": 20 + i}} for i in range(n_random)],
        "significance": {"n_resamples": 100},
        "watchdog": {"enabled": False},
    }


def run(work: Path, bars: int, memory_rows: int, args: argparse.Namespace) -> dict:
    folder = work / f"{bars}-{memory_rows}"
    folder.mkdir()
    (folder / "arena.yaml").write_text(yaml.safe_dump(config(bars, args.models, args.symbols, args.chunk_size,
                                                               memory_rows)))
    cmd = [str(TITAN_RAY), "arena", "--config", "arena.yaml", "--out", "out", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=folder, env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with MemorySampler([proc.pid], None, track=("LedgerActor", "MarketDataActor")) as memory:
        _out, err = proc.communicate(timeout=args.timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the arena failed: {err.strip().splitlines()[-1:]}")
    info = json.loads((folder / "out" / "run.json").read_text())
    peak = {k: max(v.values(), default=float("nan")) for k, v in memory.peaks.items()}
    led = info["ledger_memory"]
    return {"bars": bars, "mode": "spill" if memory_rows < IN_RAM else "in RAM", "wall": wall,
            "replay": info["replay_seconds"], "results": info["phases"]["results"],
            "records": led["records"], "in_ram": led["records_in_memory"], "uss": led["uss"] / 2**20,
            "ledger": peak["LedgerActor"] / 2**20, "market": peak["MarketDataActor"] / 2**20}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, nargs="+", default=[100_000, 200_000, 400_000],
                    help="run lengths in bar times (default: 100000 200000 400000)")
    ap.add_argument("--models", type=int, default=10, help="models, a fifth of them random (default 10)")
    ap.add_argument("--symbols", type=int, default=4, help="symbols in the universe (default 4)")
    ap.add_argument("--chunk-size", type=int, default=256, help="bar times per chunk (default 256)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds one run may take (default 1200)")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="titan-ray-ledger-memory-") as tmp:
        for bars in args.bars:
            for memory_rows in (16_384, IN_RAM):
                row = run(Path(tmp), bars, memory_rows, args)
                print(f"  {bars:,} bars, {row['mode']}: ledger {row['uss']:.0f} MiB", file=sys.stderr)
                rows.append(row)
    head = (f"{'bars':>8} {'mode':>7} {'records':>10} {'in RAM':>10} {'ledger USS':>11} {'peak USS':>9} "
            f"{'market peak':>11} {'replay s':>9} {'results s':>9} {'wall s':>7}")
    print(f"{args.models} models, {args.symbols} symbols, chunks of {args.chunk_size} bars")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['bars']:>8,} {r['mode']:>7} {r['records']:>10,} {r['in_ram']:>10,} {r['uss']:>8.0f}Mi "
              f"{r['ledger']:>6.0f}Mi {r['market']:>8.0f}Mi {r['replay']:>9.2f} {r['results']:>9.2f} {r['wall']:>7.1f}")
    print("ledger USS and in RAM: at the end of the replay (run.json's ledger_memory); peak: the whole run,\n"
          "the results phase included, which reads every record back")


if __name__ == "__main__":
    main()
