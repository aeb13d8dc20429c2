"""The US equities calendar: holidays and early closes by rule, sessions across DST, off-session bars."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from titan_ray.config import DataConfig
from titan_ray.data.market import BadBarRule, DataError, MarketData
from titan_ray.data.market_calendar import UsEquityCalendar, early_closes, easter, filter_session, holidays
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import Calendar

D = dt.date


def test_holidays_match_the_published_nyse_schedules():
    assert sorted(holidays(2024)) == [D(2024, 1, 1), D(2024, 1, 15), D(2024, 2, 19), D(2024, 3, 29), D(2024, 5, 27),
                                      D(2024, 6, 19), D(2024, 7, 4), D(2024, 9, 2), D(2024, 11, 28), D(2024, 12, 25)]
    # Sunday holidays move to Monday; a Saturday New Year is not made up on Friday Dec 31
    assert D(2023, 1, 2) in holidays(2023) and D(2022, 6, 20) in holidays(2022) and D(2022, 12, 26) in holidays(2022)
    assert not [d for d in holidays(2022) if d.month == 1 and d.day < 3]
    assert D(2021, 12, 31) not in holidays(2021) and D(2021, 12, 24) in holidays(2021)
    # a Saturday Independence Day is observed on Friday July 3, which then is no early close
    assert D(2026, 7, 3) in holidays(2026) and D(2026, 7, 3) not in early_closes(2026)
    assert D(2021, 6, 18) not in holidays(2021)  # Juneteenth only from 2022
    assert easter(2024) == D(2024, 3, 31) and easter(2000) == D(2000, 4, 23) and easter(2038) == D(2038, 4, 25)


@pytest.mark.parametrize(("year", "days"), [(2021, 252), (2022, 251), (2023, 250), (2024, 252)])
def test_trading_days_per_year(year, days):
    assert UsEquityCalendar().trading_days(year) == days


def test_early_closes_and_sessions_in_utc_across_daylight_saving():
    assert early_closes(2024) == {D(2024, 7, 3), D(2024, 11, 29), D(2024, 12, 24)}
    assert early_closes(2023) == {D(2023, 7, 3), D(2023, 11, 24)}  # Dec 24 2023 is a Sunday
    cal = UsEquityCalendar()
    winter, summer, short = cal.session(D(2024, 3, 8)), cal.session(D(2024, 3, 11)), cal.session(D(2024, 11, 29))
    assert pd.Timestamp(winter.open_ns, tz="UTC") == pd.Timestamp("2024-03-08 14:30", tz="UTC")
    assert pd.Timestamp(summer.open_ns, tz="UTC") == pd.Timestamp("2024-03-11 13:30", tz="UTC")
    assert short.early_close and short.close.strftime("%H:%M") == "13:00"
    assert cal.session(D(2024, 3, 9)) is None and cal.session(D(2024, 3, 29)) is None
    special = UsEquityCalendar(extra_holidays=["2025-01-09"])
    assert special.session(D(2025, 1, 9)) is None and cal.session(D(2025, 1, 9)) is not None
    assert special.trading_days(2025) == 250


def test_next_open_and_in_session():
    cal = UsEquityCalendar()
    friday_close = pd.Timestamp("2024-03-28 16:00", tz="America/New_York").value  # Good Friday follows
    nxt = cal.next_open(friday_close)
    assert nxt.date == D(2024, 4, 1) and not cal.is_open(friday_close)
    assert cal.is_open(pd.Timestamp("2024-04-01 09:30", tz="America/New_York").value)
    ts = pd.DatetimeIndex(["2024-07-03 09:29", "2024-07-03 09:30", "2024-07-03 12:59", "2024-07-03 13:00",
                           "2024-07-04 10:00", "2024-07-05 15:59"], tz="America/New_York").tz_convert("UTC").as_unit("ns").asi8
    assert cal.in_session(ts).tolist() == [False, True, True, False, False, True]
    days = pd.DatetimeIndex(["2024-07-03", "2024-07-04", "2024-07-06"], tz="America/New_York").tz_convert("UTC")
    assert cal.in_session(days.as_unit("ns").asi8, daily=True).tolist() == [True, False, False]


def _market(times: list[str]) -> MarketData:
    ts = pd.DatetimeIndex(times, tz="America/New_York").tz_convert("UTC").as_unit("ns").asi8
    n = len(ts)
    price = np.full((n, 1), 10.0)
    bars = BarBatch.from_arrays(ts, ["AAA"], open=price, high=price, low=price, close=price, volume=np.ones((n, 1)))
    return MarketData(bars, pd.Timedelta(minutes=1), Calendar.EQUITIES, "test")


def test_off_session_bars_are_kept_dropped_or_rejected_by_config():
    market = _market(["2024-03-04 09:29", "2024-03-04 09:30", "2024-03-04 15:59", "2024-03-04 16:00"])
    assert filter_session(market, "keep") is market
    dropped = filter_session(market, "drop")
    assert len(dropped.bars) == 2 and not dropped.rejected and "2 off-session timestamps dropped" in dropped.source
    rejected = filter_session(market, "reject")
    assert len(rejected.bars) == 2 and [r.rule for r in rejected.rejected] == [BadBarRule.OUTSIDE_SESSION] * 2
    assert rejected.rejected[0].row == 1 and "outside the regular session" in rejected.rejected[0].detail
    with pytest.raises(DataError, match="data.session.outside: keep"):
        filter_session(_market(["2024-03-09 10:00", "2024-03-09 10:01"]), "drop")
    assert DataConfig(provider="alpaca", symbols=["A"]).session_rule == "drop"
    assert DataConfig().session_rule == "keep"
