"""Pre-trade risk checks and the per-model limits that watch equity bar by bar.

Two parts:
- ``check_order``: a pure function that says whether one order may go ahead, given the model's
  position, equity and gross exposure at the fill bar. An order that only reduces exposure always
  passes (it is how a halted model gets flat). It returns a reason code and a detail, never raises.
- ``RiskState``: the limits that depend on the path of equity (daily loss limit, drawdown circuit
  breaker) and the kill switch. ``on_close`` is called once per bar with the close equity and says
  whether the model must be flattened.
"""

from __future__ import annotations

from dataclasses import dataclass

from titan_ray.config import RiskConfig
from titan_ray.domain.orders import ForcedBy, HaltReason, RejectReason

# Position and exposure limits are compared with a relative slack of 1e-12, so that an order
# sized to exactly the limit is not rejected for the last bit of a float division.
_SLACK = 1e-12


def is_reducing(position: float, quantity: float) -> bool:
    """True when the order brings |position| down without crossing zero."""
    new = position + quantity
    return abs(new) < abs(position) and (new == 0 or (new > 0) == (position > 0))


def check_order(
    risk: RiskConfig,
    state: RiskState,
    position: float,
    quantity: float,
    price: float,
    equity: float,
    gross_value: float,
) -> tuple[RejectReason | None, str]:
    """Whether an order of ``quantity`` (signed) at ``price`` may execute; (None, "") when it may.

    ``gross_value`` is the model's sum of |position value| before this order, at the same marks.
    """
    if is_reducing(position, quantity):
        return None, ""
    if state.halted is HaltReason.KILL_SWITCH:
        return RejectReason.KILL_SWITCH, "KILL_SWITCH: the model's kill switch is on; only reducing orders pass"
    if state.halted is HaltReason.CIRCUIT_BREAKER:
        return (
            RejectReason.CIRCUIT_BREAKER,
            f"CIRCUIT_BREAKER: drawdown passed max_drawdown_pct={risk.max_drawdown_pct}; model halted",
        )
    if state.day_halted:
        return (
            RejectReason.DAILY_LOSS_LIMIT,
            f"DAILY_LOSS_LIMIT: the day's loss passed daily_loss_limit_pct={risk.daily_loss_limit_pct}",
        )
    new_value = abs((position + quantity) * price)
    if equity <= 0:
        return RejectReason.MAX_POSITION_EXCEEDED, f"MAX_POSITION_EXCEEDED: equity={equity:.2f} is not positive"
    pct = new_value / equity
    if pct > risk.max_position_pct * (1 + _SLACK):
        return (
            RejectReason.MAX_POSITION_EXCEEDED,
            f"MAX_POSITION_EXCEEDED: max_position_pct={risk.max_position_pct}, position_pct={pct:.6f}",
        )
    gross = (gross_value - abs(position * price) + new_value) / equity
    if gross > risk.max_gross_exposure * (1 + _SLACK):
        return (
            RejectReason.GROSS_EXPOSURE_EXCEEDED,
            f"GROSS_EXPOSURE_EXCEEDED: max_gross_exposure={risk.max_gross_exposure}, gross_after={gross:.6f}",
        )
    return None, ""


@dataclass
class RiskState:
    """Mutable per-model risk state, owned by the ledger's book of that model."""

    peak: float
    day: int = -1
    day_start_equity: float = 0.0
    day_halted: bool = False
    halted: HaltReason | None = None

    def new_bar(self, day: int, last_equity: float) -> None:
        if day != self.day:
            self.day = day
            self.day_start_equity = last_equity
            self.day_halted = False

    def on_close(self, risk: RiskConfig, equity: float) -> ForcedBy | None:
        """Update the limits with a bar's close equity; a reason to flatten, or None."""
        self.peak = max(self.peak, equity)
        if (
            risk.max_drawdown_pct is not None
            and self.halted is None
            and equity < self.peak * (1 - risk.max_drawdown_pct)
        ):
            self.halted = HaltReason.CIRCUIT_BREAKER
            return ForcedBy.CIRCUIT_BREAKER
        if (
            risk.daily_loss_limit_pct is not None
            and not self.day_halted
            and equity < self.day_start_equity * (1 - risk.daily_loss_limit_pct)
        ):
            self.day_halted = True
            return ForcedBy.DAILY_LOSS_LIMIT
        return None
