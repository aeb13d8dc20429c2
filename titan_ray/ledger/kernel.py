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
- slippage (fixed, square-root, Almgren-Chriss), sizing (target weight, fixed quantity, vol
  target, Kelly, risk parity), execution algorithms' child slices, the pre-trade risk check (and
  the VaR limit, the group caps), the path-dependent limits, protective exits, the portfolio's
  fill (cash, average cost, realized P&L, round trips), then the order flow (stage, execute) and
  the chunk loop. docs/risk.md has the formulas; with every one of them off, the floats are the
  ones the ledger booked before they existed.

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
# Protective exits (``ledger.stops``) are causes of their own, recorded like the risk rules' flattenings.
(CAUSE_DECISION, CAUSE_KILL_SWITCH, CAUSE_CIRCUIT_BREAKER, CAUSE_DAILY_LOSS_LIMIT, CAUSE_STOP_LOSS, CAUSE_TAKE_PROFIT,
 CAUSE_TRAILING_STOP) = np.arange(7)
# OrderStatus
FILLED, PARTIALLY_FILLED, REJECTED, REPLACED = np.arange(4)
# RejectReason (0: none)
(NO_REASON, INVALID_WEIGHT, NO_MARKET_DATA, NO_LIQUIDITY, MAX_POSITION_EXCEEDED, GROSS_EXPOSURE_EXCEEDED,
 DAILY_LOSS_LIMIT, CIRCUIT_BREAKER, KILL_SWITCH, VAR_LIMIT, GROUP_EXPOSURE_EXCEEDED) = np.arange(11)
# HaltReason (0: not halted)
HALT_NONE, HALT_CIRCUIT_BREAKER, HALT_KILL_SWITCH = np.arange(3)
# Which text an order's detail is (its numbers are in detail_a, detail_b)
(DETAIL_NONE, DETAIL_REPLACED, DETAIL_NO_MARKET_DATA, DETAIL_NO_LIQUIDITY, DETAIL_KILL_SWITCH,
 DETAIL_CIRCUIT_BREAKER, DETAIL_DAILY_LOSS_LIMIT, DETAIL_EQUITY_NOT_POSITIVE, DETAIL_POSITION_PCT,
 DETAIL_GROSS_AFTER, DETAIL_GAVE_WAY, DETAIL_INVALID_WEIGHT, DETAIL_VAR_LIMIT, DETAIL_GROUP_AFTER,
 DETAIL_STOPPED) = np.arange(15)
BUY, SELL = np.int64(1), np.int64(-1)  # an order's or a fill's side
# Sizing modes beyond the target weight (``fixed_quantity`` is ``Rules.fixed_quantity``)
SIZE_TARGET, SIZE_VOL_TARGET, SIZE_KELLY, SIZE_RISK_PARITY = np.arange(4)
# Execution algorithms of parent orders
ALGO_IMMEDIATE, ALGO_TWAP, ALGO_VWAP, ALGO_POV = np.arange(4)
# The fields of the market estimates (``ledger/estimates.py``: row t + 1 is bar t, row 0 the bar before)
EST_SD, EST_MU, EST_ATR, EST_SD_IMPACT, EST_VOLUME_IMPACT, EST_VOLUME_EXECUTION, EST_BARS_PER_DAY = np.arange(7)

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
    # the VaR limit: the model's returns in the ring (``Book.returns``, and sorted), where the next one goes, the
    # VaR at the last close (a return quantile: negative is a loss) and whether it breaches the limit
    ("var_n", "i8"), ("var_next", "i8"), ("var_value", "f8"), ("var_breached", "i8"),
    ("n_deferred", "i8"),  # symbols whose weight waits for the sizing's first estimate
])

SYMBOL_STATE = np.dtype([
    ("position", "f8"), ("avg_cost", "f8"), ("realized", "f8"),
    ("target", "f8"),  # last accepted target weight
    # a target staged for the next fill bar, and what caused it
    ("pending", "i8"), ("pending_weight", "f8"), ("pending_cause", "i8"), ("pending_bar", "i8"),
    ("pending_arrival", "f8"),  # the price when it was staged (the decision's close): implementation shortfall
    # row k holds the k-th symbol staged (k < n_pending): pending targets execute in staging order
    ("pending_slot", "i8"),
    # the working order (wk_id 0: none); created at (wk_timestamp, wk_bar)
    ("wk_id", "i8"), ("wk_cause", "i8"), ("wk_cause_bar", "i8"), ("wk_timestamp", "i8"), ("wk_bar", "i8"),
    ("wk_requested", "f8"), ("wk_remaining", "f8"),  # signed
    # the parent order's arrival price, child slices tried so far, and its fills' notional and commission
    ("wk_arrival", "f8"), ("wk_child", "i8"), ("wk_value", "f8"), ("wk_commission", "i8"),
    # protective exits: the best price since entry (trailing), the ATR the levels use (NaN: not read yet)
    ("stop_best", "f8"), ("stop_atr", "f8"),
    # sizing: a weight decided (at deferred_bar) before the symbol had an estimate, staged when it has one
    ("deferred", "i8"), ("deferred_bar", "i8"),
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
    # execution: the arrival price (the close when it was decided; a stop's level) and the fills' sum of
    # quantity x price and exact commission: implementation shortfall = side x (value - filled x arrival)
    # + commission
    ("arrival", "f8"), ("value", "f8"), ("commission", "i8"),
])

TRIP = np.dtype([
    ("symbol", "i8"), ("direction", "i8"), ("entry_timestamp", "i8"), ("exit_timestamp", "i8"),
    ("entry_bar", "i8"), ("exit_bar", "i8"), ("quantity", "f8"), ("entry_price", "f8"), ("exit_price", "f8"),
    ("pnl", "i8"), ("commission", "i8"),
])

CURVE = np.dtype([("timestamp", "i8"), ("equity", "f8"), ("cash", "f8"), ("gross", "f8")])

# A risk rule's flattening of one position, recorded when the rule fires (its orders and fills carry
# the cause and ``bar``): what ``why`` shows for a fill no model asked for.
# Protective exits use the same record: price is the exit's reference (the level, or the open through
# which it gapped), measured the bar's price that crossed it, threshold the level, reference the entry.
FORCED = np.dtype([
    ("cause", "i8"),  # a CAUSE_ other than CAUSE_DECISION
    ("bar", "i8"), ("timestamp", "i8"),  # the close that tripped the rule (kill switch: the last bar booked)
    ("symbol", "i8"),
    ("weight", "f8"),  # the position's share of equity then: position x price / equity
    ("price", "f8"),  # the symbol's mark at that close
    ("equity", "f8"),  # the model's equity at that close
    ("measured", "f8"),  # drawdown from the peak, or the day's loss, as a fraction (NaN: kill switch)
    ("threshold", "f8"),  # max_drawdown_pct or daily_loss_limit_pct (NaN: kill switch)
    ("reference", "f8"),  # the peak equity, or the day's opening equity (NaN: kill switch)
])


def records_bound(n_bars: int, n_symbols: int, stops: bool = False) -> tuple[int, int, int, int, int]:
    """The most fills, orders, round trips, curve rows and forced flattenings one chunk of
    ``n_bars`` (or a kill switch, with ``n_bars`` 0) can write.

    Per bar and symbol: one fill (and one round trip closed by it); orders: one invalid weight,
    one give-way at staging, a replaced order and a rejection when the target executes, and the
    working order's end; one forced flattening per bar (a rule fires at most once per close) and
    symbol, and one per symbol for a kill switch. With ``stops``, per bar and symbol one more fill,
    round trip and forced record, and two more orders (the exit, and the working order it ends).
    """
    cells = n_bars * n_symbols
    more = 1 if stops else 0
    return (1 + more) * cells, (5 + 2 * more) * cells, (1 + more) * cells, n_bars, (1 + more) * cells + n_symbols


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
    # sizing (SIZE_*): vol_target's target and leverage cap, kelly's fraction and cap; days per year
    sizing: int
    target_vol: float
    max_leverage: float
    kelly_fraction: float
    kelly_cap: float
    days_per_year: float
    # protective exits (NaN: off)
    stops: bool
    stop_loss_pct: float
    stop_loss_atr: float
    take_profit_pct: float
    take_profit_atr: float
    trailing_pct: float
    trailing_atr: float
    # execution (ALGO_*)
    algo: int
    algo_bars: int
    pov_rate: float
    # Almgren-Chriss impact
    almgren: bool
    ac_eta: float
    ac_beta: float
    ac_gamma: float
    ac_liquidity: float
    # the VaR limit (var_alpha: 1 - var_level, rounded to 12 decimals as metrics.tail rounds it; var_z:
    # the normal quantile of var_alpha, for the parametric method)
    var_limit: bool
    max_var_pct: float
    var_alpha: float
    var_parametric: bool
    var_z: float
    # group exposure caps (``groups`` of book_chunk: a group per symbol, -1 none)
    max_group_pct: float
    n_groups: int


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
def _slipped_price(rules: Rules, reference: float, direction: float, quantity: float, volume: float,
                   position: float, est: np.ndarray) -> float:
    """The fill price (fixed bps, the square-root law on participation, or Almgren-Chriss); NaN: no
    liquidity. ``position`` is the model's before the fill, ``est`` the symbol's market estimates
    as of the last close (read by Almgren-Chriss only)."""
    frac = rules.slippage_fraction
    if rules.sqrt_impact:
        if not volume > 0:
            return math.nan
        frac = min(frac + rules.impact_coefficient * math.sqrt(quantity / volume), _MAX_IMPACT)
    elif rules.almgren:
        temporary, permanent = _almgren_chriss(rules, direction * quantity, position, est)
        shift = max(-_MAX_IMPACT, min(direction * (frac + temporary) + permanent, _MAX_IMPACT))
        return reference * (1 + shift)
    return reference * (1 + direction * frac)


@njit(cache=True)
def _almgren_chriss(rules: Rules, quantity: float, position: float, est: np.ndarray) -> tuple[float, float]:
    """Almgren et al. (2005) impact of a fill of signed ``quantity``, as fractions of the price: the
    temporary part eta x sigma_day x (|q| / V_bar)^beta, paid against the fill, and the permanent
    shift gamma x sigma_day x (position + q / 2) / ADV x liquidity_factor, signed: the model's own
    net buying (its position, and half of this fill) lifts the prices it trades at, its selling
    lowers them. sigma_day = sigma_bar x sqrt(bars a day), ADV = V_bar x bars a day, from the
    last close's estimates; (0, 0) until they exist."""
    sd, v_bar, per_day = est[EST_SD_IMPACT], est[EST_VOLUME_IMPACT], est[EST_BARS_PER_DAY]
    if not (math.isfinite(sd) and v_bar > 0 and per_day > 0):
        return 0.0, 0.0
    sigma = sd * math.sqrt(per_day)
    temporary = rules.ac_eta * sigma * (abs(quantity) / v_bar) ** rules.ac_beta
    permanent = rules.ac_gamma * sigma * (position + quantity / 2) / (v_bar * per_day) * rules.ac_liquidity
    return temporary, permanent


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
def _size(rules: Rules, row: np.ndarray, est: np.ndarray, out: np.ndarray) -> None:
    """The weights ``row`` as the sizing mode sizes them (``out``), from the estimates as of the
    decision's close (``est``, (S, fields)); NaN for a weight that needs an estimate the symbol does
    not have yet (its first ``window`` returns): ``_stage`` defers it.

    vol_target: w x min(max_leverage, target_vol / (sd x sqrt(bars a year)));
    kelly: w x clip(fraction x sign(w) x mu / sd^2, 0, cap);
    risk_parity: sign(w) x sum|w| x (1 / sd) / sum over held symbols of 1 / sd.
    """
    n = len(row)
    if rules.sizing == SIZE_TARGET:
        for s in range(n):
            out[s] = row[s]
        return
    if rules.sizing == SIZE_RISK_PARITY:
        gross, inverse = 0.0, 0.0
        for s in range(n):
            sd = est[s, EST_SD]
            if row[s] != 0:
                gross += abs(row[s])
                if sd > 0:
                    inverse += 1.0 / sd
        for s in range(n):
            sd = est[s, EST_SD]
            if row[s] == 0 or sd == 0:
                out[s] = 0.0
            elif not math.isfinite(sd):
                out[s] = math.nan
            else:
                out[s] = math.copysign(gross * (1.0 / sd) / inverse, row[s])
        return
    for s in range(n):
        w, sd = row[s], est[s, EST_SD]
        if w == 0:
            out[s] = 0.0
        elif not math.isfinite(sd):
            out[s] = math.nan
        elif rules.sizing == SIZE_VOL_TARGET:
            annual = sd * math.sqrt(est[s, EST_BARS_PER_DAY] * rules.days_per_year)
            out[s] = w * (rules.max_leverage if annual == 0 else min(rules.max_leverage, rules.target_vol / annual))
        else:  # kelly
            stake = rules.kelly_fraction * math.copysign(1.0, w) * est[s, EST_MU] / (sd * sd) if sd > 0 else 0.0
            out[s] = w * min(rules.kelly_cap, max(0.0, stake))


@njit(cache=True)
def _child_quantity(rules: Rules, remaining: float, child: int, volume: float, expected_volume: float) -> float:
    """The slice of a parent order's ``remaining`` (signed) that the execution algorithm sends at
    its ``child``-th bar (0 first), before the participation cap; 0: nothing this bar.

    twap: remaining / (bars - child); vwap: remaining x v / (v + (bars - child - 1) x v_expected),
    v the bar's volume and v_expected the mean bar volume as of the last close (v itself before one
    exists); pov: rate x v. The last bar of a twap or vwap schedule, and every bar after it, sends
    all that remains. Quantities are truncated toward zero to whole shares (or millionths).
    """
    if rules.algo == ALGO_IMMEDIATE:
        return remaining
    if rules.algo == ALGO_POV:
        size = rules.pov_rate * volume if volume > 0 else 0.0
        return math.copysign(min(abs(remaining), _round_size(rules, size)), remaining)
    left = rules.algo_bars - child
    if left <= 1:
        return remaining
    if rules.algo == ALGO_TWAP:
        share = 1.0 / left
    else:
        v = volume if volume > 0 else 0.0
        expected = expected_volume if expected_volume > 0 else v
        total = v + (left - 1) * expected
        share = v / total if total > 0 else 0.0
    return math.copysign(_round_size(rules, abs(remaining) * share), remaining)


@njit(cache=True)
def _round_size(rules: Rules, size: float) -> float:
    """``size`` (>= 0) truncated to whole shares, or to millionths of a share when fractional."""
    if rules.fractional:
        return np.floor(size / _FRACTION_STEP) * _FRACTION_STEP
    return np.floor(size)


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
    if account.var_breached:
        return VAR_LIMIT, DETAIL_VAR_LIMIT, account.var_value
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
def _lerp(a: float, b: float, t: float) -> float:
    """numpy's interpolation between two order statistics (its ``_lerp``), so the quantile is numpy's."""
    diff = b - a
    out = a + diff * t
    return b - diff * (1 - t) if t >= 0.5 else out


@njit(cache=True)
def _update_var(rules: Rules, account: np.void, ring: np.ndarray, equity: float) -> None:
    """Add the close's return to the model's last ``var_window`` returns and, once the window is
    full, measure the VaR (historical: numpy's linear quantile at 1 - var_level, as
    ``metrics.tail.historical_var``; parametric: mean + z x sd, ddof 1): the limit is breached
    while -VaR exceeds max_var_pct. ``ring`` holds the returns in arrival order (its first half, a
    ring) and the same returns sorted (its second half, kept sorted by one removal and one insertion
    per bar, so the quantile costs no sort). A return that is not finite (no price yet) is skipped."""
    last = account.last_equity
    if not last > 0:
        return
    new = equity / last - 1.0
    if not math.isfinite(new):
        return
    window = len(ring) // 2
    ordered = ring[window:]
    n = account.var_n
    if n == window:  # the oldest return leaves the sorted half
        at = np.searchsorted(ordered, ring[account.var_next])
        for j in range(at, window - 1):
            ordered[j] = ordered[j + 1]
        n -= 1
    ring[account.var_next] = new
    at = np.searchsorted(ordered[:n], new)
    for j in range(n, at, -1):
        ordered[j] = ordered[j - 1]
    ordered[at] = new
    account.var_next = (account.var_next + 1) % window
    account.var_n = n + 1
    if n + 1 < window:
        return
    if rules.var_parametric:
        mean = 0.0
        for i in range(window):
            mean += ring[i]
        mean /= window
        ss = 0.0
        for i in range(window):
            ss += (ring[i] - mean) ** 2
        var = mean + rules.var_z * math.sqrt(ss / (window - 1))
    else:
        q = rules.var_alpha * (window - 1)
        lo = math.floor(q)  # an integer in numba, as in Python
        hi = min(lo + 1, window - 1)
        var = _lerp(ordered[lo], ordered[hi], q - lo)
    account.var_value = var
    account.var_breached = 1 if -var > rules.max_var_pct else 0


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
        set_pending(account, state, s, 0.0, cause, bar, marks[s])


@njit(cache=True)
def _stops(rules: Rules, account: np.void, state: np.ndarray, timestamp: int, bar: int, open_row: np.ndarray,
           high_row: np.ndarray, low_row: np.ndarray, volume_row: np.ndarray, est: np.ndarray, fills: np.ndarray,
           orders: np.ndarray, trips: np.ndarray, forced: np.ndarray) -> None:
    """Protective exits on bar ``bar``'s open, high and low, for the positions held on it (``est``:
    the estimates as of the last close, for the ATR).

    Levels (a long; a short mirrors them): stop-loss entry x (1 - stop_loss_pct) or entry -
    stop_loss_atr x ATR, take-profit entry x (1 + take_profit_pct) or entry + take_profit_atr x ATR,
    trailing best x (1 - trailing_pct) or best - trailing_atr x ATR, where entry is the average cost,
    best the highest high since entry up to the bar before (the trailing level never reads the bar
    it is tested on) and ATR the average true range at the last close before the position's first
    bar watched. The protective level is the tighter of the stop-loss and the trailing stop.
    Gap rule: an open at or through a level exits at the open; otherwise a low at or below the
    protective level exits at that level, else a high at or above the take-profit exits at it; a bar
    that touches both exits at the protective level (the pessimistic order). The exit is one market
    order for the whole position at that price, slipped as every fill, not capped by participation;
    a working order of the symbol ends (REPLACED: stopped out)."""
    equity = account.last_equity
    for s in range(len(state)):
        st = state[s]
        pos = st.position
        if pos == 0:
            continue
        o, h, lo = open_row[s], high_row[s], low_row[s]
        if not (math.isfinite(o) and math.isfinite(h) and math.isfinite(lo)):
            continue  # no bar: nothing traded through a level
        if math.isnan(st.stop_atr) and est.shape[1]:  # estimates exist when an ATR level is set
            st.stop_atr = est[s, EST_ATR]
        d = 1.0 if pos > 0 else -1.0
        entry, atr, best = st.avg_cost, st.stop_atr, st.stop_best
        protective, protect_cause = math.nan, CAUSE_STOP_LOSS
        if not math.isnan(rules.stop_loss_pct):
            protective = entry * (1 - d * rules.stop_loss_pct)
        elif not math.isnan(rules.stop_loss_atr):
            protective = entry - d * rules.stop_loss_atr * atr
        trail = math.nan
        if not math.isnan(rules.trailing_pct):
            trail = best * (1 - d * rules.trailing_pct)
        elif not math.isnan(rules.trailing_atr):
            trail = best - d * rules.trailing_atr * atr
        if math.isfinite(trail) and not (math.isfinite(protective) and d * (protective - trail) >= 0):
            protective, protect_cause = trail, CAUSE_TRAILING_STOP
        target = math.nan
        if not math.isnan(rules.take_profit_pct):
            target = entry * (1 + d * rules.take_profit_pct)
        elif not math.isnan(rules.take_profit_atr):
            target = entry + d * rules.take_profit_atr * atr
        adverse, favourable = (lo, h) if d > 0 else (h, lo)
        cause, level, fill_ref, measured = 0, math.nan, math.nan, math.nan
        if math.isfinite(protective) and d * (o - protective) <= 0:
            cause, level, fill_ref, measured = protect_cause, protective, o, o
        elif math.isfinite(target) and d * (o - target) >= 0:
            cause, level, fill_ref, measured = CAUSE_TAKE_PROFIT, target, o, o
        elif math.isfinite(protective) and d * (adverse - protective) <= 0:
            cause, level, fill_ref, measured = protect_cause, protective, protective, adverse
        elif math.isfinite(target) and d * (favourable - target) >= 0:
            cause, level, fill_ref, measured = CAUSE_TAKE_PROFIT, target, target, favourable
        if cause == 0:
            st.stop_best = max(best, h) if d > 0 else min(best, lo)
            continue
        if st.wk_id:
            _finish(account, state, orders, s, REPLACED, NO_REASON, DETAIL_STOPPED, 0.0)
        qty = -pos
        price = _slipped_price(rules, fill_ref, -d, abs(qty), volume_row[s], pos, est[s])
        if math.isnan(price):  # no volume for the square-root law: a stop still exits, at the fixed spread
            price = fill_ref * (1 - d * rules.slippage_fraction)
        value = value_micro(qty, price)
        comm = commission(value, rules.commission_num, rules.commission_den)
        k = account.n_forced
        if k >= len(forced):
            raise IndexError("the ledger's forced-flattening records are full (Book.reserve was not called)")
        r = forced[k]
        r.cause, r.bar, r.timestamp, r.symbol = cause, bar, timestamp, s
        r.weight, r.price = _ratio(pos * fill_ref, equity), fill_ref
        r.equity, r.measured, r.threshold, r.reference = equity, measured, level, entry
        account.n_forced = k + 1
        account.next_order_id += 1
        order_id = account.next_order_id
        _apply_fill(account, state, trips, s, qty, price, value, comm, timestamp, bar)
        _fill(account, fills, order_id, cause, bar, s, timestamp, bar, qty, price, fill_ref, value, comm)
        _order(account, orders, order_id, cause, bar, s, timestamp, bar, BUY if qty > 0 else SELL, abs(qty), abs(qty),
               FILLED, NO_REASON, DETAIL_NONE, 0.0, 0.0, level, abs(qty) * price, comm)


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
           detail: int, detail_a: float, detail_b: float, arrival: float, value: float, comm: int) -> None:
    k = account.n_orders
    if k >= len(orders):
        raise IndexError("the ledger's order records are full (Book.reserve was not called)")
    o = orders[k]
    o.order_id, o.cause, o.cause_bar, o.symbol, o.timestamp, o.bar = order_id, cause, cause_bar, s, timestamp, bar
    o.side, o.quantity, o.filled, o.status, o.reason = side, quantity, filled, status, reason
    o.detail, o.detail_a, o.detail_b = detail, detail_a, detail_b
    o.arrival, o.value, o.commission = arrival, value, comm
    account.n_orders = k + 1


@njit(cache=True)
def _fill(account: np.void, fills: np.ndarray, order_id: int, cause: int, cause_bar: int, s: int, timestamp: int,
          bar: int, qty: float, price: float, reference: float, value: int, comm: int) -> None:
    k = account.n_fills
    if k >= len(fills):
        raise IndexError("the ledger's fill records are full (Book.reserve was not called)")
    f = fills[k]
    f.order_id, f.cause, f.cause_bar, f.symbol = order_id, cause, cause_bar, s
    f.timestamp, f.bar, f.side, f.quantity = timestamp, bar, BUY if qty > 0 else SELL, abs(qty)
    f.price, f.reference_price, f.value, f.commission = price, reference, value, comm
    account.n_fills = k + 1


@njit(cache=True)
def _reject_new(account: np.void, orders: np.ndarray, s: int, cause: int, cause_bar: int, timestamp: int,
                bar: int, reason: int, detail: int, arrival: float) -> None:
    """An order rejected before it existed: a new id, nothing requested."""
    account.next_order_id += 1
    _order(account, orders, account.next_order_id, cause, cause_bar, s, timestamp, bar, BUY, 0.0, 0.0, REJECTED,
           reason, detail, 0.0, 0.0, arrival, 0.0, 0)


@njit(cache=True)
def _finish(account: np.void, state: np.ndarray, orders: np.ndarray, s: int, status: int, reason: int,
            detail: int, detail_a: float) -> None:
    """The working order of symbol ``s`` ends (filled, rejected or replaced) and is recorded."""
    w = state[s]
    requested = w.wk_requested
    _order(account, orders, w.wk_id, w.wk_cause, w.wk_cause_bar, s, w.wk_timestamp, w.wk_bar,
           BUY if requested > 0 else SELL, abs(requested), abs(requested - w.wk_remaining), status, reason, detail,
           detail_a, 0.0, w.wk_arrival, w.wk_value, w.wk_commission)
    w.wk_id = 0
    account.n_working -= 1


# --- the portfolio -------------------------------------------------------------------------------


@njit(cache=True)
def _open_trip(state: np.ndarray, s: int, direction: int, timestamp: int, bar: int, flow: int, comm: int,
               size: float, price: float) -> None:
    st = state[s]
    st.stop_best, st.stop_atr = price, math.nan  # protective exits start from the entry
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
def set_pending(account: np.void, state: np.ndarray, s: int, weight: float, cause: int, cause_bar: int,
                arrival: float) -> None:
    """Stage a target for symbol ``s`` (``arrival``: the price then); one already staged keeps its
    place in the staging order."""
    st = state[s]
    if not st.pending:
        st.pending = 1
        state[account.n_pending].pending_slot = s
        account.n_pending += 1
    st.pending_weight, st.pending_cause, st.pending_bar, st.pending_arrival = weight, cause, cause_bar, arrival


@njit(cache=True)
def _stage(account: np.void, state: np.ndarray, orders: np.ndarray, row: np.ndarray, previous: np.ndarray,
           sized: np.ndarray, every_held: bool, arrival: np.ndarray, bar: int, timestamp: int) -> None:
    """Stage the ``sized`` weights of the symbols whose weight in ``row`` differs from ``previous``,
    or that were deferred and can be sized now (``every_held``: then also of every symbol the row
    holds, for a sizing across symbols); a weight that cannot be sized yet (NaN) is deferred, staged
    at the first close where it can be, for the decision that asked for it. A risk flattening
    already staged for a symbol outranks the model's wish, which is rejected."""
    n = len(row)
    moved = False
    for s in range(n):
        if row[s] != previous[s] or (state[s].deferred and math.isfinite(sized[s])):
            moved = True
            break
    if not moved:
        return
    for s in range(n):
        st = state[s]
        changed = row[s] != previous[s]
        if not (changed or (st.deferred and math.isfinite(sized[s])) or (every_held and row[s] != 0)):
            continue
        cause_bar = bar if changed or not st.deferred else st.deferred_bar
        if math.isnan(sized[s]) and math.isfinite(row[s]):  # (a NaN weight itself fails at the fill, as before)
            if not st.deferred:
                st.deferred = 1
                account.n_deferred += 1
            st.deferred_bar = cause_bar
            continue
        if st.deferred:
            st.deferred = 0
            account.n_deferred -= 1
        if st.pending and st.pending_cause != CAUSE_DECISION:
            _reject_new(account, orders, s, CAUSE_DECISION, cause_bar, timestamp, bar,
                        _forced_reason(st.pending_cause), DETAIL_GAVE_WAY, arrival[s])
            continue
        set_pending(account, state, s, sized[s], CAUSE_DECISION, cause_bar, arrival[s])


@njit(cache=True)
def _execute(rules: Rules, account: np.void, state: np.ndarray, timestamp: int, bar: int, ref_row: np.ndarray,
             mark_row: np.ndarray, volume_row: np.ndarray, est: np.ndarray, groups: np.ndarray, fills: np.ndarray,
             orders: np.ndarray, trips: np.ndarray, scratch: np.ndarray) -> None:
    """Turn staged targets into orders and fill what may fill at this bar: the risk check (and the
    group caps), the execution algorithm's child slice, the participation cap (the rest keeps
    working), slippage, the exact value and commission. ``est``: the estimates as of the last close."""
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
                        DETAIL_NO_MARKET_DATA, st.pending_arrival)
            continue
        current = st.position
        qty = _target_quantity(rules, current, st.pending_weight, equity, ref) - current
        if qty != 0:
            account.next_order_id += 1
            account.n_working += 1
            st.wk_id, st.wk_cause, st.wk_cause_bar = account.next_order_id, st.pending_cause, st.pending_bar
            st.wk_timestamp, st.wk_bar, st.wk_requested, st.wk_remaining = timestamp, bar, qty, qty
            st.wk_arrival, st.wk_child, st.wk_value, st.wk_commission = st.pending_arrival, 0, 0.0, 0
    account.n_pending = 0
    if not account.n_working:
        return
    # Orders that reduce exposure go first, so the capital they free counts for the rest; each
    # group by symbol. Whether an order reduces is decided on the positions before any fill.
    reducing = np.zeros(n_s, np.bool_)
    for s in range(n_s):
        reducing[s] = state[s].wk_id != 0 and is_reducing(state[s].position, state[s].wk_remaining)
    gross = _gross_sum(position, mark_row, scratch)
    group_value = np.zeros(rules.n_groups)  # sum of |position value| per group, at the marks
    if rules.n_groups:
        for s in range(n_s):
            if groups[s] >= 0:
                group_value[groups[s]] += abs(position[s] * mark_row[s])
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
            g = groups[s] if rules.n_groups else -1
            if reason == NO_REASON and g >= 0 and not is_reducing(pos, st.wk_remaining):
                after = (group_value[g] - abs(pos * ref) + abs((pos + st.wk_remaining) * ref)) / equity
                if after > rules.max_group_pct * (1 + _SLACK):
                    reason, detail, number = GROUP_EXPOSURE_EXCEEDED, DETAIL_GROUP_AFTER, after
            if reason != NO_REASON:
                _finish(account, state, orders, s, REJECTED, reason, detail, number)
                continue
            bar_volume = volume_row[s]
            expected = est[s, EST_VOLUME_EXECUTION] if rules.algo == ALGO_VWAP else math.nan
            qty = _child_quantity(rules, st.wk_remaining, st.wk_child, bar_volume, expected)
            st.wk_child += 1
            if qty == 0:
                continue  # nothing in this bar's slice; the order keeps working
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
            price = _slipped_price(rules, ref, direction, abs(qty), bar_volume, pos, est[s])
            if math.isnan(price):
                _finish(account, state, orders, s, REJECTED, NO_LIQUIDITY, DETAIL_NO_LIQUIDITY, 0.0)
                continue
            value = value_micro(qty, price)
            comm = commission(value, rules.commission_num, rules.commission_den)
            _apply_fill(account, state, trips, s, qty, price, value, comm, timestamp, bar)
            _fill(account, fills, st.wk_id, st.wk_cause, st.wk_cause_bar, s, timestamp, bar, qty, price, ref, value,
                  comm)
            st.wk_value += abs(qty) * price
            st.wk_commission += comm
            mark = mark_row[s]
            gross += abs((pos + qty) * mark) - abs(pos * mark)
            if g >= 0:
                group_value[g] += abs((pos + qty) * mark) - abs(pos * mark)
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
                   BUY, 0.0, 0.0, REJECTED, INVALID_WEIGHT, DETAIL_INVALID_WEIGHT, given, kept[s], math.nan, 0.0, 0)


@njit(cache=True, nogil=True)  # the GIL released: the ledger books models on several threads at once
def book_chunk(rules: Rules, account_row: np.ndarray, state: np.ndarray, ring: np.ndarray, weights: np.ndarray,
               validate: bool, low: float, start: int, timestamps: np.ndarray, days: np.ndarray, ref: np.ndarray,
               fill_mark: np.ndarray, close_mark: np.ndarray, volume: np.ndarray, open_: np.ndarray,
               high: np.ndarray, low_: np.ndarray, est: np.ndarray, groups: np.ndarray, fills: np.ndarray,
               orders: np.ndarray, trips: np.ndarray, curve: np.ndarray, forced: np.ndarray) -> None:
    """Book one model's chunk of bars (see the module docstring and engine.py's).

    ``weights`` (T, S) are the model's targets per bar (``validate``: an invalid weight is
    rejected and the previous target kept); ``ref`` and ``fill_mark`` are the prices orders fill
    at and the marks that size them (the opens with ``next_open``, else the closes);
    ``close_mark`` values the book at each close; ``days`` are the session-day keys (read only
    with path-dependent limits); ``open_``, ``high`` and ``low_`` are the bars' own prices (NaN
    where a symbol has no bar), for protective exits; ``est`` the market estimates (T + 1, S,
    fields; no fields when no rule reads them), ``groups`` each symbol's group (-1: none) and
    ``ring`` the model's last returns, for the VaR limit. The records are written from the counts
    in ``account_row[0]``; ``Book.reserve`` made room for them.
    """
    account = account_row[0]
    n_t, n_s = weights.shape
    previous = _targets(state)  # the targets of the bar before
    if validate:
        _reject_invalid(account, orders, weights, low, start, timestamps, previous.copy())
    row = np.empty(n_s)
    sized = np.empty(n_s)
    scratch = np.empty(n_s)  # products summed in numpy's order
    every_held = rules.sizing == SIZE_RISK_PARITY  # a change of one weight resizes them all
    equity = account.last_equity
    for t in range(n_t):
        timestamp, bar = timestamps[t], start + t
        stage_now = False
        for s in range(n_s):
            w = weights[t, s]
            row[s] = w if not validate or _valid(w, low) else previous[s]
            stage_now = stage_now or row[s] != previous[s]
        stage_now = stage_now or account.n_deferred > 0  # a deferred weight may be sized at this close
        if stage_now:
            _size(rules, row, est[t + 1], sized)
        if rules.path_limits and days[t] != account.day:  # a new trading day: the daily loss limit resets
            account.day = days[t]
            account.day_start_equity = account.last_equity
            account.day_halted = 0
        if rules.stops and not rules.next_open:  # positions held through the bar, before its close fills
            _stops(rules, account, state, timestamp, bar, open_[t], high[t], low_[t], volume[t], est[t], fills, orders,
                   trips, forced)
        if stage_now and not rules.next_open:
            _stage(account, state, orders, row, previous, sized, every_held, close_mark[t], bar, timestamp)
        if account.n_pending or account.n_working:
            _execute(rules, account, state, timestamp, bar, ref[t], fill_mark[t], volume[t], est[t], groups, fills,
                     orders, trips, scratch)
        if rules.stops and rules.next_open:  # positions held from the open (filled there or before)
            _stops(rules, account, state, timestamp, bar, open_[t], high[t], low_[t], volume[t], est[t], fills, orders,
                   trips, forced)
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
        if rules.var_limit:
            _update_var(rules, account, ring, equity)
        if rules.path_limits:
            flatten, measured, threshold, reference = _on_close(rules, account, equity)
            if flatten:
                _flatten(account, state, forced, flatten, bar, timestamp, marks, equity, measured, threshold,
                         reference)
        account.last_equity = equity
        if stage_now and rules.next_open:
            _stage(account, state, orders, row, previous, sized, every_held, marks, bar, timestamp)
        previous, row = row, previous
    account.last_equity = equity
    if n_t:
        account.last_bar, account.last_timestamp = start + n_t - 1, timestamps[n_t - 1]
    for s in range(n_s):
        state[s].target = previous[s]


@njit(cache=True)
def stage_weights(account_row: np.ndarray, state: np.ndarray, weights: np.ndarray, bar: int, timestamp: int,
                  marks: np.ndarray, orders: np.ndarray) -> None:
    """Stage ``weights`` as new targets at ``bar``, outside a chunk (unsized: the training env's
    actions), and make them the targets; ``marks``: the bar's closes, the orders' arrival prices."""
    account = account_row[0]
    _stage(account, state, orders, weights, _targets(state), weights, False, marks, bar, timestamp)
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
