"""The tournament's arenas: one per market, seed and window, each a plain arena config.

``plan`` turns a ``Tournament`` into ``Arena``s, in a fixed order (markets as listed, seeds as
listed, windows in time order), each with an id that names them (``m0-random_walk-s1-w2``), the
arena config to run and where it sits in the grid.

A market without windows runs as its entry says (the arena loads it as it would alone). With
windows, each market is loaded once, here, through the arena's own provider, and written as one
Parquet file per symbol under ``DIR/markets/<market id>/`` (timestamps in UTC nanoseconds,
float64 prices: the values the provider made, bit for bit); each window's arena reads that folder
with ``data.start``/``data.end`` at its first and last bar and ``replay.warmup_bars`` set to its
training part. So a synthetic market is generated once and every window slices the same bars,
and a window is the same arena a user could run by hand.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from titan_ray.config import parse_config
from titan_ray.data.providers import make_provider
from titan_ray.domain.calendar import format_frequency
from titan_ray.tournament.spec import Tournament, Window, market_id, market_seeds, windows


@dataclass(frozen=True)
class Arena:
    id: str
    market: str  # market id
    seed: int
    window: int  # window index (0 when the market runs whole)
    config: dict[str, Any]  # the arena config, raw (JSON-safe)
    market_data: dict[str, Any]  # the market's own data section, before any window cut it


def plan(tournament: Tournament, out_dir: Path) -> list[Arena]:
    """Every arena of the tournament, in order; windowed markets written to ``out_dir/markets``."""
    base = tournament.base
    base_seed = int(base.get("seed", 7))
    arenas: list[Arena] = []
    for i, spec in enumerate(tournament.config.markets):
        for seed in market_seeds(spec, base_seed):
            mid = market_id(spec, i, seed)
            data = _merge(base.get("data", {}), spec.data())
            raw = {**copy.deepcopy(base), "seed": seed, "data": data}
            if tournament.config.windows is None:
                arenas.append(Arena(f"{mid}-w0", mid, seed, 0, raw, data))
                continue
            config = parse_config(raw, source=f"markets[{i}]")
            folder = out_dir / "markets" / mid
            stamps, frequency = _materialise(config, folder)
            for w in windows(tournament.config.windows, len(stamps)):
                arenas.append(Arena(f"{mid}-w{w.index}", mid, seed, w.index,
                                    _windowed(raw, folder, stamps, frequency, w), data))
    return arenas


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _materialise(config: Any, folder: Path) -> tuple[np.ndarray, str]:
    """The market of ``config`` as Parquet files in ``folder`` (once: kept for a resumed tournament);
    its timestamps and bar size."""
    done = folder / "timestamps.npy"
    if done.exists():
        return np.load(done), (folder / "frequency.txt").read_text()
    market = make_provider(config.data, config.seed).load()
    frequency = format_frequency(market.frequency)
    bars = market.bars
    folder.mkdir(parents=True, exist_ok=True)
    for j, symbol in enumerate(bars.symbols):
        present = ~np.isnan(bars.close[:, j])
        frame = pd.DataFrame({
            "timestamp": pd.to_datetime(bars.timestamps[present], utc=True),
            **{f: getattr(bars, f)[present, j] for f in ("open", "high", "low", "close", "volume")},
        })
        frame.to_parquet(folder / f"{symbol}.parquet", index=False)
    (folder / "frequency.txt").write_text(frequency)
    np.save(folder / "timestamps.tmp.npy", bars.timestamps)
    (folder / "timestamps.tmp.npy").replace(done)  # last: a folder with it is complete
    return np.asarray(bars.timestamps), frequency


def _windowed(raw: dict[str, Any], folder: Path, stamps: np.ndarray, frequency: str, w: Window) -> dict[str, Any]:
    data = raw["data"]
    out = copy.deepcopy(raw)
    out["data"] = {
        "provider": "parquet", "path": str(folder.resolve()), "frequency": frequency,
        "calendar": data.get("calendar", "equities"),
        "start": pd.Timestamp(int(stamps[w.start]), tz="UTC").isoformat(),
        "end": pd.Timestamp(int(stamps[w.stop - 1]), tz="UTC").isoformat(),
    }
    out["replay"] = {**raw.get("replay", {}), "warmup_bars": w.train}
    return out

