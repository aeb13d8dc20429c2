"""A live feed with a known drift, as Parquet files (one per symbol), for the lifecycle tests.

Each symbol's log returns follow an AR(1) process: r_t = phi * r_{t-1} + sigma * e_t. Before
``drift_bar`` the market trends (phi > 0, a model learns to follow moves); from ``drift_bar`` it
mean-reverts at twice the volatility (phi < 0): a champion trained on the first regime keeps
following moves that now reverse, its features' distributions shift (volatility doubles), and a
model retrained on the new regime wins. The symbols are independent and the generator is seeded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_drift_feed(folder: Path, *, bars: int, drift_bar: int, symbols: int = 4, seed: int = 3,
                     phi: tuple[float, float] = (0.45, -0.45), sigma: tuple[float, float] = (0.001, 0.002)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-01-05 00:00", periods=bars, freq="1min", tz="UTC")
    for k in range(symbols):
        e = rng.standard_normal(bars)
        r = np.zeros(bars)
        for t in range(1, bars):
            regime = 0 if t < drift_bar else 1
            r[t] = phi[regime] * r[t - 1] + sigma[regime] * e[t]
        close = 100.0 * np.exp(np.cumsum(r))
        open_ = np.concatenate(([close[0]], close[:-1]))
        wiggle = np.abs(rng.standard_normal(bars)) * np.where(np.arange(bars) < drift_bar, sigma[0], sigma[1]) * close
        frame = pd.DataFrame({
            "timestamp": index, "open": open_, "high": np.maximum(open_, close) + wiggle,
            "low": np.minimum(open_, close) - wiggle, "close": close,
            "volume": rng.integers(1_000, 5_000, bars).astype(float)})
        frame.to_parquet(folder / f"S{k}.parquet", index=False)
    return folder


def feed_config(folder: Path) -> dict:
    """The feed as an arena ``data`` section."""
    return {"provider": "parquet", "path": str(folder), "frequency": "1min", "calendar": "continuous"}
