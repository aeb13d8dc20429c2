"""The ledger's booking core, compiled with numba: one model's chunk of bars booked in one call.

``book_chunk`` runs, for every bar of a chunk, what ``ledger/engine.py``'s docstring lists (new
day, staged orders filled, the close marked, path-dependent risk, new weights staged) on one
model's state, and writes what happened as records into growable structured arrays: fills,
orders (with a status, a reason code and the numbers of their detail text), round trips, the
equity curve, and the risk rules' forced flattenings (the rule, the value that crossed its
threshold, the position's weight: what "why?" shows for a fill no model asked for). ``Ledger`` (engine.py) calls it once per model and chunk; ``Book`` (portfolio.py)
owns the arrays; the texts and the domain's NamedTuples are made from the records only when
results are read. ``stage_weights`` and ``kill_switch`` are the two other entries, for weights
staged outside a chunk (the training env) and for the kill switch.

The parts, in the order they are used:

- exact money: ``value_micro`` is ``money.fill_value_micro`` in integers (the exact product of
  the float price and quantity, as 26-bit limbs, quantized once half-even) and ``commission`` is
  ``money.Commission`` (int64 while the product fits, else the Python function, exactly);
- ``pairwise_sum``: numpy's summation order, so that equity and gross exposure are the very
  floats ``(position * marks).sum()`` gave, and the curves stay bit-identical;
- slippage, sizing, the pre-trade risk check, the path-dependent limits, the portfolio's fill
  (cash, average cost, realized P&L, round trips), then the order flow (stage, execute) and the
  chunk loop.

Every float operation keeps the order of the Python ledger it replaced (kept in
``tests/unit/ledger/oracle.py``, which the differential tests compare against). All compiled code
lives in this one file on purpose: numba's on-disk cache (``cache=True``) is keyed by the file of
the function called, so a compiled function that called into another module would not be
recompiled when that module changed.

Money is int64 micro-units here (Python integers before): an amount beyond 2**62 micro-units
(4.6e12 of the account currency) raises OverflowError instead of wrapping.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, objmode

from titan_ray.ledger.money import MICRO, round_half_even

# --- codes shared with the Python side (engine.py maps them to the domain's enums) ---------------
# numpy integers, not Python ints: numba compiles a function once per distinct literal argument,
# and these are passed to helpers from many call sites (one compilation each would add seconds
# to the first, uncached compile).

# What caused an order (its decision_id): a model's decision at a bar, or a risk rule's flattening
# (its bar: the close that tripped the rule, or the last bar booked when the kill switch went on).
CAUSE_DECISION, CAUSE_KILL_SWITCH, CAUSE_CIRCUIT_BREAKER, CAUSE_DAILY_LOSS_LIMIT = np.arange(4)
# OrderStatus
FILLED, PARTIALLY_FILLED, REJECTED, REPLACED = np.arange(4)
# RejectReason (0: none)
(NO_REASON, INVALID_WEIGHT, NO_MARKET_DATA, NO_LIQUIDITY, MAX_POSITION_EXCEEDED, GROSS_EXPOSURE_EXCEEDED,
 DAILY_LOSS_LIMIT, CIRCUIT_BREAKER, KILL_SWITCH) = np.arange(9)
# HaltReason (0: not halted)
HALT_NONE, HALT_CIRCUIT_BREAKER, HALT_KILL_SWITCH = np.arange(3)
# Which text an order's detail is (its numbers are in detail_a, detail_b)
(DETAIL_NONE, DETAIL_REPLACED, DETAIL_NO_MARKET_DATA, DETAIL_NO_LIQUIDITY, DETAIL_KILL_SWITCH,
 DETAIL_CIRCUIT_BREAKER, DETAIL_DAILY_LOSS_LIMIT, DETAIL_EQUITY_NOT_POSITIVE, DETAIL_POSITION_PCT,
 DETAIL_GROSS_AFTER, DETAIL_GAVE_WAY, DETAIL_INVALID_WEIGHT) = np.arange(12)
BUY, SELL = np.int64(1), np.int64(-1)  # an order's or a fill's side

# --- the state and the records, as numpy structured dtypes ---------------------------------------

ACCOUNT = np.dtype([
    ("cash", "i8"), ("initial_cash", "i8"), ("next_order_id", "i8"),
    ("n_pending", "i8"),  # symbols with a staged target: SYMBOL_STATE.pending_slot[:n_pending]
    ("n_working", "i8"),  # orders still working (wk_id != 0)
    ("last_equity", "f8"),
    # the path-dependent limits and the kill switch
    ("peak", "f8"), ("day", "i8"), ("day_start_equity", "f8"), ("day_halted", "i8"), ("halted", "i8"),
    ("last_bar", "i8"), ("last_timestamp", "i8"),  # the last bar booked (-1: none yet), for the kill switch
    # records written so far in the book's arrays
    ("n_fills", "i8"), ("n_orders", "i8"), ("n_trips", "i8"), ("n_curve", "i8"), ("n_forced", "i8"),
])

SYMBOL_STATE = np.dtype([
    ("position", "f8"), ("avg_cost", "f8"), ("realized", "f8"),
    ("target", "f8"),  # last accepted target weight
    # a target staged for the next fill bar, and what caused it
    ("pending", "i8"), ("pending_weight", "f8"), ("pending_cause", "i8"), ("pending_bar", "i8"),
    # row k holds the k-th symbol staged (k < n_pending): pending targets execute in staging order
    ("pending_slot", "i8"),
    # the working order (wk_id 0: none); created at (wk_timestamp, wk_bar)
    ("wk_id", "i8"), ("wk_cause", "i8"), ("wk_cause_bar", "i8"), ("wk_timestamp", "i8"), ("wk_bar", "i8"),
    ("wk_requested", "f8"), ("wk_remaining", "f8"),  # signed
    # the open round trip (trip_direction 0: flat)
    ("trip_direction", "i8"), ("trip_timestamp", "i8"), ("trip_bar", "i8"), ("trip_flow", "i8"),
    ("trip_commission", "i8"), ("trip_entry_qty", "f8"), ("trip_entry_notional", "f8"),
    ("trip_exit_qty", "f8"), ("trip_exit_notional", "f8"), ("trip_max_qty", "f8"),
])

FILL = np.dtype([
    ("order_id", "i8"), ("cause", "i8"), ("cause_bar", "i8"), ("symbol", "i8"), ("timestamp", "i8"),
    ("bar", "i8"), ("side", "i8"), ("quantity", "f8"), ("price", "f8"), ("reference_price", "f8"),
    ("value", "i8"), ("commission", "i8"),
])

ORDER = np.dtype([
    ("order_id", "i8"), ("cause", "i8"), ("cause_bar", "i8"), ("symbol", "i8"), ("timestamp", "i8"),
    ("bar", "i8"), ("side", "i8"), ("quantity", "f8"), ("filled", "f8"), ("status", "i8"), ("reason", "i8"),
    ("detail", "i8"), ("detail_a", "f8"), ("detail_b", "f8"),
])

TRIP = np.dtype([
    ("symbol", "i8"), ("direction", "i8"), ("entry_timestamp", "i8"), ("exit_timestamp", "i8"),
    ("entry_bar", "i8"), ("exit_bar", "i8"), ("quantity", "f8"), ("entry_price", "f8"), ("exit_price", "f8"),
    ("pnl", "i8"), ("commission", "i8"),
])

CURVE = np.dtype([("timestamp", "i8"), ("equity", "f8"), ("cash", "f8"), ("gross", "f8")])

# A risk rule's flattening of one position, recorded when the rule fires (its orders and fills carry
# the cause and ``bar``): what ``why`` shows for a fill no model asked for.
FORCED = np.dtype([
    ("cause", "i8"),  # CAUSE_KILL_SWITCH, CAUSE_CIRCUIT_BREAKER or CAUSE_DAILY_LOSS_LIMIT
    ("bar", "i8"), ("timestamp", "i8"),  # the close that tripped the rule (kill switch: the last bar booked)
    ("symbol", "i8"),
    ("weight", "f8"),  # the position's share of equity then: position x price / equity
    ("price", "f8"),  # the symbol's mark at that close
    ("equity", "f8"),  # the model's equity at that close
    ("measured", "f8"),  # drawdown from the peak, or the day's loss, as a fraction (NaN: kill switch)
    ("threshold", "f8"),  # max_drawdown_pct or daily_loss_limit_pct (NaN: kill switch)
    ("reference", "f8"),  # the peak equity, or the day's opening equity (NaN: kill switch)
])


def records_bound(n_bars: int, n_symbols: int) -> tuple[int, int, int, int, int]:
    """The most fills, orders, round trips, curve rows and forced flattenings one chunk of
    ``n_bars`` (or a kill switch, with ``n_bars`` 0) can write.

    Per bar and symbol: one fill (and one round trip closed by it); orders: one invalid weight,
    one give-way at staging, a replaced order and a rejection when the target executes, and the
    working order's end; one forced flattening per bar (a rule fires at most once per close) and
    symbol, and one per symbol for a kill switch.
    """
    cells = n_bars * n_symbols
    return cells, 5 * cells, cells, n_bars, cells + n_symbols


class Rules(NamedTuple):
    """The ledger and risk settings, as the kernel reads them (NaN: the setting is off)."""

    next_open: bool
    path_limits: bool  # a daily loss limit or a drawdown breaker is set
    fixed_quantity: float  # NaN: target_weight sizing
    fractional: bool
    max_participation: float
    slippage_fraction: float  # the slippage model's bps / 1e4
    sqrt_impact: bool
    impact_coefficient: float
    commission_num: int  # commission_bps as num / den, den including the 1e4 of basis points
    commission_den: int
    max_position_pct: float
    max_gross_exposure: float
    daily_loss_limit_pct: float
    max_drawdown_pct: float


_FRACTION_STEP = 1e-6  # fractional quantities are truncated to a millionth of a share
_MAX_IMPACT = 0.5  # square-root impact is capped so that a sell price stays positive
# Position and exposure limits are compared with a relative slack of 1e-12, so that an order sized
# to exactly the limit is not rejected for the last bit of a float division.
_SLACK = 1e-12
_MONEY_LIMIT = 1 << 62  # int64 micro-units with room for a sum of two
_FAST_PRODUCT = 9.0e18  # below 2**63 by more than a float product's rounding
_LIMB_BITS = 26
_LIMB_MASK = (1 << _LIMB_BITS) - 1
_TWO_53 = float(1 << 53)

# --- exact money ---------------------------------------------------------------------------------


@njit(cache=True)
def value_micro(quantity: float, price: float) -> int:
    """|quantity| x price in micro-units, quantized once half-even: ``money.fill_value_micro``.

    A finite float is m x 2**e with m an integer of 53 bits, so |quantity| x price x 1e6 is the
    integer N = a x b x 1e6 (2**123 <= N < 2**126) times 2**-k. N is formed exactly in five
    26-bit limbs and shifted right, the bits shifted out deciding the half-even rounding.
    """
    q, p = abs(quantity), abs(price)
    if q == 0.0 or p == 0.0:
        return 0
    mq, eq = math.frexp(q)
    mp, ep = math.frexp(p)
    a, b = np.int64(mq * _TWO_53), np.int64(mp * _TWO_53)  # exact: the 53-bit significands
    a0, a1, a2 = a & _LIMB_MASK, (a >> _LIMB_BITS) & _LIMB_MASK, a >> 52
    b0, b1, b2 = b & _LIMB_MASK, (b >> _LIMB_BITS) & _LIMB_MASK, b >> 52
    # a x b by columns, carrying as we go (each column stays below 2**55)
    c0 = a0 * b0
    c1 = a0 * b1 + a1 * b0 + (c0 >> _LIMB_BITS)
    c2 = a0 * b2 + a1 * b1 + a2 * b0 + (c1 >> _LIMB_BITS)
    c3 = a1 * b2 + a2 * b1 + (c2 >> _LIMB_BITS)
    c4 = a2 * b2 + (c3 >> _LIMB_BITS)
    # times 1e6 (< 2**20): each limb product stays below 2**47; the top limb ends below 2**22
    v0 = (c0 & _LIMB_MASK) * MICRO
    v1 = (c1 & _LIMB_MASK) * MICRO + (v0 >> _LIMB_BITS)
    v2 = (c2 & _LIMB_MASK) * MICRO + (v1 >> _LIMB_BITS)
    v3 = (c3 & _LIMB_MASK) * MICRO + (v2 >> _LIMB_BITS)
    v4 = c4 * MICRO + (v3 >> _LIMB_BITS)
    limbs = (v0 & _LIMB_MASK, v1 & _LIMB_MASK, v2 & _LIMB_MASK, v3 & _LIMB_MASK, v4)
    length = 104 + math.frexp(float(v4))[1]  # bits of N: v4 > 0, exact as a float
    k = 106 - eq - ep  # N x 2**-k; k > 60 whenever the value fits
    if length - k > 62:
        raise OverflowError("a fill's value passed 2**62 micro-units (4.6e12 of the account currency)")
    if k > length:  # below one half: rounds to zero
        return 0
    out = 0
    for j in range(5):
        offset = _LIMB_BITS * j - k
        if offset >= 0:
            out |= limbs[j] << offset
        elif offset > -_LIMB_BITS:
            out |= limbs[j] >> -offset
    half_limb, half_bit = (k - 1) // _LIMB_BITS, (k - 1) % _LIMB_BITS
    half = (limbs[half_limb] >> half_bit) & 1
    sticky = limbs[half_limb] & ((1 << half_bit) - 1)
    for j in range(half_limb):
        sticky |= limbs[j]
    if half and (sticky or out & 1):
        out += 1
    return -out if price < 0 else out


@njit(cache=True)
def commission(value: int, num: int, den: int) -> int:
    """``value`` x num / den micro-units, half-even: ``money.Commission`` for num / den."""
    if num == 0:
        return 0
    v = abs(value)
    if float(v) * float(num) >= _FAST_PRODUCT:  # more than 63 bits: Python's integers, exactly
        with objmode(out="int64"):
            out = round_half_even(value * num, den)
        return out
    prod = v * num
    quo = prod // den
    twice = 2 * (prod - quo * den)
    if twice > den or (twice == den and quo & 1):
        quo += 1
    return -quo if value < 0 else quo


@njit(cache=True)
def _add_money(a: int, b: int) -> int:
    out = a + b
    if abs(out) >= _MONEY_LIMIT:
        raise OverflowError("cash passed 2**62 micro-units (4.6e12 of the account currency)")
    return out


# --- sums in numpy's order -----------------------------------------------------------------------


@njit(cache=True)
def pairwise_sum(a: np.ndarray) -> float:
    """sum(a) in numpy's pairwise order (its ``pairwise_sum``: 8 running sums combined as a tree,
    blocks over 128 halved), so the float is the one ``a.sum()`` gives."""
    n = len(a)
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n <= 128:
        r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
        i = 8
        while i < n - n % 8:
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[i]
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return pairwise_sum(a[:half]) + pairwise_sum(a[half:])


@njit(cache=True)
def _value_sum(position: np.ndarray, marks: np.ndarray, scratch: np.ndarray) -> float:
    """sum(position * marks) as numpy sums the products: the value of the holdings."""
    n = len(marks)
    for s in range(n):
        scratch[s] = position[s] * marks[s]
    return pairwise_sum(scratch[:n])


@njit(cache=True)
def _gross_sum(position: np.ndarray, marks: np.ndarray, scratch: np.ndarray) -> float:
    """sum(|position| * marks) as numpy sums the products: the gross exposure."""
    n = len(marks)
    for s in range(n):
        scratch[s] = abs(position[s]) * marks[s]
    return pairwise_sum(scratch[:n])


# --- slippage, sizing, risk ----------------------------------------------------------------------


@njit(cache=True)
def _slipped_price(rules: Rules, reference: float, direction: float, quantity: float, volume: float) -> float:
    """The fill price (fixed bps, or the square-root law on participation); NaN: no liquidity."""
    frac = rules.slippage_fraction
    if rules.sqrt_impact:
        if not volume > 0:
            return math.nan
        frac = min(frac + rules.impact_coefficient * math.sqrt(quantity / volume), _MAX_IMPACT)
    return reference * (1 + direction * frac)


@njit(cache=True)
def _target_quantity(rules: Rules, position: float, weight: float, equity: float, ref: float) -> float:
    """Shares to hold for ``weight`` of ``equity``, sized at the price the order would fill at."""
    if not math.isnan(rules.fixed_quantity):
        return math.copysign(rules.fixed_quantity, weight) if weight != 0 else 0.0
    raw = weight * equity / ref
    direction = 1.0 if raw > position else (-1.0 if raw < position else 0.0)
    fill_price = ref * (1 + direction * rules.slippage_fraction)
    target = weight * equity / fill_price
    if not math.isfinite(target):
        raise ValueError("an order's size is not a number: equity is not finite at the fill bar "
                         "(a symbol without any price yet makes the marks NaN)")
    if rules.fractional:
        return np.trunc(target / _FRACTION_STEP) * _FRACTION_STEP + 0.0  # + 0.0: never -0.0
    return np.trunc(target) + 0.0


@njit(cache=True)
def is_reducing(position: float, quantity: float) -> bool:
    """True when the order brings |position| down without crossing zero."""
    new = position + quantity
    return abs(new) < abs(position) and (new == 0 or (new > 0) == (position > 0))


@njit(cache=True)
def _check_order(rules: Rules, account: np.void, position: float, quantity: float, price: float,
                 equity: float, gross_value: float) -> tuple[int, int, float]:
    """Whether an order may execute: (reason, detail, detail number); reason 0 when it may.

    ``gross_value`` is the sum of |position value| before this order, at the same marks. An order
    that only reduces exposure always passes (it is how a halted model gets flat).
    """
    if is_reducing(position, quantity):
        return NO_REASON, DETAIL_NONE, 0.0
    if account.halted == HALT_KILL_SWITCH:
        return KILL_SWITCH, DETAIL_KILL_SWITCH, 0.0
    if account.halted == HALT_CIRCUIT_BREAKER:
        return CIRCUIT_BREAKER, DETAIL_CIRCUIT_BREAKER, 0.0
    if account.day_halted:
        return DAILY_LOSS_LIMIT, DETAIL_DAILY_LOSS_LIMIT, 0.0
    new_value = abs((position + quantity) * price)
    if equity <= 0:
        return MAX_POSITION_EXCEEDED, DETAIL_EQUITY_NOT_POSITIVE, equity
    pct = new_value / equity
    if pct > rules.max_position_pct * (1 + _SLACK):
        return MAX_POSITION_EXCEEDED, DETAIL_POSITION_PCT, pct
    gross = (gross_value - abs(position * price) + new_value) / equity
    if gross > rules.max_gross_exposure * (1 + _SLACK):
        return GROSS_EXPOSURE_EXCEEDED, DETAIL_GROSS_AFTER, gross
    return NO_REASON, DETAIL_NONE, 0.0


@njit(cache=True)
def _ratio(a: float, b: float) -> float:
    """a / b, NaN where b is 0 (numba's division would raise)."""
    return a / b if b != 0 else math.nan


@njit(cache=True)
def _on_close(rules: Rules, account: np.void, equity: float) -> tuple[int, float, float, float]:
    """Update the path-dependent limits with a bar's close equity: a cause to flatten (or 0), the
    value that crossed the rule's threshold (the drawdown from the peak, the day's loss, as
    fractions), the threshold, and the equity the value is measured from (the peak, the day's
    opening equity)."""
    account.peak = max(account.peak, equity)
    if (not math.isnan(rules.max_drawdown_pct) and account.halted == HALT_NONE
            and equity < account.peak * (1 - rules.max_drawdown_pct)):
        account.halted = HALT_CIRCUIT_BREAKER
        peak = account.peak
        return CAUSE_CIRCUIT_BREAKER, _ratio(peak - equity, peak), rules.max_drawdown_pct, peak
    if (not math.isnan(rules.daily_loss_limit_pct) and not account.day_halted
            and equity < account.day_start_equity * (1 - rules.daily_loss_limit_pct)):
        account.day_halted = 1
        start = account.day_start_equity
        return CAUSE_DAILY_LOSS_LIMIT, _ratio(start - equity, start), rules.daily_loss_limit_pct, start
    return 0, math.nan, math.nan, math.nan


@njit(cache=True)
def _flatten(account: np.void, state: np.ndarray, forced: np.ndarray, cause: int, bar: int, timestamp: int,
             marks: np.ndarray, equity: float, measured: float, threshold: float, reference: float) -> None:
    """Stage the flattening of every position for a risk rule that fired at ``bar``, and record
    each with the numbers that explain it (one record per symbol; a flattening already staged by
    the same rule at the same bar, a kill switch turned on twice, is not recorded again)."""
    for s in range(len(state)):
        st = state[s]
        if st.position == 0:
            continue
        if not (st.pending and st.pending_cause == cause and st.pending_bar == bar):
            k = account.n_forced
            if k >= len(forced):
                raise IndexError("the ledger's forced-flattening records are full (Book.reserve was not called)")
            r = forced[k]
            r.cause, r.bar, r.timestamp, r.symbol = cause, bar, timestamp, s
            r.weight, r.price = _ratio(st.position * marks[s], equity), marks[s]
            r.equity, r.measured, r.threshold, r.reference = equity, measured, threshold, reference
            account.n_forced = k + 1
        set_pending(account, state, s, 0.0, cause, bar)


@njit(cache=True)
def _forced_reason(cause: int) -> int:
    """What a model's order is rejected with when it meets a risk flattening on the same bar."""
    if cause == CAUSE_KILL_SWITCH:
        return KILL_SWITCH
    if cause == CAUSE_CIRCUIT_BREAKER:
        return CIRCUIT_BREAKER
    return DAILY_LOSS_LIMIT


# --- records -------------------------------------------------------------------------------------


@njit(cache=True)
def _order(account: np.void, orders: np.ndarray, order_id: int, cause: int, cause_bar: int, s: int,
           timestamp: int, bar: int, side: int, quantity: float, filled: float, status: int, reason: int,
           detail: int, detail_a: float, detail_b: float) -> None:
    k = account.n_orders
    if k >= len(orders):
        raise IndexError("the ledger's order records are full (Book.reserve was not called)")
    o = orders[k]
    o.order_id, o.cause, o.cause_bar, o.symbol, o.timestamp, o.bar = order_id, cause, cause_bar, s, timestamp, bar
    o.side, o.quantity, o.filled, o.status, o.reason = side, quantity, filled, status, reason
    o.detail, o.detail_a, o.detail_b = detail, detail_a, detail_b
    account.n_orders = k + 1


@njit(cache=True)
def _reject_new(account: np.void, orders: np.ndarray, s: int, cause: int, cause_bar: int, timestamp: int,
                bar: int, reason: int, detail: int) -> None:
    """An order rejected before it existed: a new id, nothing requested."""
    account.next_order_id += 1
    _order(account, orders, account.next_order_id, cause, cause_bar, s, timestamp, bar, BUY, 0.0, 0.0, REJECTED,
           reason, detail, 0.0, 0.0)


@njit(cache=True)
def _finish(account: np.void, state: np.ndarray, orders: np.ndarray, s: int, status: int, reason: int,
            detail: int, detail_a: float) -> None:
    """The working order of symbol ``s`` ends (filled, rejected or replaced) and is recorded."""
    w = state[s]
    requested = w.wk_requested
    _order(account, orders, w.wk_id, w.wk_cause, w.wk_cause_bar, s, w.wk_timestamp, w.wk_bar,
           BUY if requested > 0 else SELL, abs(requested), abs(requested - w.wk_remaining), status, reason, detail,
           detail_a, 0.0)
    w.wk_id = 0
    account.n_working -= 1


# --- the portfolio -------------------------------------------------------------------------------


@njit(cache=True)
def _open_trip(state: np.ndarray, s: int, direction: int, timestamp: int, bar: int, flow: int, comm: int,
               size: float, price: float) -> None:
    st = state[s]
    st.trip_direction, st.trip_timestamp, st.trip_bar = direction, timestamp, bar
    st.trip_flow, st.trip_commission = flow, comm
    st.trip_entry_qty, st.trip_entry_notional = size, size * price
    st.trip_exit_qty, st.trip_exit_notional, st.trip_max_qty = 0.0, 0.0, size


@njit(cache=True)
def _close_trip(account: np.void, state: np.ndarray, trips: np.ndarray, s: int, timestamp: int, bar: int) -> None:
    k = account.n_trips
    if k >= len(trips):
        raise IndexError("the ledger's round-trip records are full (Book.reserve was not called)")
    st, r = state[s], trips[k]
    r.symbol, r.direction, r.entry_timestamp, r.exit_timestamp = s, st.trip_direction, st.trip_timestamp, timestamp
    r.entry_bar, r.exit_bar, r.quantity = st.trip_bar, bar, st.trip_max_qty
    r.entry_price = st.trip_entry_notional / st.trip_entry_qty
    r.exit_price = st.trip_exit_notional / st.trip_exit_qty
    r.pnl, r.commission = st.trip_flow, st.trip_commission
    st.trip_direction = 0
    account.n_trips = k + 1


@njit(cache=True)
def _apply_fill(account: np.void, state: np.ndarray, trips: np.ndarray, s: int, quantity: float, price: float,
                value: int, comm: int, timestamp: int, bar: int) -> None:
    """Book a fill of signed ``quantity`` (buy > 0): cash by its exact value and commission, the
    position, average cost and realized P&L (floats: an estimate for display, cash is the truth),
    and the round trip, whose P&L is the exact sum of its fills' cash flows."""
    flow = (-value if quantity > 0 else value) - comm
    account.cash = _add_money(account.cash, flow)
    st = state[s]
    old = st.position
    new = old + quantity
    st.position = new
    size = abs(quantity)
    avg = st.avg_cost
    adding = old == 0 or (old > 0) == (quantity > 0)
    if adding:
        st.avg_cost = (avg * abs(old) + price * size) / abs(new)
        st.realized = st.realized - comm / 1e6
    else:
        closed = min(abs(old), size)
        st.realized = st.realized + ((price - avg) * closed * (1.0 if old > 0 else -1.0) - comm / 1e6)
        if new == 0:
            st.avg_cost = 0.0
        elif (new > 0) != (old > 0):  # flipped: the rest opens at this price
            st.avg_cost = price
    if old == 0:
        _open_trip(state, s, BUY if new > 0 else SELL, timestamp, bar, flow, comm, size, price)
    elif adding:
        st.trip_flow += flow
        st.trip_commission += comm
        st.trip_entry_qty += size
        st.trip_entry_notional += size * price
        held = st.trip_entry_qty - st.trip_exit_qty
        st.trip_max_qty = max(st.trip_max_qty, held)
    elif new == 0 or (new > 0) == (old > 0):  # reducing, maybe to flat
        st.trip_flow += flow
        st.trip_commission += comm
        st.trip_exit_qty += size
        st.trip_exit_notional += size * price
        if new == 0:
            _close_trip(account, state, trips, s, timestamp, bar)
    else:
        # Flipped: split the fill into the part that closes the old position and the rest.
        share = abs(old) / size
        close_flow, close_comm = np.int64(np.rint(flow * share)), np.int64(np.rint(comm * share))
        st.trip_flow += close_flow
        st.trip_commission += close_comm
        st.trip_exit_qty += abs(old)
        st.trip_exit_notional += abs(old) * price
        _close_trip(account, state, trips, s, timestamp, bar)
        _open_trip(state, s, BUY if new > 0 else SELL, timestamp, bar, flow - close_flow, comm - close_comm,
                   abs(new), price)


# --- the order flow ------------------------------------------------------------------------------


@njit(cache=True)
def set_pending(account: np.void, state: np.ndarray, s: int, weight: float, cause: int, cause_bar: int) -> None:
    """Stage a target for symbol ``s``; one already staged keeps its place in the staging order."""
    st = state[s]
    if not st.pending:
        st.pending = 1
        state[account.n_pending].pending_slot = s
        account.n_pending += 1
    st.pending_weight, st.pending_cause, st.pending_bar = weight, cause, cause_bar


@njit(cache=True)
def _stage(account: np.void, state: np.ndarray, orders: np.ndarray, row: np.ndarray, previous: np.ndarray,
           bar: int, timestamp: int) -> None:
    """Stage the weights of ``row`` that differ from ``previous``; a risk flattening already staged
    for a symbol outranks the model's wish, which is rejected."""
    for s in range(len(row)):
        if row[s] == previous[s]:
            continue
        st = state[s]
        if st.pending and st.pending_cause != CAUSE_DECISION:
            _reject_new(account, orders, s, CAUSE_DECISION, bar, timestamp, bar, _forced_reason(st.pending_cause),
                        DETAIL_GAVE_WAY)
            continue
        set_pending(account, state, s, row[s], CAUSE_DECISION, bar)


@njit(cache=True)
def _execute(rules: Rules, account: np.void, state: np.ndarray, timestamp: int, bar: int, ref_row: np.ndarray,
             mark_row: np.ndarray, volume_row: np.ndarray, fills: np.ndarray, orders: np.ndarray,
             trips: np.ndarray, scratch: np.ndarray) -> None:
    """Turn staged targets into orders and fill what may fill at this bar: the risk check, the
    participation cap (the rest keeps working), slippage, the exact value and commission."""
    n_s = len(state)
    position = state.position
    equity = account.cash / 1e6 + _value_sum(position, mark_row, scratch)
    for k in range(account.n_pending):
        s = state[k].pending_slot
        st = state[s]
        st.pending = 0
        if st.wk_id:
            _finish(account, state, orders, s, REPLACED, NO_REASON, DETAIL_REPLACED, 0.0)
        ref = ref_row[s]
        if not math.isfinite(ref):
            _reject_new(account, orders, s, st.pending_cause, st.pending_bar, timestamp, bar, NO_MARKET_DATA,
                        DETAIL_NO_MARKET_DATA)
            continue
        current = st.position
        qty = _target_quantity(rules, current, st.pending_weight, equity, ref) - current
        if qty != 0:
            account.next_order_id += 1
            account.n_working += 1
            st.wk_id, st.wk_cause, st.wk_cause_bar = account.next_order_id, st.pending_cause, st.pending_bar
            st.wk_timestamp, st.wk_bar, st.wk_requested, st.wk_remaining = timestamp, bar, qty, qty
    account.n_pending = 0
    if not account.n_working:
        return
    # Orders that reduce exposure go first, so the capital they free counts for the rest; each
    # group by symbol. Whether an order reduces is decided on the positions before any fill.
    reducing = np.zeros(n_s, np.bool_)
    for s in range(n_s):
        reducing[s] = state[s].wk_id != 0 and is_reducing(state[s].position, state[s].wk_remaining)
    gross = _gross_sum(position, mark_row, scratch)
    volume_cap = rules.max_participation
    for first in (True, False):
        for s in range(n_s):
            st = state[s]
            if not st.wk_id or reducing[s] != first:
                continue
            ref, pos = ref_row[s], st.position
            if not math.isfinite(ref):
                _finish(account, state, orders, s, REJECTED, NO_MARKET_DATA, DETAIL_NO_MARKET_DATA, 0.0)
                continue
            reason, detail, number = _check_order(rules, account, pos, st.wk_remaining, ref, equity, gross)
            if reason != NO_REASON:
                _finish(account, state, orders, s, REJECTED, reason, detail, number)
                continue
            qty = st.wk_remaining
            bar_volume = volume_row[s]
            if not math.isnan(volume_cap):
                limit = volume_cap * bar_volume
                if rules.fractional:
                    limit = np.floor(limit / _FRACTION_STEP) * _FRACTION_STEP
                else:
                    limit = np.floor(limit)
                if limit <= 0:
                    continue  # nothing can fill on this bar; the order keeps working
                qty = math.copysign(min(abs(qty), limit), qty)
            direction = 1.0 if qty > 0 else -1.0
            price = _slipped_price(rules, ref, direction, abs(qty), bar_volume)
            if math.isnan(price):
                _finish(account, state, orders, s, REJECTED, NO_LIQUIDITY, DETAIL_NO_LIQUIDITY, 0.0)
                continue
            value = value_micro(qty, price)
            comm = commission(value, rules.commission_num, rules.commission_den)
            _apply_fill(account, state, trips, s, qty, price, value, comm, timestamp, bar)
            k = account.n_fills
            if k >= len(fills):
                raise IndexError("the ledger's fill records are full (Book.reserve was not called)")
            f = fills[k]
            f.order_id, f.cause, f.cause_bar, f.symbol = st.wk_id, st.wk_cause, st.wk_cause_bar, s
            f.timestamp, f.bar, f.side, f.quantity = timestamp, bar, BUY if qty > 0 else SELL, abs(qty)
            f.price, f.reference_price, f.value, f.commission = price, ref, value, comm
            account.n_fills = k + 1
            mark = mark_row[s]
            gross += abs((pos + qty) * mark) - abs(pos * mark)
            st.wk_remaining -= qty
            if st.wk_remaining == 0:
                _finish(account, state, orders, s, FILLED, NO_REASON, DETAIL_NONE, 0.0)


@njit(cache=True)
def _targets(state: np.ndarray) -> np.ndarray:
    """A copy of the targets (an aligned array, as numba types the ones it allocates)."""
    out = np.empty(len(state))
    for s in range(len(state)):
        out[s] = state[s].target
    return out


@njit(cache=True)
def _valid(weight: float, low: float) -> bool:
    return math.isfinite(weight) and low <= weight <= 1.0


@njit(cache=True)
def _reject_invalid(account: np.void, orders: np.ndarray, weights: np.ndarray, low: float, start: int,
                    timestamps: np.ndarray, kept: np.ndarray) -> None:
    """Record each weight that is not finite or outside [low, 1] as a rejected INVALID_WEIGHT
    order, in row order and before the chunk's other orders; the symbol keeps its previous target
    (``kept``: the targets before the chunk, updated row by row)."""
    n_t, n_s = weights.shape
    for t in range(n_t):
        for s in range(n_s):
            given = weights[t, s]
            if _valid(given, low):
                kept[s] = given
                continue
            account.next_order_id += 1
            _order(account, orders, account.next_order_id, CAUSE_DECISION, start + t, s, timestamps[t], start + t,
                   BUY, 0.0, 0.0, REJECTED, INVALID_WEIGHT, DETAIL_INVALID_WEIGHT, given, kept[s])


@njit(cache=True, nogil=True)  # the GIL released: the ledger books models on several threads at once
def book_chunk(rules: Rules, account_row: np.ndarray, state: np.ndarray, weights: np.ndarray, validate: bool,
               low: float, start: int, timestamps: np.ndarray, days: np.ndarray, ref: np.ndarray,
               fill_mark: np.ndarray, close_mark: np.ndarray, volume: np.ndarray, fills: np.ndarray,
               orders: np.ndarray, trips: np.ndarray, curve: np.ndarray, forced: np.ndarray) -> None:
    """Book one model's chunk of bars (see the module docstring and engine.py's).

    ``weights`` (T, S) are the model's targets per bar (``validate``: an invalid weight is
    rejected and the previous target kept); ``ref`` and ``fill_mark`` are the prices orders fill
    at and the marks that size them (the opens with ``next_open``, else the closes);
    ``close_mark`` values the book at each close; ``days`` are the session-day keys (read only
    with path-dependent limits). The records are written from the counts in ``account_row[0]``;
    ``Book.reserve`` made room for them.
    """
    account = account_row[0]
    n_t, n_s = weights.shape
    previous = _targets(state)  # the targets of the bar before
    if validate:
        _reject_invalid(account, orders, weights, low, start, timestamps, previous.copy())
    row = np.empty(n_s)
    scratch = np.empty(n_s)  # products summed in numpy's order
    equity = account.last_equity
    for t in range(n_t):
        timestamp, bar = timestamps[t], start + t
        stage_now = False
        for s in range(n_s):
            w = weights[t, s]
            row[s] = w if not validate or _valid(w, low) else previous[s]
            stage_now = stage_now or row[s] != previous[s]
        if rules.path_limits and days[t] != account.day:  # a new trading day: the daily loss limit resets
            account.day = days[t]
            account.day_start_equity = account.last_equity
            account.day_halted = 0
        if stage_now and not rules.next_open:
            _stage(account, state, orders, row, previous, bar, timestamp)
        if account.n_pending or account.n_working:
            _execute(rules, account, state, timestamp, bar, ref[t], fill_mark[t], volume[t], fills, orders, trips,
                     scratch)
        marks = close_mark[t]
        cash = account.cash / 1e6
        equity = cash + _value_sum(state.position, marks, scratch)
        k = account.n_curve
        if k >= len(curve):
            raise IndexError("the ledger's curve records are full (Book.reserve was not called)")
        c = curve[k]
        c.timestamp, c.equity, c.cash = timestamp, equity, cash
        c.gross = _gross_sum(state.position, marks, scratch)
        account.n_curve = k + 1
        if rules.path_limits:
            flatten, measured, threshold, reference = _on_close(rules, account, equity)
            if flatten:
                _flatten(account, state, forced, flatten, bar, timestamp, marks, equity, measured, threshold,
                         reference)
            account.last_equity = equity
        if stage_now and rules.next_open:
            _stage(account, state, orders, row, previous, bar, timestamp)
        previous, row = row, previous
    account.last_equity = equity
    if n_t:
        account.last_bar, account.last_timestamp = start + n_t - 1, timestamps[n_t - 1]
    for s in range(n_s):
        state[s].target = previous[s]


@njit(cache=True)
def stage_weights(account_row: np.ndarray, state: np.ndarray, weights: np.ndarray, bar: int, timestamp: int,
                  orders: np.ndarray) -> None:
    """Stage ``weights`` as new targets at ``bar``, outside a chunk, and make them the targets."""
    account = account_row[0]
    _stage(account, state, orders, weights, _targets(state), bar, timestamp)
    for s in range(len(state)):
        state[s].target = weights[s]


@njit(cache=True)
def kill_switch(account_row: np.ndarray, state: np.ndarray, on: bool, marks: np.ndarray, forced: np.ndarray) -> None:
    """On: halt, and stage the flattening of every position, recorded as caused at the last bar
    booked (``marks``: its close marks). Off: lift a kill-switch halt."""
    account = account_row[0]
    if on:
        account.halted = HALT_KILL_SWITCH
        _flatten(account, state, forced, CAUSE_KILL_SWITCH, account.last_bar, account.last_timestamp, marks,
                 account.last_equity, math.nan, math.nan, math.nan)
    elif account.halted == HALT_KILL_SWITCH:
        account.halted = HALT_NONE
