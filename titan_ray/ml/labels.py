"""Labels for supervised models: what happened after each bar, never known before it did.

A label at row t looks at closes t+1 .. t+h. Rows whose window runs past the data (the last
``horizon`` rows of a training window) are NaN: a model fitted on bars < b never learns from a
bar ≥ b. ``label_end`` tells the validation splits which bar each label depends on, for purging.

- ``forward_returns``: log(close[t+h] / close[t]); optionally minus the cross-sectional mean of
  the row (what a symbol does against the others, the market's move taken out).
- ``triple_barrier`` (López de Prado): +1 when the close first reaches the upper barrier
  log(close[t]) + width·σ_t·√h, −1 when it first reaches the lower one, 0 when neither is hit
  within ``horizon`` bars. σ_t is the standard deviation of 1-bar log returns over the
  ``vol_window`` bars up to t (causal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def forward_returns(close: np.ndarray, horizon: int, *, demean: bool = False) -> np.ndarray:
    """(T, S) log return from row t's close to row t+horizon's close; NaN where unknown."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 bar, got {horizon}")
    logc = np.log(np.asarray(close, dtype=np.float64))
    out = np.full(logc.shape, np.nan)
    if len(logc) > horizon:
        out[:-horizon] = logc[horizon:] - logc[:-horizon]
    if demean:
        out = _demean(out)
    return out


def _demean(x: np.ndarray) -> np.ndarray:
    valid = np.isfinite(x)
    n = valid.sum(axis=1, keepdims=True)
    mean = np.where(n > 0, np.where(valid, x, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1), np.nan)
    return x - mean


@dataclass(frozen=True)
class TripleBarrier:
    label: np.ndarray  # (T, S) +1 / -1 / 0, NaN where unknown
    exit_offset: np.ndarray  # (T, S) bars from t to the barrier that decided the label, NaN where unknown
    ret: np.ndarray  # (T, S) log return from t to that bar


def rolling_vol(close: np.ndarray, window: int) -> np.ndarray:
    """(T, S) sd (ddof 1) of the last ``window`` 1-bar log returns ending at each row; NaN before."""
    logc = np.log(np.asarray(close, dtype=np.float64))
    r = np.vstack([np.full((1, logc.shape[1]), np.nan), np.diff(logc, axis=0)])
    out = np.full(logc.shape, np.nan)
    if len(r) > window:
        view = np.lib.stride_tricks.sliding_window_view(r[1:], window, axis=0)  # (T-window, S, window)
        out[window:] = np.std(view, axis=-1, ddof=1)
    return out


def triple_barrier(
    close: np.ndarray, horizon: int, *, width: float = 1.0, vol_window: int = 20
) -> TripleBarrier:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 bar, got {horizon}")
    if width <= 0:
        raise ValueError(f"width must be > 0 (barriers in units of sigma*sqrt(horizon)), got {width}")
    logc = np.log(np.asarray(close, dtype=np.float64))
    t, s = logc.shape
    band = width * rolling_vol(close, vol_window) * math.sqrt(horizon)
    label = np.full((t, s), np.nan)
    exit_offset = np.full((t, s), np.nan)
    ret = np.full((t, s), np.nan)
    n = t - horizon  # rows whose whole window is inside the data
    if n <= 0:
        return TripleBarrier(label, exit_offset, ret)
    base, width_now = logc[:n], band[:n]
    decided = ~np.isfinite(base) | ~np.isfinite(width_now)
    lab = np.zeros((n, s))
    off = np.full((n, s), float(horizon))
    for k in range(1, horizon + 1):
        move = logc[k : k + n] - base
        up = ~decided & (move >= width_now)
        down = ~decided & (move <= -width_now)
        lab[up], lab[down] = 1.0, -1.0
        off[up | down] = k
        decided |= up | down
    end = np.arange(n)[:, None] + off.astype(np.int64)
    r = logc[end, np.arange(s)[None, :]] - base
    ok = np.isfinite(base) & np.isfinite(width_now) & np.isfinite(r)
    label[:n] = np.where(ok, lab, np.nan)
    exit_offset[:n] = np.where(ok, off, np.nan)
    ret[:n] = np.where(ok, r, np.nan)
    return TripleBarrier(label, exit_offset, ret)
