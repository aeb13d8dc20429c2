"""The money policy, written down once.

- Cash, fill values and commissions are exact: Python integers of **micro-units** (1e-6 of the
  account currency). Their sums never drift, however many fills a run has, so the invariant
  ``cash = initial - sum(buy values) + sum(sell values) - sum(commissions)`` holds to the unit.
- A fill's value is computed exactly from the float64 fill price (its exact binary value, as an
  integer ratio) times the quantity, and then quantized once, half-even, to the micro-unit; its
  commission is computed exactly from that value and quantized the same way. No cent rounding
  is applied per fill: a micro-unit is 10,000 times finer than a broker's cent.
- Prices, marks and metrics are float64 (a mark is an estimate, not money that moved).
- Quantities are float64 holding integers unless ``ledger.fractional`` is set.

These functions are the policy's reference, in Python integers. The ledger books with their
compiled twins in ``ledger/kernel.py`` (``value_micro``, ``commission``), which give the same
integers (a differential test checks it) and call ``round_half_even`` for the rare commission
whose product needs more than 64 bits.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MICRO = 1_000_000
_MICRO_D = Decimal(MICRO)
_ONE = Decimal(1)


def to_micro(amount: Decimal | int | str) -> int:
    """An exact amount of currency as integer micro-units (half-even at the micro-unit)."""
    return int((Decimal(amount) * _MICRO_D).quantize(_ONE, rounding=ROUND_HALF_EVEN))


def from_micro(micro: int) -> float:
    return micro / MICRO


def round_half_even(num: int, den: int) -> int:
    """num / den rounded half-even to an integer, exactly (den > 0)."""
    quo, rem = divmod(num, den)
    twice = 2 * rem
    if twice > den or (twice == den and quo & 1):
        quo += 1
    return quo


def fill_value_micro(quantity: float, price: float) -> int:
    """|quantity| x price in micro-units, exact up to the one quantization.

    Floats are binary fractions, so ``as_integer_ratio`` gives their exact values and the product
    is formed in integers: the same result as Decimal arithmetic, several times faster.
    """
    qn, qd = abs(quantity).as_integer_ratio()
    pn, pd = price.as_integer_ratio()
    return round_half_even(qn * pn * MICRO, qd * pd)


class Commission:
    """A commission rate in basis points, applied exactly to a fill value in micro-units.

    The rate is the exact fraction ``num / den`` of the value (``den`` includes the 10,000 of a
    basis point).
    """

    def __init__(self, bps: Decimal | int | str) -> None:
        self.bps = Decimal(bps)
        num, den = self.bps.as_integer_ratio()
        self.num, self.den = num, den * 10_000

    def __call__(self, value_micro: int) -> int:
        if not self.num:
            return 0
        return round_half_even(value_micro * self.num, self.den)


def commission_micro(value_micro: int, bps: Decimal) -> int:
    """Commission of ``bps`` basis points on a fill value, in micro-units."""
    return Commission(bps)(value_micro)
