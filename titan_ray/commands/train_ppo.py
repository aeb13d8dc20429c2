"""`titan-ray train-ppo`: train a PPO trading policy with RLlib (through Ray Tune) and register it."""

from __future__ import annotations

import argparse

from titan_ray.commands._training import overrides
from titan_ray.ray_session import ray_connected
from titan_ray.train.ppo import load_ppo_config, train_ppo
from titan_ray.train.sweeps import default_run_dir


def run(args: argparse.Namespace) -> int:
    over = overrides(args)
    if args.iterations is not None:
        over["training"] = {"iterations": args.iterations}
    cfg = load_ppo_config(args.config, over)
    run_dir = args.out or default_run_dir(cfg.storage, f"ppo-{cfg.name}")
    with ray_connected(args.address):
        result = train_ppo(cfg, run_dir, progress=not args.quiet)
    print()
    print(result.table)
    print(f"\nregistered: {result.registered}  (arena: kind: ppo, artifact: {result.registered}; "
          f"replay.warmup_bars: {cfg.train_bars})")
    print(f"run folder: {result.run_dir}")
    return 0
