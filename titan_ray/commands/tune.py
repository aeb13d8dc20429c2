"""`titan-ray tune`: sweep a learned model's hyper-parameters on Ray Tune and register the winner."""

from __future__ import annotations

import argparse
import json

from titan_ray.commands._training import add_training_arguments, overrides

NAME = "tune"
SUMMARY = "sweep a learned model's hyper-parameters (Ray Tune, ASHA) and register the best"
DESCRIPTION = """\
Sample configs of a learned model (lightgbm, lstm_attention, tft, ...) from the search space of a
YAML file, score each by walk-forward validation on the training period only (the first
`train_bars` bars; the arena's trading period is never loaded), let ASHA stop poor trials after
their first folds, then refit the best config on the whole training period and register it in the
model registry. A fold's score is the annualised Sharpe ratio of trading its test block through
the arena's own ledger, with the config's costs.

The run folder holds the Tune experiment (trials/), summary.csv and summary.txt (the table printed
at the end, every trial with its params, folds run, scores and whether ASHA stopped it), best.json
(the winner's params, score and registry reference) and config.json.

Use the winner in the arena with a model entry such as
  - {name: gbm, kind: lightgbm, artifact: lightgbm_sweep}        # or lightgbm_sweep@3
and replay.warmup_bars set to the training period's length, so the arena trades only after it.

examples:
  titan-ray tune --config tune_configs/lightgbm.yaml
  titan-ray tune --config tune_configs/lstm_attention.yaml --num-samples 4 --out runs/lstm-sweep
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, config_help="sweep YAML (see tune_configs/lightgbm.yaml)", out_prefix="tune",
                           registry_help="override registry.path (where the winner is stored)")


def run(args: argparse.Namespace) -> int:
    from titan_ray.ray_session import ray_connected
    from titan_ray.train.sweeps import default_run_dir, load_sweep_config, run_sweep

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
