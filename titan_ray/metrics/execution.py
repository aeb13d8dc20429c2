"""Execution quality: implementation shortfall of parent orders (Perold 1988), against the arrival price.

A parent order's arrival price is the price when it was decided: the close of the decision's bar
(a protective exit's: its level). Its fills (the child orders of twap, vwap or pov, or the one
fill of an immediate order) cost, against that price,

    shortfall = side x (sum(q_i x p_i) - filled x arrival) + commission      (account currency)
    shortfall_bps = shortfall / (filled x arrival) x 1e4

with side +1 for a buy and -1 for a sell: positive is a cost (bought above, or sold below, the
arrival price), and it includes the slippage, the impact, the move between the decision and the
fills, and the commission. Only what filled is measured: the opportunity cost of a quantity that
never filled (a rejected or replaced order) is not charged. An order that filled nothing has no
shortfall (NaN).

``total_bps`` is the leaderboard's ``implementation_shortfall``: the notional-weighted mean over a
model's orders that filled, sum(shortfall) / sum(filled x arrival) x 1e4.
"""

from __future__ import annotations

import math

import numpy as np


def shortfall(side: np.ndarray, filled: np.ndarray, value: np.ndarray, commission_micro: np.ndarray,
              arrival: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per order: the shortfall in the account currency and in basis points of the arrival notional
    (``side`` +1 buy / -1 sell, ``value`` the fills' sum of quantity x price)."""
    side, filled, value = (np.asarray(a, dtype=np.float64) for a in (side, filled, value))
    arrival = np.asarray(arrival, dtype=np.float64)
    notional = filled * arrival
    measured = (filled > 0) & np.isfinite(arrival) & (arrival > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        money = np.where(measured, side * (value - notional) + np.asarray(commission_micro) / 1e6, np.nan)
        bps = np.where(measured, money / notional * 1e4, np.nan)
    return money, bps


def of_orders(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``shortfall`` of the ledger's order records (``side``, ``filled``, ``value``, ``commission``,
    ``arrival`` columns)."""
    return shortfall(rows["side"], rows["filled"], rows["value"], rows["commission"], rows["arrival"])


def total_bps(money: np.ndarray, filled: np.ndarray, arrival: np.ndarray) -> float:
    """sum(shortfall) / sum(filled x arrival) x 1e4 over the orders measured; NaN when none is."""
    ok = np.isfinite(money)
    notional = float((np.asarray(filled)[ok] * np.asarray(arrival)[ok]).sum())
    return float(money[ok].sum()) / notional * 1e4 if notional > 0 else math.nan
