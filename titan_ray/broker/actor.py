"""PaperBrokerActor: one model's orders mirrored to an Alpaca paper account; a thin Ray wrapper.

The driver hands it each live chunk with that model's decisions and its latest ledger equity;
the ``OrderMirror`` sizes the orders, the ``PaperAccount`` sends them and collects fills. At the
end ``finish`` waits for open orders (``live.paper.fill_wait_s``), reconciles over REST, and
returns the divergence report against the ledger's fills. A failure to send is recorded on the
order; the arena never stops for the broker (the ledger stays the truth).
"""

from __future__ import annotations

from typing import Any

import ray

from titan_ray.broker.alpaca_paper import PaperAccount
from titan_ray.broker.crossval import OrderMirror, PaperOrder, divergence, fills_frame, summary
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions


@ray.remote
class PaperBrokerActor:
    def __init__(self, model: str, symbols: tuple[str, ...], alpaca_cfg: Any, environ: dict[str, str],
                 fractional: bool, bar_ns: int, run_id: str) -> None:
        self.model, self.bar_ns = model, bar_ns
        self.mirror = OrderMirror(model, symbols, fractional=fractional)
        self.account = PaperAccount(alpaca_cfg, environ, run_id=run_id)
        self.sent: list[PaperOrder] = []
        self.errors: list[str] = []
        self._symbols = tuple(symbols)

    def start(self) -> dict[str, Any]:
        """Check the account and note the positions it already holds (the mirror trades on top of them)."""
        info = self.account.start()
        baseline = self.account.positions(self._symbols)
        return {**info, "baseline_positions": baseline}

    def on_chunk(self, bars: BarBatch, decisions: Decisions | None, equity: float) -> int:
        self.account.pump()
        if decisions is None:
            return 0
        orders = self.mirror.orders(bars, decisions, equity)
        for order in orders:
            self.account.submit(order)
            self.sent.append(order)
        return len(orders)

    def finish(self, ledger_fills: list[Any], wait_s: float, cancel_open: bool) -> dict[str, Any]:
        self.account.wait(wait_s)
        try:
            self.account.reconcile(cancel_open)
        except Exception as err:  # noqa: BLE001 - the report is still worth having without the final REST check
            self.errors.append(f"reconcile: {type(err).__name__}: {err}"[:500])
        self.account.close()
        report = divergence(self.sent, ledger_fills, self.bar_ns)
        return {
            "divergence": report,
            "fills": fills_frame(self.sent, ledger_fills, self.model),
            "summary": {"model": self.model, **summary(report), "errors": self.errors},
        }
