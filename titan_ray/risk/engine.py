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

A flattening a rule forces is explained like a model's decision. When a rule fires, the kernel
records, per position it flattens, the bar, the value that crossed the threshold, the threshold,
the equity and the position's weight (``kernel.FORCED``); ``forced_explanations`` turns those
records into explanation rows (method ``risk``, id ``risk:RULE:MODEL:SYMBOL:BAR``) whose sentence
reads "Went flat AAA (weight 0.25 → 0): risk rule max_drawdown_pct 30% fired at bar 812: drawdown
31.20% from the peak of 1,234,567.89 (equity 849,382.10); the model is halted for good".
"""

from __future__ import annotations

import math

import numpy as np

from titan_ray.config import RiskConfig
from titan_ray.domain.decisions import ExplanationBatch, action_phrase
from titan_ray.domain.orders import ForcedBy
from titan_ray.ledger import kernel

# The kernel's cause codes of the rules that flatten on their own.
FORCED_BY = {kernel.CAUSE_KILL_SWITCH: ForcedBy.KILL_SWITCH, kernel.CAUSE_CIRCUIT_BREAKER: ForcedBy.CIRCUIT_BREAKER,
             kernel.CAUSE_DAILY_LOSS_LIMIT: ForcedBy.DAILY_LOSS_LIMIT, kernel.CAUSE_STOP_LOSS: ForcedBy.STOP_LOSS,
             kernel.CAUSE_TAKE_PROFIT: ForcedBy.TAKE_PROFIT, kernel.CAUSE_TRAILING_STOP: ForcedBy.TRAILING_STOP}
EXITS = tuple(rule for rule in ForcedBy if not rule.flattens)  # the protective exits
# An explanation row's inputs per rule: the value measured, the threshold, the equity, the reference.
FORCED_FEATURES = {
    ForcedBy.CIRCUIT_BREAKER: ("drawdown", "max_drawdown_pct", "equity", "peak_equity"),
    ForcedBy.DAILY_LOSS_LIMIT: ("day_loss", "daily_loss_limit_pct", "equity", "day_start_equity"),
    ForcedBy.KILL_SWITCH: ("kill_switch", "equity"),
    **{rule: ("trigger_price", "level", "equity", "entry_price") for rule in EXITS},
}


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
    if detail == kernel.DETAIL_VAR_LIMIT:
        return (f"VAR_LIMIT: the {risk.var_method} {risk.var_level:.0%} VaR over {risk.var_window} bars is a loss "
                f"of {-number:.4%} of equity, past max_var_pct={risk.max_var_pct}; only reducing orders pass")
    if detail == kernel.DETAIL_GROUP_AFTER:
        return f"GROUP_EXPOSURE_EXCEEDED: max_group_pct={risk.max_group_pct}, group_after={number:.6f}"
    raise ValueError(f"detail code {detail} is not a risk rejection")


def forced_explanations(model: str, records: np.ndarray, symbols: tuple[str, ...]) -> list[ExplanationBatch]:
    """The explanation rows of ``model``'s forced flattenings (``kernel.FORCED`` records), in the
    order the rules fired: one batch per run of records of the same rule. The rows have method
    ``risk``, no base value, the rule's inputs (``FORCED_FEATURES``) with attribution 0, and a
    sentence that names the rule, its threshold and the value that crossed it."""
    out: list[ExplanationBatch] = []
    if not len(records):
        return out
    causes = records["cause"]
    starts = np.flatnonzero(np.r_[True, causes[1:] != causes[:-1]])
    for start, stop in zip(starts.tolist(), [*starts[1:].tolist(), len(records)], strict=True):
        r = records[start:stop]
        rule = FORCED_BY[int(r["cause"][0])]
        if rule is ForcedBy.KILL_SWITCH:
            values = np.column_stack([np.ones(len(r)), r["equity"]])
        else:
            values = np.column_stack([r["measured"], r["threshold"], r["equity"], r["reference"]])
        sentences = tuple(
            forced_sentence(rule, symbols[s], weight, bar, equity, measured, threshold, reference, price)
            for s, weight, bar, equity, measured, threshold, reference, price in zip(
                r["symbol"].tolist(), r["weight"].tolist(), r["bar"].tolist(), r["equity"].tolist(),
                r["measured"].tolist(), r["threshold"].tolist(), r["reference"].tolist(), r["price"].tolist(),
                strict=True))
        out.append(ExplanationBatch(
            model=model, kind="risk", method="risk", bar=r["bar"].copy(), symbol=r["symbol"].copy(),
            timestamp=r["timestamp"].copy(), old_weight=r["weight"].copy(), new_weight=np.zeros(len(r)),
            price=r["price"].copy(), base_value=np.full(len(r), math.nan), feature_names=FORCED_FEATURES[rule],
            values=values, attributions=np.zeros(values.shape), sentences=sentences, rule=rule.rule))
    return out


def forced_sentence(rule: ForcedBy, symbol: str, weight: float, bar: int, equity: float, measured: float,
                    threshold: float, reference: float, price: float = math.nan) -> str:
    """Why a rule flattened a position, for a trader: the action, the rule and its threshold, the
    value that crossed it and what follows."""
    action = action_phrase(symbol, weight, 0.0)
    if rule in EXITS:
        return exit_sentence(rule, action, bar, price, measured, threshold, reference)
    if rule is ForcedBy.KILL_SWITCH:
        return (f"{action}: the model's kill switch was turned on after bar {bar} (equity {equity:,.2f}); "
                "every position is flattened and only orders that reduce risk pass until it is turned off")
    limit = f"{threshold * 100:g}%"
    crossed = _percent_beyond(measured, threshold)
    if rule is ForcedBy.CIRCUIT_BREAKER:
        return (f"{action}: risk rule max_drawdown_pct {limit} fired at bar {bar}: drawdown {crossed} from the "
                f"peak of {reference:,.2f} (equity {equity:,.2f}); the model is halted for good")
    return (f"{action}: risk rule daily_loss_limit_pct {limit} fired at bar {bar}: the day's loss {crossed} "
            f"from its opening equity of {reference:,.2f} (equity {equity:,.2f}); no new risk until the next "
            "session day")


def exit_sentence(rule: ForcedBy, action: str, bar: int, price: float, measured: float, level: float,
                  entry: float) -> str:
    """Why a protective exit closed a position: its level against the entry, the price that crossed
    it, and whether it filled at the level or, the bar having opened through it, at the open."""
    name = {ForcedBy.STOP_LOSS: "stop-loss", ForcedBy.TAKE_PROFIT: "take-profit",
            ForcedBy.TRAILING_STOP: "trailing stop"}[rule]
    move = f" ({level / entry - 1:+.2%} from the entry {entry:,.4f})" if entry else ""
    if price != level:
        crossed = f"the bar opened at {measured:,.4f}, through the level: filled at the open (gap rule)"
    else:
        crossed = f"the bar traded at {measured:,.4f}: filled at the level"
    return f"{action}: {name} at {level:,.4f}{move} hit at bar {bar}; {crossed}"


def _percent_beyond(value: float, threshold: float) -> str:
    """``value`` as a percentage with two decimals, or as many more (up to 8) as it takes to read
    above ``threshold``."""
    for digits in range(2, 9):
        text = f"{value * 100:.{digits}f}%"
        if float(text[:-1]) > threshold * 100:
            return text
    return text
