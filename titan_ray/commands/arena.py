"""`titan-ray arena`: run an arena of trading models."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from titan_ray.config import ConfigError, default_config_path, load_config, parse_config

NAME = "arena"
SUMMARY = "run an arena of trading models"
DESCRIPTION = """\
Replay a market through several trading models at once, each a Ray actor with its own virtual
portfolio in one ledger, and rank them on a live leaderboard.

With no --config the default arena runs: a seeded synthetic market of 12 correlated symbols
(15-minute bars, volatility regimes, fat tails) through the baseline models sma_crossover,
rsi_reversion, buy_and_hold (the benchmark) and random (the null hypothesis), and the learned
models lightgbm, lstm_attention, tft and stacking, which fit on the first 1000 bars (warm-up)
and then trade; a few minutes on 2 cores. titan_ray/configs/baselines.yaml runs the baselines
alone (seconds), titan_ray/configs/full.yaml a larger market with rolling refits.
Every trade can answer "why?": titan-ray why DECISION_ID --run DIR.

The results folder holds leaderboard.json, equity.parquet, trades.parquet, orders.parquet,
decisions.parquet, run.json and equity.png.

examples:
  titan-ray arena
  titan-ray arena --config my_arena.yaml --out runs/today
  titan-ray arena --address auto            # on the Ray cluster this machine belongs to
  titan-ray arena --config titan_ray/configs/alpaca.yaml   # Alpaca bars; keys from APCA_API_KEY_ID
                                             # and APCA_API_SECRET_KEY; `live:` in it trades the stream
                                             # bar by bar until a limit or Ctrl-C
"""



def add_arguments(arena: argparse.ArgumentParser) -> None:
    arena.add_argument("--config", type=Path, metavar="FILE",
                       help=f"arena YAML config (default: the packaged {default_config_path().name})")
    arena.add_argument("--out", type=Path, metavar="DIR",
                       help="results folder (default: runs/arena-YYYYMMDD-HHMMSS in the current directory)")
    arena.add_argument("--address", metavar="ADDR",
                       help="join a running Ray cluster ('auto' for the local one) instead of starting a "
                            "private Ray for this run")
    arena.add_argument("--seed", type=int, help="override the config's seed")
    arena.add_argument("--chunk-size", type=int, metavar="N",
                       help="override replay.chunk_size (timestamps per message; 1 = live-like)")
    arena.add_argument("--resume", type=Path, metavar="DIR",
                       help="continue an interrupted run in DIR from its journal (the config is DIR/config.json; "
                            "--config and the overrides do not apply)")
    arena.add_argument("--quiet", action="store_true", help="no progress or tables, only the results path")


def _overrides(args: argparse.Namespace) -> dict:
    over: dict = {}
    if getattr(args, "seed", None) is not None:
        over["seed"] = args.seed
    if getattr(args, "chunk_size", None) is not None:
        over["replay"] = {"chunk_size": args.chunk_size}
    return over


def run(args: argparse.Namespace) -> int:
    from titan_ray.arena.runner import run_arena
    from titan_ray.arena.terminal import LiveView

    resume, run_id = args.resume is not None, None
    if resume:
        out_dir = args.resume
        saved = out_dir / "config.json"
        if not saved.exists():
            raise ConfigError(f"{out_dir} is not a run folder to resume: {saved.name} is missing; give the --out "
                              "folder of an interrupted run")
        raw = json.loads(saved.read_text())
        config, run_id = parse_config(raw["config"], source=str(saved)), raw["run_id"]
        if config.ledger.journal.backend == "sqlite" and not (out_dir / "journal.sqlite").exists():
            raise ConfigError(f"{out_dir} has no journal.sqlite to resume from")
    else:
        config = load_config(args.config, _overrides(args))
        out_dir = args.out or Path("runs") / time.strftime("arena-%Y%m%d-%H%M%S")
    view = None if args.quiet else LiveView()
    if view is not None:
        names = ", ".join(f"{m.name} ({m.kind})" for m in config.models)
        verb = "resuming" if resume else "seed"
        print(f"TitanRay arena · {verb} {out_dir if resume else config.seed} · {config.data.provider} data · "
              f"models: {names}", flush=True)
    run = run_arena(config, out_dir, address=args.address, on_progress=view, resume=resume, run_id=run_id)
    if view is not None:
        view.finish(run.leaderboard, run.run_info, out_dir)
    else:
        print(out_dir)
    return 0


