"""An arena in one process: models and the real ledger, no Ray (for validation, tests, benchmarks).

``backtest`` feeds bars to each model the way the arena does (warm-up chunks to ``observe``, the
rest to ``decide``, chunk by chunk) and books the decisions in the same ``Ledger`` the
``LedgerActor`` wraps, so fills, costs and risk are the arena's own. ``out_of_sample_returns``
gives each model's per-bar returns of equity over the traded bars: what the honesty checks test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from titan_ray.config import LedgerConfig, RiskConfig
from titan_ray.domain.bars import BarBatch
from titan_ray.ledger.engine import Ledger, ModelResults
from titan_ray.metrics.performance import returns_from_equity
from titan_ray.models.base import TradingModel


@dataclass(frozen=True)
class Backtest:
    results: dict[str, ModelResults]
    warmup: int

    def returns(self, name: str) -> np.ndarray:
        r = self.results[name]
        return returns_from_equity(np.asarray(r.equity), r.initial_cash_micro / 1e6)


def backtest(
    models: Sequence[TradingModel],
    bars: BarBatch,
    *,
    warmup: int,
    ledger: LedgerConfig | None = None,
    risk: RiskConfig | None = None,
    chunk_size: int = 256,
    calendar: str = "equities",
) -> Backtest:
    """Run ``models`` over ``bars`` (the first ``warmup`` bars observed, not traded)."""
    if not 0 <= warmup < len(bars):
        raise ValueError(f"warmup ({warmup}) must leave bars to trade (there are {len(bars)})")
    book = Ledger(ledger=ledger or LedgerConfig(), risk=risk or RiskConfig(), symbols=bars.symbols,
                  calendar=calendar, models={m.name: m.long_only for m in models})
    for chunk in bars.slice(0, warmup).chunks(chunk_size) if warmup else ():
        for m in models:
            m.observe(chunk)
    for seq, chunk in enumerate(bars.slice(warmup, len(bars)).chunks(chunk_size)):
        book.apply(seq, chunk, [m.decide(chunk) for m in models])
    return Backtest(book.results(), warmup)
