"""Is a sample long enough to annualise? The leaderboard's one rule for withholding figures.

Annualising scales a per-bar number to a year: after 26 fifteen-minute bars a CAGR raises 26 bars'
growth to the power 6,552 / 26, a Sharpe ratio multiplies by sqrt(6,552), and a minute's trading
becomes an annual turnover of thousands. The numbers are true to their formulas and meaningless.
So the leaderboard shows an annualised figure only once a model has

    minimum = max(MIN_RETURNS, bars in one trading day)      returns, MIN_RETURNS = 30,

the longer of 30 returns and one trading day of bars. Bars per day come from the same calendar
that gives the periods per year for annualisation (``titan_ray.domain.calendar``): periods per
year / trading days per year, rounded up. That is 26 for 15-minute bars and 390 for 1-minute bars
on ``equities`` (6.5 h sessions, 252 days), 1,440 for 1-minute bars on ``continuous`` (365 days),
1 for daily bars (so 30 days) and 1 for weekly bars (so 30 weeks). ``n`` counts every return, a
missing (nan) one too, as annualisation does (``performance``). Below the minimum the sample is
*too small*.

Withheld while the sample is too small (``WITHHELD_FIELDS``; ``None`` in the row, JSON ``null``,
"—" on screen):

- the annualised metrics of ``performance`` (``ANNUALISED_FIELDS``): ``cagr``, ``sharpe``,
  ``sortino``, ``calmar`` (a CAGR over a drawdown) and ``turnover`` (per year);
- the Sharpe test against the benchmark, ``sharpe_vs_benchmark_p`` and ``beats_benchmark``: its
  p-value does not depend on the annualisation, but it compares Sharpe ratios the leaderboard
  withholds, and a block bootstrap of a few returns is no ground to crown a model. It is not run.

Everything else stays: final equity, total return, max drawdown and its duration, profit factor,
win rate, trades, orders, rejections, exposure. Every leaderboard row carries ``sample_too_small``
(``False`` when the figures are shown) and ``sample_note``, ``None`` or the reason for the user, e.g.
"26 returns; annualised figures need at least 30 (30 returns and one trading day of 26 bars)".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from titan_ray.domain.calendar import Calendar, periods_per_year

MIN_RETURNS = 30
ANNUALISED_FIELDS = ("cagr", "sharpe", "sortino", "calmar", "turnover")
WITHHELD_FIELDS = (*ANNUALISED_FIELDS, "sharpe_vs_benchmark_p", "beats_benchmark")
WITHHELD_LABEL = "CAGR, Sharpe, Sortino, Calmar, turnover and the benchmark test"  # for the user


@dataclass(frozen=True, slots=True)
class Sample:
    """A model's number of returns against the minimum for annualised figures."""

    n_returns: int
    bars_per_day: int

    @property
    def minimum(self) -> int:
        return max(MIN_RETURNS, self.bars_per_day)

    @property
    def too_small(self) -> bool:
        return self.n_returns < self.minimum

    @property
    def note(self) -> str | None:
        """Why the figures are withheld, for the user; ``None`` when they are shown."""
        if not self.too_small:
            return None
        day = "bar" if self.bars_per_day == 1 else "bars"
        return (
            f"{self.n_returns:,} returns; annualised figures need at least {self.minimum:,} "
            f"({MIN_RETURNS} returns and one trading day of {self.bars_per_day:,} {day})"
        )


def bars_per_day(periods: float, calendar: Calendar | str) -> int:
    """Bars in one trading day of ``calendar`` for ``periods`` bars a year, rounded up, at least 1."""
    if not periods > 0:
        raise ValueError(f"periods per year must be positive, got {periods!r}")
    try:
        days = periods_per_year(timedelta(days=1), calendar)
    except ValueError:
        raise ValueError(f"calendar must be one of {[c.value for c in Calendar]}, got {calendar!r}") from None
    # 6552 / 252 is exactly 26, but a ratio of other floats may land an ulp above a whole number
    return max(1, math.ceil(periods / days * (1.0 - 1e-12)))


def annualisation_sample(n_returns: int, periods: float, calendar: Calendar | str) -> Sample:
    """``n_returns`` returns at ``periods`` bars a year on ``calendar``: long enough to annualise?"""
    if n_returns < 0:
        raise ValueError(f"n_returns must be 0 or more, got {n_returns!r}")
    return Sample(n_returns=int(n_returns), bars_per_day=bars_per_day(periods, calendar))


def withhold(row: dict[str, Any], sample: Sample) -> dict[str, Any]:
    """``row`` with ``WITHHELD_FIELDS`` set to ``None`` when the sample is too small (keys keep
    their places), and ``sample_too_small`` and ``sample_note`` added at the end."""
    out = dict(row)
    if sample.too_small:
        for key in WITHHELD_FIELDS:
            if key in out:
                out[key] = None
    out["sample_too_small"] = sample.too_small
    out["sample_note"] = sample.note
    return out
