"""Domain types of the ledger: closed sets as enums, records as NamedTuples.

An order's whole story is kept: a rejected order is not an exception but a record with a reason
code and a detail (``"MAX_POSITION_EXCEEDED: max_position_pct=0.1, position_pct=0.25"``), in the
manner of nautilus_trader's risk engine. Records are NamedTuples: immutable, typed, and cheap
enough to create tens of thousands of times a second on the ledger's hot path.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class Side(str, Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(str, Enum):
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"  # some quantity filled; the rest still working
    REJECTED = "REJECTED"
    REPLACED = "REPLACED"  # a newer target superseded the unfilled rest


class RejectReason(str, Enum):
    INVALID_WEIGHT = "INVALID_WEIGHT"  # NaN/inf, outside -1..1, or negative for a long-only model
    NO_MARKET_DATA = "NO_MARKET_DATA"  # no finite price for the symbol on the fill bar
    NO_LIQUIDITY = "NO_LIQUIDITY"  # zero bar volume where participation or impact needs it
    MAX_POSITION_EXCEEDED = "MAX_POSITION_EXCEEDED"
    GROSS_EXPOSURE_EXCEEDED = "GROSS_EXPOSURE_EXCEEDED"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
    KILL_SWITCH = "KILL_SWITCH"


class HaltReason(str, Enum):
    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
    KILL_SWITCH = "KILL_SWITCH"


class Fill(NamedTuple):
    model: str
    order_id: int
    decision_id: str
    symbol: str
    timestamp: int  # ns UTC of the bar it filled on
    bar: int  # global bar index
    side: Side
    quantity: float  # always positive
    price: float  # after slippage
    reference_price: float  # the bar's open (next_open) or close (same_close) before slippage
    value_micro: int  # exact |quantity| x price
    commission_micro: int


class OrderRecord(NamedTuple):
    model: str
    order_id: int
    decision_id: str
    symbol: str
    timestamp: int  # bar the order was created on (its first fill attempt)
    bar: int
    side: Side
    quantity: float  # requested, positive
    filled: float
    status: OrderStatus
    reason: RejectReason | None
    detail: str


class RoundTrip(NamedTuple):
    """A position from opening to closing (flat again, or flipped)."""

    model: str
    symbol: str
    direction: int  # +1 long, -1 short
    entry_timestamp: int
    exit_timestamp: int
    entry_bar: int
    exit_bar: int
    quantity: float  # largest absolute size held
    entry_price: float  # volume-weighted
    exit_price: float  # volume-weighted
    pnl_micro: int  # exact, net of every commission of its fills
    commission_micro: int
