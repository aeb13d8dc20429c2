"""`titan-ray train-ppo`: train a PPO trading policy with RLlib (through Ray Tune) and register it."""

from __future__ import annotations

import argparse

from titan_ray.commands._training import add_training_arguments, overrides

NAME = "train_ppo"
SUMMARY = "train a PPO trading policy on RLlib and register it for the arena"
DESCRIPTION = """\
Train a PPO policy (RLlib, new API stack) on TradingEnv: observations are the feature pipeline's
rows for every symbol plus the weights the policy holds, actions are target weights, the reward is
the change of equity net of slippage and commission, booked by the arena's own ledger. Episodes
are windows drawn from the training period (the first `train_bars` bars, minus the last
`validation_bars`); nothing after the training period is loaded.

Trials run through ray.tune.Tuner (the YAML's `search` samples PPO settings; ASHA stops poor
trials), with checkpoints in the run folder. Each finished trial's policy is then run greedily
over the validation bars at the end of the training period; the best one is registered under the
config's `name` as kind `ppo` (the RLModule, the feature scaler and the action map).

The run folder holds the Tune experiment (trials/, with checkpoints), summary.csv / summary.txt
and best.json.

Use it in the arena with
  - {name: ppo, kind: ppo, artifact: ppo_small}
and replay.warmup_bars set to train_bars (so the arena trades only after the training period).

examples:
  titan-ray train-ppo --config tune_configs/ppo.yaml
  titan-ray train-ppo --config tune_configs/ppo_small.yaml --out runs/ppo-try
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, config_help="PPO YAML (see tune_configs/ppo.yaml)", out_prefix="ppo",
                           registry_help="override registry.path")
    parser.add_argument("--iterations", type=int, metavar="N", help="override training.iterations")


def run(args: argparse.Namespace) -> int:
    from titan_ray.ray_session import ray_connected
    from titan_ray.train.ppo import load_ppo_config, train_ppo
    from titan_ray.train.sweeps import default_run_dir

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
