"""Rows that grow without end, held in bounded memory: the newest in RAM, the rest in files.

A live arena runs for as long as the market is open, day after day; what it keeps of the past must
not grow with it. ``SpilledColumns`` keeps named columns of equal length (a timestamp, a row of
values per symbol; or one column of records, as the ledger's books do) as an append-only table:
the newest ``memory_rows`` to ``2 * memory_rows`` rows in arrays, every older row in one raw file per
column, written once, in order, when the memory block fills. ``slice(i, j)`` reads any range back,
from the files, the arrays or both, so a model that restarts can still catch up from the first bar,
and a run's results are written from the whole table. Appends (a row, or a block of rows) are
amortised O(1); memory is bounded by the block size whatever the history; the files are deleted by
``close`` (the run's record is written from them before that). With ``memory_rows=None`` nothing
spills: the arrays grow by doubling (a ledger outside the arena, a test).

``SpilledList`` does the same for objects that are not columns (a chunk's explanation batch):
pickled to one file when the rows they hold pass a block.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def copy_rows(into: np.ndarray, at: int, rows: np.ndarray) -> None:
    """``into[at : at + len(rows)] = rows``; records (a dtype with fields) as bytes: numpy copies a
    record array field by field, ten to twenty times slower than the memory copy this is."""
    if into.dtype.fields is None or not rows.flags.c_contiguous:
        into[at : at + len(rows)] = rows
        return
    size = into.dtype.itemsize
    into.view(np.uint8)[at * size : (at + len(rows)) * size] = rows.view(np.uint8)


class SpilledColumns:
    """Named columns (each row of shape ``shapes[name]``, dtype ``dtypes[name]``), appended a row at a time."""

    def __init__(self, columns: dict[str, tuple[tuple[int, ...], np.dtype | type]], *, memory_rows: int | None,
                 folder: Path | None = None) -> None:
        if memory_rows is not None and memory_rows < 1:
            raise ValueError(f"memory_rows must be at least 1 (or None: never spill), not {memory_rows}")
        self._shapes = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in columns.items()}
        self._block = memory_rows
        # a table that spills takes twice the block at its first row (memory the system gives a page
        # at a time as rows are written: a large block costs nothing until rows fill it, and rows are
        # never copied to grow it); one that does not grows by doubling
        self._mem = {name: np.empty((0, *shape), dtype) for name, (shape, dtype) in self._shapes.items()}
        self._n_mem = 0  # rows in the arrays
        self._touched = 0  # the most rows the arrays have held: what of them is in RAM
        self._spilled = 0  # rows in the files, all older than those in the arrays
        self._own = folder is None
        self._folder: Path | None = None
        if memory_rows is not None:
            self._folder = Path(tempfile.mkdtemp(prefix="titan-ray-spill-")) if folder is None else Path(folder)
            self._folder.mkdir(parents=True, exist_ok=True)
        self._files = {name: (self._folder or Path()) / f"{name}.bin" for name in self._shapes}

    def __len__(self) -> int:
        return self._spilled + self._n_mem

    @property
    def spilled(self) -> int:
        """Rows that live in the files."""
        return self._spilled

    @property
    def memory_bytes(self) -> int:
        """What the arrays hold in RAM (the rows written so far): at most ``2 * memory_rows`` rows,
        whatever ``len(self)``."""
        return self._touched * sum(a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)) for a in self._mem.values())

    @property
    def rows_in_memory(self) -> int:
        """Rows held in RAM now (at most twice the block)."""
        return self._n_mem

    def append(self, **row: np.ndarray | float) -> None:
        self.extend(**{name: np.asarray(value)[None] for name, value in row.items()})

    def extend(self, **rows: np.ndarray) -> None:
        """Append a block of rows (every column the same length), oldest first."""
        n = len(next(iter(rows.values())))
        if self._block is not None and self._n_mem + n > 2 * self._block:
            # The newest ``block`` rows of the arrays and the new rows stay in RAM; the older go to
            # the files in order: first the arrays' older rows, then the new rows' older ones.
            keep = min(self._block, self._n_mem + n)
            out = self._n_mem + n - keep
            from_mem, from_new = min(out, self._n_mem), max(0, out - self._n_mem)
            self._room(keep)
            for name, a in self._mem.items():
                with self._files[name].open("ab") as f:
                    f.write(np.ascontiguousarray(a[:from_mem]).tobytes())
                    f.write(np.ascontiguousarray(rows[name][:from_new]).tobytes())
                copy_rows(a, 0, a[from_mem : self._n_mem])  # moved down (numpy copies overlapping ranges safely)
                copy_rows(a, self._n_mem - from_mem, np.ascontiguousarray(rows[name][from_new:]))
            self._spilled += out
            self._n_mem = keep
            self._touched = max(self._touched, keep)
            return
        self._room(self._n_mem + n)
        for name, a in self._mem.items():
            copy_rows(a, self._n_mem, np.ascontiguousarray(rows[name]))
        self._n_mem += n
        self._touched = max(self._touched, self._n_mem)

    def _room(self, rows: int) -> None:
        """Arrays of room for ``rows`` rows: twice the block at once when the table spills, else grown
        by doubling."""
        for name, a in self._mem.items():
            if rows > len(a):
                size = max(2 * len(a), rows, 16) if self._block is None else 2 * self._block
                grown = np.empty((size, *a.shape[1:]), a.dtype)
                copy_rows(grown, 0, a[: self._n_mem])
                self._mem[name] = grown

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

    def close(self) -> None:
        """Delete the files (when this table made its folder, the folder too)."""
        if self._folder is None:
            return
        if self._own:
            shutil.rmtree(self._folder, ignore_errors=True)
        else:
            for f in self._files.values():
                f.unlink(missing_ok=True)


class SpilledList:
    """Objects appended in order, each with a weight (the rows it holds): once the objects in RAM
    weigh more than ``memory_rows`` they are pickled to ``file`` (appended), and ``items`` reads
    every object back in order. ``memory_rows=None``: all stay in RAM."""

    def __init__(self, *, memory_rows: int | None, file: Path | None = None) -> None:
        if memory_rows is not None and file is None:
            raise ValueError("a SpilledList that spills needs a file")
        self._block, self._file = memory_rows, file
        self._mem: list[Any] = []
        self._weight = 0
        self.spilled = 0  # objects in the file

    def append(self, item: Any, weight: int = 1) -> None:
        self._mem.append(item)
        self._weight += weight
        if self._block is not None and self._weight > self._block:
            with self._file.open("ab") as f:
                pickle.dump(self._mem, f, protocol=pickle.HIGHEST_PROTOCOL)
            self.spilled += len(self._mem)
            self._mem, self._weight = [], 0

    def __len__(self) -> int:
        return self.spilled + len(self._mem)

    @property
    def memory_items(self) -> int:
        return len(self._mem)

    def items(self) -> Iterator[Any]:
        if self.spilled:
            with self._file.open("rb") as f:
                while True:
                    try:
                        yield from pickle.load(f)
                    except EOFError:
                        break
        yield from self._mem

    def close(self) -> None:
        if self._file is not None:
            self._file.unlink(missing_ok=True)
