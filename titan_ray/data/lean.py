"""QuantConnect LEAN sample bars as plain DataFrames, for tests, examples and benchmarks.

A LEAN equity zip (``daily_aapl.zip``, ``hour_spy.zip``) holds one headerless CSV,
``yyyyMMdd HH:mm,open,high,low,close,volume``, times in New York time, prices in deci-cents,
unadjusted for splits and dividends. ``read_lean_zip`` returns it in dollars with a naive New
York timestamp; ``write_csv`` writes such a frame in the layout ``FileProvider`` reads.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from titan_ray.domain.bars import FIELDS

LEAN_PRICE_SCALE = 10_000  # LEAN stores equity prices as integers in 1/10,000 of a dollar
LEAN_COLUMNS = ("timestamp", *FIELDS)


def read_lean_zip(path: str | Path) -> pd.DataFrame:
    """Columns timestamp (naive, New York time), open, high, low, close (dollars) and volume."""
    with zipfile.ZipFile(path) as archive:
        members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if len(members) != 1:
            raise ValueError(f"{path} should hold exactly one CSV file, it holds {members}")
        with archive.open(members[0]) as raw:
            frame = pd.read_csv(raw, header=None, names=list(LEAN_COLUMNS), dtype={"timestamp": str})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="%Y%m%d %H:%M")
    for name in ("open", "high", "low", "close"):
        frame[name] = frame[name] / LEAN_PRICE_SCALE
    frame["volume"] = frame["volume"].astype("int64")
    return frame


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write bars as ``timestamp,open,high,low,close,volume`` with a header; returns the path."""
    path = Path(path)
    frame.loc[:, list(LEAN_COLUMNS)].to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return path
