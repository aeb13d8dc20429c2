"""`titan-ray arena`: run an arena of trading models."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from titan_ray.arena.runner import run_arena
from titan_ray.arena.terminal import LiveView
from titan_ray.config import ConfigError, load_config, parse_config
from titan_ray.models.llm_client import CACHE_ONLY_ENV


def _overrides(args: argparse.Namespace) -> dict:
    over: dict = {}
    if getattr(args, "seed", None) is not None:
        over["seed"] = args.seed
    if getattr(args, "chunk_size", None) is not None:
        over["replay"] = {"chunk_size": args.chunk_size}
    return over


def run(args: argparse.Namespace) -> int:
    resume, run_id = args.resume is not None, None
    if getattr(args, "llm_cache_only", False):
        os.environ[CACHE_ONLY_ENV] = "1"  # before Ray starts: its workers inherit it
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
    view = None if args.quiet else LiveView(sys.stdout)  # today's stdout, not the one at import time
    if view is not None:
        names = ", ".join(f"{m.name} ({m.kind})" for m in config.models)
        verb = "resuming" if resume else "seed"
        print(f"TitanRay arena · {verb} {out_dir if resume else config.seed} · {config.data.provider} data · "
              f"models: {names}", flush=True)
    run = run_arena(config, out_dir, address=args.address, on_progress=view, resume=resume, run_id=run_id)
    if view is not None:
        view.finish(run.leaderboard, run.run_info, out_dir)
        print(f"Where the {run.report.wall_seconds:.1f}s went: {run.report.phases.line()}.", flush=True)
        if run.tracked:
            print(f"Tracked in MLflow: {run.tracked}", flush=True)
    else:
        print(out_dir)
    return 0
