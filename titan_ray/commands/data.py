"""`titan-ray data`: load a config's market data and report what ingestion rejected."""

from __future__ import annotations

import argparse
from pathlib import Path

from titan_ray.config import load_config

NAME = "data"
SUMMARY = "load the config's market data and report what ingestion rejected"
DESCRIPTION = ("Load the market data of an arena config exactly as the arena would, "
               "and print its shape and every rejected bar with its reason.")


def add_arguments(data: argparse.ArgumentParser) -> None:
    data.add_argument("--config", type=Path, metavar="FILE", help="arena YAML config (default: the packaged one)")
    data.add_argument("--limit", type=int, default=20, help="rejected bars to list (default 20)")


def run(args: argparse.Namespace) -> int:
    from titan_ray.data.providers import make_provider

    config = load_config(args.config)
    market = make_provider(config.data, config.seed).load()
    bars = market.bars
    print(f"source: {market.source}")
    print(f"symbols ({bars.n_symbols}): {', '.join(bars.symbols)}")
    import pandas as pd

    first, last = (pd.Timestamp(int(x), tz="UTC") for x in (bars.timestamps[0], bars.timestamps[-1]))
    print(f"timestamps: {len(bars):,} from {first} to {last}; bars: {bars.n_bars:,}; frequency {market.frequency}")
    print(f"rejected bars: {len(market.rejected):,} {market.rejected_counts() or ''}")
    for r in market.rejected[: args.limit]:
        print(f"  {r}")
    return 0


