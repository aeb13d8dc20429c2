"""One model's virtual portfolio: cash, positions, average cost, P&L and its round trips.

Cash moves only through ``apply_fill`` (by the fill's exact value and its commission). Equity is
``cash + sum(position * mark)``. A round trip runs from the fill that opens a position to the fill
that makes it flat (or flips it); its P&L is the exact sum of its fills' cash flows, commissions
included, so the round trips of a run add up to its realized cash P&L to the micro-unit.
"""

from __future__ import annotations

import numpy as np

from titan_ray.domain.orders import RoundTrip

# An open round trip, kept as a plain list for speed (this is the ledger's hottest path):
# [direction, entry_timestamp, entry_bar, flow_micro, commission_micro,
#  entry_qty, entry_notional, exit_qty, exit_notional, max_qty]
_DIR, _TS, _BAR, _FLOW, _COMM, _EQ, _EN, _XQ, _XN, _MAX = range(10)


class Portfolio:
    def __init__(self, model: str, symbols: tuple[str, ...], initial_cash_micro: int) -> None:
        self.model = model
        self.symbols = symbols
        self.initial_cash_micro = initial_cash_micro
        self.cash_micro = initial_cash_micro
        n = len(symbols)
        self.position = np.zeros(n)
        self._avg_cost = [0.0] * n
        self._realized = [0.0] * n  # average-cost method, net of commissions
        self.commission_paid_micro = 0
        self.traded_value_micro = 0
        self._trips: dict[int, list] = {}
        self.round_trips: list[RoundTrip] = []

    @property
    def avg_cost(self) -> np.ndarray:
        return np.array(self._avg_cost)

    @property
    def realized_pnl(self) -> np.ndarray:
        return np.array(self._realized)

    def equity(self, marks: np.ndarray) -> float:
        return self.cash_micro / 1e6 + float((self.position * marks).sum())

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
        old = self.position.item(s)
        new = old + quantity
        self.position[s] = new
        size = abs(quantity)
        # average cost and realized P&L (float: an estimate for display, cash is the truth)
        avg = self._avg_cost[s]
        adding = old == 0 or (old > 0) == (quantity > 0)
        if adding:
            self._avg_cost[s] = (avg * abs(old) + price * size) / abs(new)
            self._realized[s] -= commission_micro / 1e6
        else:
            closed = min(abs(old), size)
            self._realized[s] += (price - avg) * closed * (1 if old > 0 else -1) - commission_micro / 1e6
            if new == 0:
                self._avg_cost[s] = 0.0
            elif (new > 0) != (old > 0):  # flipped: the rest opens at this price
                self._avg_cost[s] = price
        # round trips (exact cash flows)
        trips = self._trips
        if old == 0:
            trips[s] = [1 if new > 0 else -1, timestamp, bar, flow, commission_micro, size, size * price,
                        0.0, 0.0, size]
        elif adding:
            trip = trips[s]
            trip[_FLOW] += flow
            trip[_COMM] += commission_micro
            trip[_EQ] += size
            trip[_EN] += size * price
            held = trip[_EQ] - trip[_XQ]
            trip[_MAX] = max(trip[_MAX], held)
        elif new == 0 or (new > 0) == (old > 0):  # reducing, maybe to flat
            trip = trips[s]
            trip[_FLOW] += flow
            trip[_COMM] += commission_micro
            trip[_XQ] += size
            trip[_XN] += size * price
            if new == 0:
                self._close_trip(s, timestamp, bar)
        else:
            # Flipped: split the fill into the part that closes the old position and the rest.
            share = abs(old) / size
            close_flow, close_comm = round(flow * share), round(commission_micro * share)
            trip = trips[s]
            trip[_FLOW] += close_flow
            trip[_COMM] += close_comm
            trip[_XQ] += abs(old)
            trip[_XN] += abs(old) * price
            self._close_trip(s, timestamp, bar)
            rest = abs(new)
            trips[s] = [1 if new > 0 else -1, timestamp, bar, flow - close_flow, commission_micro - close_comm,
                        rest, rest * price, 0.0, 0.0, rest]

    def _close_trip(self, s: int, ts: int, bar: int) -> None:
        t = self._trips.pop(s)
        self.round_trips.append(
            RoundTrip(self.model, self.symbols[s], t[_DIR], t[_TS], ts, t[_BAR], bar, t[_MAX],
                      t[_EN] / t[_EQ], t[_XN] / t[_XQ], t[_FLOW], t[_COMM])
        )
