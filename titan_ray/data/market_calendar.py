"""The US equities market calendar: regular sessions, holidays and early closes, for any year.

NYSE/Nasdaq rules, computed (no table to keep up to date):

- Regular session 09:30-16:00 America/New_York on weekdays; early closes end at 13:00.
- Holidays: New Year's Day, Martin Luther King Jr. Day (third Monday of January, from 1998),
  Washington's Birthday (third Monday of February), Good Friday, Memorial Day (last Monday of
  May), Juneteenth (June 19, from 2022), Independence Day, Labor Day (first Monday of
  September), Thanksgiving (fourth Thursday of November) and Christmas Day. A fixed-date holiday
  on a Sunday is observed on the Monday after, one on a Saturday on the Friday before, except New
  Year's Day: the exchange does not close on the Friday, December 31, before a Saturday New Year.
- Early closes (13:00): July 3 when it falls Monday-Thursday, the day after Thanksgiving, and
  December 24 when it falls Monday-Thursday.
- One-off closures (a national day of mourning, a storm) follow no rule: pass them as
  ``extra_holidays`` (config ``data.session.extra_holidays``).

``UsEquityCalendar`` answers which days trade and when (``session``, ``sessions``,
``next_open``), and ``in_session`` marks bars inside the regular session. ``filter_session``
applies the config's rule (``data.session.outside``: keep / drop / reject) to ``MarketData``.
The live feed uses the calendar to say when the market opens next; annualisation keeps the
documented convention (252 sessions of 6.5 h, ``calendar.periods_per_year``), and
``trading_days(year)`` shows how close a real year comes to it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from titan_ray.data.market import BadBarRule, DataError, MarketData, RejectedBar
from titan_ray.domain.bars import FIELDS, BarBatch
from titan_ray.domain.calendar import Calendar

EXCHANGE_TZ = ZoneInfo("America/New_York")
OPEN = dt.time(9, 30)
CLOSE = dt.time(16, 0)
EARLY_CLOSE = dt.time(13, 0)


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day: its date and the open and close as UTC nanoseconds."""

    date: dt.date
    open_ns: int
    close_ns: int
    early_close: bool

    @property
    def open(self) -> pd.Timestamp:
        return pd.Timestamp(self.open_ns, tz="UTC").tz_convert(EXCHANGE_TZ)

    @property
    def close(self) -> pd.Timestamp:
        return pd.Timestamp(self.close_ns, tz="UTC").tz_convert(EXCHANGE_TZ)


def easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (the anonymous Meeus/Jones/Butcher algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The ``n``-th ``weekday`` (Monday = 0) of a month; ``n = -1`` for the last one."""
    if n > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: dt.date) -> dt.date:
    if day.weekday() == 5:
        return day - dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + dt.timedelta(days=1)
    return day


@lru_cache(maxsize=256)
def holidays(year: int) -> dict[dt.date, str]:
    """The exchange holidays of ``year`` (weekdays only), by rule."""
    out: dict[dt.date, str] = {}
    new_year = dt.date(year, 1, 1)
    if new_year.weekday() != 5:  # a Saturday New Year is not made up on Friday Dec 31
        out[_observed(new_year)] = "New Year's Day"
    if year >= 1998:
        out[_nth_weekday(year, 1, 0, 3)] = "Martin Luther King Jr. Day"
    out[_nth_weekday(year, 2, 0, 3)] = "Washington's Birthday"
    out[easter(year) - dt.timedelta(days=2)] = "Good Friday"
    out[_nth_weekday(year, 5, 0, -1)] = "Memorial Day"
    if year >= 2022:
        out[_observed(dt.date(year, 6, 19))] = "Juneteenth"
    out[_observed(dt.date(year, 7, 4))] = "Independence Day"
    out[_nth_weekday(year, 9, 0, 1)] = "Labor Day"
    out[_nth_weekday(year, 11, 3, 4)] = "Thanksgiving Day"
    out[_observed(dt.date(year, 12, 25))] = "Christmas Day"
    # Next year's New Year on a Sunday is observed on Monday Jan 2, already in that year.
    return {d: name for d, name in out.items() if d.year == year}


@lru_cache(maxsize=256)
def early_closes(year: int) -> frozenset[dt.date]:
    days = {_nth_weekday(year, 11, 3, 4) + dt.timedelta(days=1)}
    for day in (dt.date(year, 7, 3), dt.date(year, 12, 24)):
        if day.weekday() <= 3:
            days.add(day)
    return frozenset(d for d in days if d not in holidays(year))


class UsEquityCalendar:
    """Sessions of US equities; ``extra_holidays`` adds one-off closures (dates)."""

    def __init__(self, extra_holidays: Iterable[dt.date | str] = ()) -> None:
        self._extra = frozenset(pd.Timestamp(d).date() for d in extra_holidays)

    def holiday_name(self, day: dt.date) -> str | None:
        if day in self._extra:
            return "special closure"
        return holidays(day.year).get(day)

    def is_trading_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and self.holiday_name(day) is None

    def session(self, day: dt.date) -> Session | None:
        """The session on ``day`` (an exchange-local date), or None when the market is closed."""
        if not self.is_trading_day(day):
            return None
        early = day in early_closes(day.year)
        opens = dt.datetime.combine(day, OPEN, EXCHANGE_TZ)
        closes = dt.datetime.combine(day, EARLY_CLOSE if early else CLOSE, EXCHANGE_TZ)
        return Session(day, _ns(opens), _ns(closes), early)

    def sessions(self, start: dt.date | str, end: dt.date | str) -> list[Session]:
        """Every session from ``start`` to ``end``, both inclusive."""
        first, last = pd.Timestamp(start).date(), pd.Timestamp(end).date()
        days = (first + dt.timedelta(days=i) for i in range((last - first).days + 1))
        return [s for s in map(self.session, days) if s is not None]

    def trading_days(self, year: int) -> int:
        return len(self.sessions(dt.date(year, 1, 1), dt.date(year, 12, 31)))

    def next_open(self, now_ns: int) -> Session:
        """The session that is open at ``now_ns``, else the next one to open."""
        day = pd.Timestamp(now_ns, tz="UTC").tz_convert(EXCHANGE_TZ).date()
        for i in range(15):  # no closure lasts two weeks
            s = self.session(day + dt.timedelta(days=i))
            if s is not None and s.close_ns > now_ns:
                return s
        raise RuntimeError(f"no session within 15 days of {pd.Timestamp(now_ns, tz='UTC')}")

    def is_open(self, now_ns: int) -> bool:
        s = self.next_open(now_ns)
        return s.open_ns <= now_ns < s.close_ns

    def in_session(self, timestamps: np.ndarray, *, daily: bool = False) -> np.ndarray:
        """True where a bar lies inside a regular session.

        A bar is labelled by its start (Alpaca's convention): intraday bars are in the session when
        open <= t < close. ``daily`` bars only need their exchange-local date to be a trading day.
        """
        ts = np.asarray(timestamps, dtype=np.int64)
        if len(ts) == 0:
            return np.zeros(0, dtype=bool)
        local = pd.DatetimeIndex(ts.astype("datetime64[ns]"), tz="UTC").tz_convert(EXCHANGE_TZ)
        dates = local.date
        out = np.zeros(len(ts), dtype=bool)
        for day in np.unique(dates):
            rows = dates == day
            s = self.session(day)
            if s is None:
                continue
            out[rows] = True if daily else (ts[rows] >= s.open_ns) & (ts[rows] < s.close_ns)
        return out


def _ns(moment: dt.datetime) -> int:
    return pd.Timestamp(moment).tz_convert("UTC").as_unit("ns").value


def filter_session(market: MarketData, outside: str, calendar: UsEquityCalendar | None = None) -> MarketData:
    """Apply ``data.session.outside`` to equities ``MarketData``: keep, drop or reject off-session bars.

    ``drop`` removes the timestamps quietly (counted in ``source``); ``reject`` removes them and
    records each bar as a ``RejectedBar`` with rule ``OUTSIDE_SESSION``, like any bad bar.
    """
    if outside == "keep" or market.calendar is not Calendar.EQUITIES:
        return market
    cal = calendar or UsEquityCalendar()
    bars = market.bars
    daily = market.frequency >= pd.Timedelta(days=1)
    inside = cal.in_session(bars.timestamps, daily=daily)
    if inside.all():
        return market
    if not inside.any():
        first, last = (pd.Timestamp(int(x), tz="UTC") for x in (bars.timestamps[0], bars.timestamps[-1]))
        raise DataError(
            f"every bar of {market.source} ({first} to {last}) lies outside the regular US equities "
            "session; set data.session.outside: keep, or data.calendar: continuous for 24/7 markets"
        )
    rejected = list(market.rejected)
    if outside == "reject":
        for t in np.flatnonzero(~inside):
            when = pd.Timestamp(int(bars.timestamps[t]), tz="UTC").tz_convert(EXCHANGE_TZ)
            for s in np.flatnonzero(np.isfinite(bars.close[t])):
                rejected.append(RejectedBar(market.source, int(t) + 1, bars.symbols[s], BadBarRule.OUTSIDE_SESSION,
                                            f"{when} is outside the regular session"))
    keep = np.flatnonzero(inside)
    filtered = BarBatch.from_arrays(bars.timestamps[keep], bars.symbols,
                                    **{f: getattr(bars, f)[keep] for f in FIELDS})
    source = market.source
    if outside == "drop":
        source = f"{source} ({int((~inside).sum())} off-session timestamps dropped)"
    return replace(market, bars=filtered, rejected=tuple(rejected), source=source)
