"""`titan-ray data`: load a config's market data and report what ingestion rejected."""

from __future__ import annotations

import argparse

import pandas as pd

from titan_ray.config import load_config
from titan_ray.data.providers import make_provider


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    market = make_provider(config.data, config.seed).load()
    bars = market.bars
    print(f"source: {market.source}")
    print(f"symbols ({bars.n_symbols}): {', '.join(bars.symbols)}")
    first, last = (pd.Timestamp(int(x), tz="UTC") for x in (bars.timestamps[0], bars.timestamps[-1]))
    print(f"timestamps: {len(bars):,} from {first} to {last}; bars: {bars.n_bars:,}; frequency {market.frequency}")
    print(f"rejected bars: {len(market.rejected):,} {market.rejected_counts() or ''}")
    for r in market.rejected[: args.limit]:
        print(f"  {r}")
    return 0
