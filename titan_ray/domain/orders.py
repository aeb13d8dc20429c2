"""Domain types of the ledger: closed sets as enums, records as NamedTuples.

An order's whole story is kept: a rejected order is not an exception but a record with a reason
code and a detail (``"MAX_POSITION_EXCEEDED: max_position_pct=0.1, position_pct=0.25"``), in the
manner of nautilus_trader's risk engine. Records are NamedTuples: immutable, typed, and cheap
enough to create tens of thousands of times a second on the ledger's hot path.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple, TypeAlias

from titan_ray.domain.decisions import EXIT_RULES, DecisionId, ForcedId


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
    VAR_LIMIT = "VAR_LIMIT"  # the model's rolling VaR is past risk.max_var_pct: no new risk
    GROUP_EXPOSURE_EXCEEDED = "GROUP_EXPOSURE_EXCEEDED"  # a group's exposure would pass risk.max_group_pct


class HaltReason(str, Enum):
    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
    KILL_SWITCH = "KILL_SWITCH"


class ForcedBy(str, Enum):
    """The risk rule that made the ledger flatten a position on its own (no model asked).

    The orders and fills of one flattening carry its ``decision_id``: ``risk:RULE:MODEL:SYMBOL:BAR``
    (a ``ForcedId``), which "why?" answers with the rule, its threshold and the value that crossed it.
    """

    KILL_SWITCH = "risk:kill_switch"
    CIRCUIT_BREAKER = "risk:circuit_breaker"
    DAILY_LOSS_LIMIT = "risk:daily_loss_limit"
    # protective exits (``ledger.stops``): they close a position on the bar a level is crossed
    STOP_LOSS = "risk:stop_loss"
    TAKE_PROFIT = "risk:take_profit"
    TRAILING_STOP = "risk:trailing_stop"

    @property
    def flattens(self) -> bool:
        """A rule that flattens every position (and stages it for the next fill bar), not an exit."""
        return self.rule not in EXIT_RULES

    @property
    def reject_reason(self) -> RejectReason:
        """What a model's order on the same bar is rejected with: it gives way to this flattening
        (a protective exit fills on the bar it fires, so nothing ever gives way to one)."""
        if not self.flattens:
            raise ValueError(f"{self.value} is a protective exit: no order gives way to it")
        return RejectReason[self.name]

    @property
    def rule(self) -> str:
        """The rule's name in a ``ForcedId``: ``circuit_breaker``."""
        return self.value.removeprefix("risk:")

    @classmethod
    def of(cls, did: ForcedId) -> ForcedBy:
        return cls(f"risk:{did.rule}")

    def decision_id(self, model: str, symbol: str, bar: int) -> ForcedId:
        """The id of this rule's flattening of ``model``'s position in ``symbol``, fired at ``bar``."""
        return ForcedId(self.rule, model, symbol, bar)

    def __str__(self) -> str:
        return self.value


# Why an order exists: a model's decision, or a risk rule's flattening (a ``ForcedId``, itself a
# ``DecisionId``; the ledger writes one for every order a rule forces). Both are ``str``: their text
# is what results files and the API show. ``ForcedBy`` alone (the rule, no bar) stands for a forced
# target before the ledger has given it an id.
Cause: TypeAlias = DecisionId | ForcedBy


class PendingTarget(NamedTuple):
    """A target weight staged for the next fill bar, with what caused it."""

    weight: float
    cause: Cause


class Fill(NamedTuple):
    model: str
    order_id: int
    decision_id: Cause
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
    decision_id: Cause
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
