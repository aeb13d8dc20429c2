"""Rows that grow without end, held in bounded memory: the newest in RAM, the rest in files.

A live arena runs for as long as the market is open, day after day; what it keeps of the past must
not grow with it. ``SpilledColumns`` keeps named columns of equal length (a timestamp, a row of
values per symbol) as an append-only table: the newest ``memory_rows`` to ``2 * memory_rows`` rows in
arrays, every older row in one raw file per column, written once, in order, when the memory block
fills. ``slice(i, j)`` reads any range back, from the files, the arrays or both, so a model that
restarts can still catch up from the first bar. Appends are amortised O(1); memory is bounded by the
block size whatever the history; the files are deleted by ``close`` (the run's record is written
from them before that).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np


class SpilledColumns:
    """Named columns (each row of shape ``shapes[name]``, dtype ``dtypes[name]``), appended a row at a time."""

    def __init__(self, columns: dict[str, tuple[tuple[int, ...], np.dtype | type]], *, memory_rows: int,
                 folder: Path | None = None) -> None:
        if memory_rows < 1:
            raise ValueError(f"memory_rows must be at least 1, not {memory_rows}")
        self._shapes = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in columns.items()}
        self._block = memory_rows
        self._mem = {name: np.empty((2 * memory_rows, *shape), dtype) for name, (shape, dtype) in self._shapes.items()}
        self._n_mem = 0  # rows in the arrays
        self._spilled = 0  # rows in the files, all older than those in the arrays
        self._own = folder is None
        self._folder = Path(tempfile.mkdtemp(prefix="titan-ray-spill-")) if folder is None else Path(folder)
        self._folder.mkdir(parents=True, exist_ok=True)
        self._files = {name: self._folder / f"{name}.bin" for name in self._shapes}

    def __len__(self) -> int:
        return self._spilled + self._n_mem

    @property
    def spilled(self) -> int:
        """Rows that live in the files."""
        return self._spilled

    @property
    def memory_bytes(self) -> int:
        """What the arrays hold in RAM: fixed by ``memory_rows``, whatever ``len(self)``."""
        return sum(a.nbytes for a in self._mem.values())

    def append(self, **row: np.ndarray | float) -> None:
        if self._n_mem == 2 * self._block:
            self._spill()
        for name, a in self._mem.items():
            a[self._n_mem] = row[name]
        self._n_mem += 1

    def slice(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start..stop-1`` of every column, as new arrays."""
        n = len(self)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"rows {start}..{stop} asked for; the table has {n}")
        out = {}
        for name, (shape, dtype) in self._shapes.items():
            parts = []
            if start < self._spilled:
                end = min(stop, self._spilled)
                count = (end - start) * int(np.prod(shape, dtype=np.int64))
                flat = np.fromfile(self._files[name], dtype=dtype, count=count,
                                   offset=start * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
                parts.append(flat.reshape(end - start, *shape))
            if stop > self._spilled:
                lo = max(start, self._spilled) - self._spilled
                parts.append(self._mem[name][lo:stop - self._spilled].copy())
            if not parts:
                parts.append(np.empty((0, *shape), dtype))
            out[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return out

    def _spill(self) -> None:
        """The older half of the arrays goes to the files; the newer half moves down."""
        k = self._block
        for name, a in self._mem.items():
            with self._files[name].open("ab") as f:
                f.write(np.ascontiguousarray(a[:k]).tobytes())
            a[:k] = a[k:2 * k]
        self._spilled += k
        self._n_mem -= k

    def close(self) -> None:
        """Delete the files (when this table made its folder, the folder too)."""
        if self._own:
            shutil.rmtree(self._folder, ignore_errors=True)
        else:
            for f in self._files.values():
                f.unlink(missing_ok=True)
