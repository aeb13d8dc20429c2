"""Validation splits over time that never let a model see its test period's future.

Rows are timestamps. A label at row t depends on bars up to ``label_end[t]`` (t + horizon for a
forward return; the barrier touched for a triple-barrier label), so:

- ``walk_forward_splits``: test blocks march forward; each trains on rows before its block whose
  labels end before the block starts (expanding window, or the last ``train_size`` rows);
- ``purged_kfold`` (López de Prado): K contiguous test blocks; the training rows are all others
  except those whose label window overlaps the test block (purge) and the ``embargo`` rows just
  after it (serial correlation leaking back into the test block's features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices, increasing
    test: np.ndarray

    def __repr__(self) -> str:
        def span(a: np.ndarray) -> str:
            return f"{len(a)} rows [{a[0]}..{a[-1]}]" if len(a) else "0 rows"

        return f"Split(train={span(self.train)}, test={span(self.test)})"


def label_ends(n: int, horizon: int | np.ndarray) -> np.ndarray:
    """(n,) last row each label depends on: t + horizon, or t + horizon[t] per row."""
    h = np.broadcast_to(np.asarray(horizon), (n,))
    if np.any(h < 0):
        raise ValueError("horizon must be >= 0")
    return np.arange(n) + h.astype(np.int64)


def walk_forward_splits(
    n: int, *, n_splits: int, test_size: int | None = None, train_size: int | None = None,
    horizon: int | np.ndarray = 0, min_train: int = 1,
) -> list[Split]:
    """``n_splits`` consecutive test blocks at the end of ``n`` rows, each trained on the past only."""
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    test_size = test_size or n // (n_splits + 1)
    if test_size < 1 or test_size * n_splits >= n:
        raise ValueError(f"{n} rows cannot hold {n_splits} test blocks of {test_size} rows and a training block")
    ends = label_ends(n, horizon)
    splits = []
    for k in range(n_splits):
        start = n - (n_splits - k) * test_size
        test = np.arange(start, start + test_size)
        lo = 0 if train_size is None else max(0, start - train_size)
        candidates = np.arange(lo, start)
        train = candidates[ends[candidates] < start]
        if len(train) < min_train:
            raise ValueError(f"split {k}: only {len(train)} training rows before row {start} (min_train {min_train})")
        splits.append(Split(train, test))
    return splits


def purged_kfold(n: int, *, n_splits: int, horizon: int | np.ndarray = 0, embargo: float = 0) -> list[Split]:
    """K-fold over contiguous blocks, purged of label overlap and embargoed after each test block.

    ``embargo``: rows after each test block left out of training; a float < 1 is a share of n.
    """
    if n_splits < 2:
        raise ValueError(f"purged K-fold needs n_splits >= 2, got {n_splits}")
    if n < n_splits:
        raise ValueError(f"{n} rows cannot be split in {n_splits} folds")
    emb = int(np.ceil(embargo * n)) if 0 < embargo < 1 else int(embargo)
    if emb < 0:
        raise ValueError(f"embargo must be >= 0, got {embargo}")
    ends = label_ends(n, horizon)
    rows = np.arange(n)
    splits = []
    for block in np.array_split(rows, n_splits):
        a, b = int(block[0]), int(block[-1])
        overlaps = (rows <= b) & (ends >= a)  # the label window [t, end] touches the test block
        embargoed = (rows > b) & (rows <= b + emb)
        train = rows[~overlaps & ~embargoed]
        splits.append(Split(train, block.copy()))
    return splits


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equal-length series (ties broken by order); 0 when either
    is constant. The information coefficient of out-of-fold and validation scores."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])
