"""One model's virtual portfolio: cash, positions, average cost, P&L and its round trips.

Cash moves only through ``apply_fill`` (by the fill's exact value and its commission). Equity is
``cash + sum(position * mark)``. A round trip runs from the fill that opens a position to the fill
that makes it flat (or flips it); its P&L is the exact sum of its fills' cash flows, commissions
included, so the round trips of a run add up to its realized cash P&L to the micro-unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from titan_ray.ledger.money import from_micro
from titan_ray.ledger.types import RoundTrip


@dataclass
class _OpenTrip:
    direction: int
    entry_timestamp: int
    entry_bar: int
    flow_micro: int = 0
    commission_micro: int = 0
    entry_qty: float = 0.0
    entry_notional: float = 0.0
    exit_qty: float = 0.0
    exit_notional: float = 0.0
    max_qty: float = 0.0


class Portfolio:
    def __init__(self, model: str, symbols: tuple[str, ...], initial_cash_micro: int) -> None:
        self.model = model
        self.symbols = symbols
        self.initial_cash_micro = initial_cash_micro
        self.cash_micro = initial_cash_micro
        n = len(symbols)
        self.position = np.zeros(n)
        self.avg_cost = np.zeros(n)
        self.realized_pnl = np.zeros(n)  # float, average-cost method, net of commissions
        self.commission_paid_micro = 0
        self.traded_value_micro = 0
        self._trips: dict[int, _OpenTrip] = {}
        self.round_trips: list[RoundTrip] = []

    @property
    def cash(self) -> float:
        return from_micro(self.cash_micro)

    def equity(self, marks: np.ndarray) -> float:
        return self.cash_micro / 1e6 + float(self.position @ marks)

    def gross_value(self, marks: np.ndarray) -> float:
        return float(np.abs(self.position) @ marks)

    def apply_fill(
        self,
        s: int,
        quantity: float,
        price: float,
        value_micro: int,
        commission_micro: int,
        timestamp: int,
        bar: int,
    ) -> None:
        """Book a fill of signed ``quantity`` of symbol index ``s`` (buy > 0)."""
        flow = (-value_micro if quantity > 0 else value_micro) - commission_micro
        self.cash_micro += flow
        self.commission_paid_micro += commission_micro
        self.traded_value_micro += value_micro
        old = float(self.position[s])
        new = old + quantity
        self._book_cost(s, old, new, quantity, price, commission_micro)
        self._book_trip(s, old, new, quantity, price, flow, commission_micro, timestamp, bar)
        self.position[s] = new

    def _book_cost(self, s: int, old: float, new: float, q: float, price: float, comm: int) -> None:
        if old == 0 or (old > 0) == (q > 0):  # opening or adding
            self.avg_cost[s] = (self.avg_cost[s] * abs(old) + price * abs(q)) / abs(new)
        else:
            closed = min(abs(q), abs(old))
            self.realized_pnl[s] += (price - self.avg_cost[s]) * closed * (1 if old > 0 else -1)
            if new == 0:
                self.avg_cost[s] = 0.0
            elif (new > 0) != (old > 0):  # flipped: the rest opens at this price
                self.avg_cost[s] = price
        self.realized_pnl[s] -= comm / 1e6

    def _book_trip(
        self, s: int, old: float, new: float, q: float, price: float, flow: int, comm: int, ts: int, bar: int
    ) -> None:
        flipped = old != 0 and new != 0 and (new > 0) != (old > 0)
        if flipped:
            # Split the fill: the part that closes the old position, and the rest that opens anew.
            share = abs(old) / abs(q)
            close_flow, close_comm = round(flow * share), round(comm * share)
            self._add_to_trip(s, -old, price, close_flow, close_comm, closing=True)
            self._close_trip(s, ts, bar)
            self._open_trip(s, new, ts, bar)
            self._add_to_trip(s, new, price, flow - close_flow, comm - close_comm, closing=False)
            return
        if old == 0:
            self._open_trip(s, new, ts, bar)
        closing = abs(new) < abs(old)
        self._add_to_trip(s, q, price, flow, comm, closing=closing)
        if new == 0:
            self._close_trip(s, ts, bar)

    def _open_trip(self, s: int, new: float, ts: int, bar: int) -> None:
        self._trips[s] = _OpenTrip(direction=1 if new > 0 else -1, entry_timestamp=ts, entry_bar=bar)

    def _add_to_trip(self, s: int, q: float, price: float, flow: int, comm: int, *, closing: bool) -> None:
        trip = self._trips[s]
        trip.flow_micro += flow
        trip.commission_micro += comm
        if closing:
            trip.exit_qty += abs(q)
            trip.exit_notional += abs(q) * price
        else:
            trip.entry_qty += abs(q)
            trip.entry_notional += abs(q) * price
            trip.max_qty = max(trip.max_qty, trip.entry_qty - trip.exit_qty)

    def _close_trip(self, s: int, ts: int, bar: int) -> None:
        trip = self._trips.pop(s)
        self.round_trips.append(
            RoundTrip(
                model=self.model,
                symbol=self.symbols[s],
                direction=trip.direction,
                entry_timestamp=trip.entry_timestamp,
                exit_timestamp=ts,
                entry_bar=trip.entry_bar,
                exit_bar=bar,
                quantity=trip.max_qty,
                entry_price=trip.entry_notional / trip.entry_qty,
                exit_price=trip.exit_notional / trip.exit_qty,
                pnl_micro=trip.flow_micro,
                commission_micro=trip.commission_micro,
            )
        )

    def open_trip_pnl_micro(self) -> int:
        """Cash flows of the still-open round trips (their P&L before the positions are marked)."""
        return sum(t.flow_micro for t in self._trips.values())
