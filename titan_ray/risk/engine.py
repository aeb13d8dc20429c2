"""The risk rules, and the text each rejection they make carries.

The rules run compiled inside the ledger's booking core (``ledger/kernel.py``), where a model's
positions and equity are:

- the pre-trade check (``_check_order``) says whether one order may go ahead, given the model's
  position, equity and gross exposure at the fill bar. An order that only reduces exposure always
  passes (it is how a halted model gets flat). A kill switch or a tripped circuit breaker rejects
  every other order; so does a daily loss limit for the rest of its day; then the position limit
  (|position value| / equity after the fill, and equity must be positive) and the gross exposure
  limit (sum of |position value| / equity after the fill), compared with a relative slack of
  1e-12 so that an order sized to exactly the limit passes;
- the path-dependent limits (``_on_close``) watch the close equity of every bar: past
  ``max_drawdown_pct`` below its peak the model is halted for good (circuit breaker), past
  ``daily_loss_limit_pct`` below the day's opening equity it stops adding risk until the next
  session day; either way its positions are flattened at the next fill bar.

A rejection is a record with a reason code, never an exception. The kernel keeps each one as a
code and a number; ``reject_detail`` writes its text when results are read, in the manner of
nautilus_trader's risk engine: ``"MAX_POSITION_EXCEEDED: max_position_pct=0.1, position_pct=0.25"``.
"""

from __future__ import annotations

from titan_ray.config import RiskConfig
from titan_ray.ledger import kernel


def reject_detail(detail: int, number: float, risk: RiskConfig) -> str:
    """The text of a risk rejection: ``detail`` is the kernel's code, ``number`` the value it
    reported (the equity, position share or gross exposure the order would have had)."""
    if detail == kernel.DETAIL_KILL_SWITCH:
        return "KILL_SWITCH: the model's kill switch is on; only reducing orders pass"
    if detail == kernel.DETAIL_CIRCUIT_BREAKER:
        return f"CIRCUIT_BREAKER: drawdown passed max_drawdown_pct={risk.max_drawdown_pct}; model halted"
    if detail == kernel.DETAIL_DAILY_LOSS_LIMIT:
        return f"DAILY_LOSS_LIMIT: the day's loss passed daily_loss_limit_pct={risk.daily_loss_limit_pct}"
    if detail == kernel.DETAIL_EQUITY_NOT_POSITIVE:
        return f"MAX_POSITION_EXCEEDED: equity={number:.2f} is not positive"
    if detail == kernel.DETAIL_POSITION_PCT:
        return f"MAX_POSITION_EXCEEDED: max_position_pct={risk.max_position_pct}, position_pct={number:.6f}"
    if detail == kernel.DETAIL_GROSS_AFTER:
        return (f"GROSS_EXPOSURE_EXCEEDED: max_gross_exposure={risk.max_gross_exposure}, "
                f"gross_after={number:.6f}")
    raise ValueError(f"detail code {detail} is not a risk rejection")
