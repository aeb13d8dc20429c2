"""What `titan-ray tune` and `titan-ray train-ppo` share: their options and the overrides they make."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_training_arguments(parser: argparse.ArgumentParser, *, config_help: str, out_prefix: str,
                           registry_help: str) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", required=True, help=config_help)
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help=f"run folder (default: STORAGE/{out_prefix}-NAME-YYYYMMDD-HHMMSS, STORAGE from the config)")
    parser.add_argument("--num-samples", type=int, metavar="N", help="override tune.num_samples")
    parser.add_argument("--registry", metavar="DIR", help=registry_help)
    parser.add_argument("--address", metavar="ADDR",
                        help="join a running Ray cluster ('auto' for the local one) instead of starting one")
    parser.add_argument("--quiet", action="store_true", help="no progress lines; the summary still prints")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config sections the shared options override (``--num-samples``, ``--registry``)."""
    over: dict[str, Any] = {}
    if args.num_samples is not None:
        over["tune"] = {"num_samples": args.num_samples}
    if args.registry is not None:
        over["registry"] = {"path": args.registry}
    return over
