"""`titan-ray tune`: sweep a learned model's hyper-parameters on Ray Tune and register the winner."""

from __future__ import annotations

import argparse
import json

from titan_ray.commands._training import overrides
from titan_ray.ray_session import ray_connected
from titan_ray.train.sweeps import default_run_dir, load_sweep_config, run_sweep


def run(args: argparse.Namespace) -> int:
    cfg = load_sweep_config(args.config, overrides(args))
    run_dir = args.out or default_run_dir(cfg.storage, f"tune-{cfg.name}")
    with ray_connected(args.address):
        result = run_sweep(cfg, run_dir, progress=not args.quiet)
    print()
    print(result.table)
    print(f"\nbest: {json.dumps(result.best_params)}  {cfg.tune.metric} = {result.best_score:.4f}")
    print(f"registered: {result.registered}  (arena: kind: {cfg.kind}, artifact: {result.registered})")
    print(f"run folder: {result.run_dir}")
    return 0
