"""LedgerActor: the one actor that holds every virtual portfolio; a thin wrapper of ``Ledger``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray

from titan_ray.config import LedgerConfig, RiskConfig
from titan_ray.data.bars import BarBatch
from titan_ray.ledger.engine import Ledger, ModelResults
from titan_ray.metrics.performance import max_drawdown, returns_from_equity, sharpe
from titan_ray.models.decisions import Decisions


@ray.remote
class LedgerActor:
    def __init__(
        self,
        ledger: LedgerConfig,
        risk: RiskConfig,
        symbols: tuple[str, ...],
        calendar: str,
        models: dict[str, bool],
        periods_per_year: float,
    ) -> None:
        self._ledger = Ledger(ledger=ledger, risk=risk, symbols=symbols, calendar=calendar, models=models)
        self._periods = periods_per_year
        self._busy = 0.0  # seconds spent booking chunks: shows whether the ledger is the bottleneck

    def apply(self, seq: int, bars: BarBatch, *decisions: Decisions | None) -> dict[str, Any]:
        start = time.perf_counter()
        ack = self._ledger.apply(seq, bars, list(decisions))
        self._busy += time.perf_counter() - start
        return ack

    def busy_seconds(self) -> float:
        return self._busy

    def kill_switch(self, model: str, on: bool = True) -> None:
        self._ledger.kill_switch(model, on)

    def snapshot(self) -> list[dict[str, Any]]:
        """A light live leaderboard: enough for a terminal table while the replay runs."""
        rows = []
        for name, book in self._ledger.books.items():
            equity = np.concatenate(book.equity) if book.equity else np.empty(0)
            initial = book.portfolio.initial_cash_micro / 1e6
            r = returns_from_equity(equity, initial) if len(equity) else equity
            rows.append(
                {
                    "model": name,
                    "equity": float(equity[-1]) if len(equity) else initial,
                    "total_return": float(equity[-1] / initial - 1) if len(equity) else 0.0,
                    "sharpe": float(sharpe(r, self._periods)) if len(r) > 1 else float("nan"),
                    "max_drawdown": float(max_drawdown(r)) if len(r) else 0.0,
                    "n_trades": len(book.portfolio.round_trips),
                    "n_fills": len(book.fills),
                    "n_rejected": sum(o.status.value == "REJECTED" for o in book.orders),
                }
            )
        return rows

    def results(self) -> dict[str, ModelResults]:
        return self._ledger.results()
