"""A local Parquet cache of downloaded bars, so that a rerun of the same window needs no network.

Layout: ``ROOT/<source>/<symbol>.parquet`` (columns timestamp [int64 UTC ns], open, high, low,
close, volume) beside ``ROOT/<source>/coverage.json``, which records, per symbol, the time spans
that were downloaded completely ([start, end] in UTC ns, inclusive). A span is covered even where
it holds no bars (a holiday, a halted symbol): the cache remembers that the source had nothing
there, so a rerun does not ask again. ``source`` names everything that changes the numbers
(provider, asset class, feed, adjustment, bar size), e.g. ``alpaca-stocks-iex-all-1Min``.

Writes go to a temporary file renamed into place, so a run killed mid-write leaves the old cache.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from titan_ray.domain.bars import FIELDS

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_cache_root(configured: str | None) -> Path:
    """``data.cache.path``, else $TITAN_RAY_CACHE, else ~/.cache/titan-ray/bars."""
    raw = configured or os.environ.get("TITAN_RAY_CACHE") or "~/.cache/titan-ray/bars"
    return Path(raw).expanduser()


def _safe(name: str) -> str:
    return _SAFE.sub("-", name)


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in spans):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


class BarCache:
    """Bars of one source (see the module docstring), one Parquet file per symbol."""

    def __init__(self, root: Path, source: str) -> None:
        self.folder = Path(root) / _safe(source)

    def _file(self, symbol: str) -> Path:
        return self.folder / f"{_safe(symbol)}.parquet"

    def _coverage(self) -> dict[str, list[tuple[int, int]]]:
        path = self.folder / "coverage.json"
        if not path.exists():
            return {}
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}  # an unreadable index only costs a download
        return {s: [(int(a), int(b)) for a, b in spans] for s, spans in raw.items()}

    def spans(self, symbol: str) -> list[tuple[int, int]]:
        return self._coverage().get(symbol, [])

    def covers(self, symbol: str, start: int, end: int) -> bool:
        return any(a <= start and end <= b for a, b in self.spans(symbol))

    def missing(self, symbol: str, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end] the cache does not hold for ``symbol``."""
        gaps, cursor = [], start
        for a, b in self.spans(symbol):
            if b < cursor or a > end:
                continue
            if a > cursor:
                gaps.append((cursor, a - 1))
            cursor = max(cursor, b + 1)
        if cursor <= end:
            gaps.append((cursor, end))
        return gaps

    def load(self, symbol: str, start: int | None = None, end: int | None = None) -> pd.DataFrame:
        """The cached bars of ``symbol`` within [start, end] (all of them when unset)."""
        path = self._file(symbol)
        if not path.exists():
            return _empty()
        frame = pd.read_parquet(path)
        keep = np.ones(len(frame), dtype=bool)
        if start is not None:
            keep &= frame["timestamp"].to_numpy() >= start
        if end is not None:
            keep &= frame["timestamp"].to_numpy() <= end
        return frame[keep].reset_index(drop=True)

    def store(self, symbol: str, bars: pd.DataFrame, start: int, end: int) -> None:
        """Add downloaded ``bars`` of ``symbol`` covering [start, end] completely."""
        self.folder.mkdir(parents=True, exist_ok=True)
        old = self.load(symbol)
        new = bars[["timestamp", *FIELDS]].astype({"timestamp": np.int64, **{f: np.float64 for f in FIELDS}})
        # the fresh download wins where both hold a bar (a late correction, a new adjustment)
        merged = pd.concat([old[(old["timestamp"] < start) | (old["timestamp"] > end)], new])
        merged = merged.drop_duplicates("timestamp", keep="last").sort_values("timestamp").reset_index(drop=True)
        _atomic(self._file(symbol), lambda p: merged.to_parquet(p, index=False))
        coverage = self._coverage()
        coverage[symbol] = merge_spans([*coverage.get(symbol, []), (start, end)])
        text = json.dumps({s: [list(x) for x in v] for s, v in sorted(coverage.items())}, indent=1)
        _atomic(self.folder / "coverage.json", lambda p: Path(p).write_text(text))


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": np.empty(0, np.int64), **{f: np.empty(0) for f in FIELDS}})


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
