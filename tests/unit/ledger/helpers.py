from __future__ import annotations

import numpy as np

from titan_ray.config import parse_config
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions
from titan_ray.ledger.engine import Ledger

DAY = 86_400 * 10**9
T0 = 1_704_200_000 * 10**9  # 2024-01-02


def batch(open_, close=None, volume=None, *, symbols=None, start=0, step=DAY) -> BarBatch:
    o = np.asarray(open_, dtype=float)
    if o.ndim == 1:
        o = o[:, None]
    c = o if close is None else np.asarray(close, dtype=float).reshape(o.shape)
    v = np.full(o.shape, 1e6) if volume is None else np.asarray(volume, dtype=float).reshape(o.shape)
    hi, lo = np.fmax(o, c), np.fmin(o, c)
    ts = T0 + (start + np.arange(len(o))) * step
    names = symbols or [f"S{i}" for i in range(o.shape[1])]
    return BarBatch.from_arrays(ts, names, open=o, high=hi, low=lo, close=c, volume=v, start=start)


def ledger(models=("m",), symbols=None, n_symbols=1, long_only=True, memory_rows=None, spill=None,
           **overrides) -> Ledger:
    raw = {"models": [{"name": "x", "kind": "buy_and_hold"}], **overrides}
    cfg = parse_config(raw)
    names = symbols or [f"S{i}" for i in range(n_symbols)]
    return Ledger(ledger=cfg.ledger, risk=cfg.risk, symbols=names, calendar="continuous",
                  models={m: long_only for m in models}, memory_rows=memory_rows, spill=spill)


def decisions(model, weights, start=0) -> Decisions:
    w = np.asarray(weights, dtype=float)
    if w.ndim == 1:
        w = w[:, None]
    return Decisions(model=model, start=start, weights=w)
