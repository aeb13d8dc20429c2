"""Exchange-local time without pandas (``titan_ray.domain.calendar``), checked against pandas' tz_convert."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from titan_ray.domain.calendar import (
    EXCHANGE_TZ,
    NS_PER_DAY,
    Calendar,
    local_times,
    session_days,
    utc_offsets,
)

HOUR = 3_600_000_000_000
LO = pd.Timestamp("1990-01-01").value
HI = pd.Timestamp("2040-12-31").value
TIMES = hnp.arrays(np.int64, st.integers(0, 200), elements=st.integers(LO, HI))


def pandas_local(ts: np.ndarray, tz: str = EXCHANGE_TZ) -> np.ndarray:
    return pd.DatetimeIndex(ts.astype("datetime64[ns]"), tz="UTC").tz_convert(tz).tz_localize(None).asi8


def pandas_session_days(ts: np.ndarray, calendar: str) -> np.ndarray:
    """The implementation this module replaced."""
    if Calendar(calendar) is Calendar.EQUITIES:
        local = pd.DatetimeIndex(ts.astype("datetime64[ns]"), tz="UTC").tz_convert(EXCHANGE_TZ)
        return (local.tz_localize(None).normalize().asi8 // NS_PER_DAY).astype(np.int64)
    return ts // NS_PER_DAY


def _us_transitions() -> np.ndarray:
    """Every UTC instant New York's offset changed, 1990-2040, from pandas' view of the zone."""
    hours = np.arange(LO, HI, HOUR, dtype=np.int64)
    offsets = pandas_local(hours) - hours
    return hours[1:][np.diff(offsets) != 0]


US_TRANSITIONS = _us_transitions()


def test_the_us_transitions_are_two_a_year() -> None:
    assert len(US_TRANSITIONS) == 2 * 51
    years = pd.DatetimeIndex(US_TRANSITIONS.astype("datetime64[ns]")).year
    assert sorted(set(np.bincount(years - 1990))) == [2]


@settings(max_examples=300, deadline=None)
@given(TIMES)
def test_local_time_equals_pandas(ts: np.ndarray) -> None:
    np.testing.assert_array_equal(local_times(ts), pandas_local(ts))
    np.testing.assert_array_equal(utc_offsets(ts), pandas_local(ts) - ts)


def test_local_time_at_and_around_every_us_dst_transition() -> None:
    steps = np.array([-HOUR - 1, -HOUR, -1_000_000_000, -1, 0, 1, 999_999_999, 1_000_000_000, HOUR - 1, HOUR])
    ts = (US_TRANSITIONS[:, None] + steps[None, :]).ravel()
    np.testing.assert_array_equal(local_times(ts), pandas_local(ts))
    # both ways: spring forward (offset up an hour) and fall back (down an hour), each year
    jumps = utc_offsets(US_TRANSITIONS) - utc_offsets(US_TRANSITIONS - 1)
    assert sorted(set(jumps.tolist())) == [-HOUR, HOUR]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(US_TRANSITIONS.tolist()),
    st.lists(st.integers(-2 * NS_PER_DAY, 2 * NS_PER_DAY), max_size=50),
)
def test_local_time_near_a_us_dst_transition(transition: int, deltas: list[int]) -> None:
    ts = transition + np.array(deltas, dtype=np.int64)
    np.testing.assert_array_equal(local_times(ts), pandas_local(ts))
    for calendar in Calendar:
        np.testing.assert_array_equal(session_days(ts, calendar), pandas_session_days(ts, calendar))


@settings(max_examples=300, deadline=None)
@given(TIMES, st.sampled_from(list(Calendar)))
def test_session_days_equal_the_pandas_implementation(ts: np.ndarray, calendar: Calendar) -> None:
    days = session_days(ts, calendar)
    assert days.dtype == np.int64
    np.testing.assert_array_equal(days, pandas_session_days(ts, calendar.value))


@settings(max_examples=100, deadline=None)
@given(TIMES, st.integers(0, 200))
def test_chunks_get_the_offsets_the_whole_gets(ts: np.ndarray, cut: int) -> None:
    ts = np.sort(ts)
    whole = utc_offsets(ts)
    np.testing.assert_array_equal(np.concatenate([utc_offsets(ts[:cut]), utc_offsets(ts[cut:])]), whole)


@pytest.mark.parametrize(
    "tz",
    [
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Africa/Casablanca",
        "America/St_Johns",
        "Pacific/Apia",
        "UTC",
    ],
)
def test_any_zone_over_all_of_pandas_range(tz: str) -> None:
    # half-hour daylight saving, Ramadan suspensions, a skipped day, the local mean time before 1883
    rng = np.random.default_rng(7)
    ts = rng.integers(pd.Timestamp("1677-09-22").value, pd.Timestamp("2262-04-10").value, 50_000)
    np.testing.assert_array_equal(local_times(ts, tz), pandas_local(ts, tz))


def test_empty_and_shaped_inputs() -> None:
    empty = np.array([], dtype=np.int64)
    assert utc_offsets(empty).shape == (0,) and utc_offsets(empty).dtype == np.int64
    assert local_times(empty).shape == (0,)
    for calendar in Calendar:
        assert session_days(empty, calendar).shape == (0,)
    grid = np.arange(LO, LO + 12 * HOUR, HOUR, dtype=np.int64).reshape(3, 4)
    np.testing.assert_array_equal(local_times(grid), pandas_local(grid.ravel()).reshape(3, 4))


def test_new_york_winter_and_summer_offsets() -> None:
    winter, summer = (
        pd.Timestamp("2024-01-15 12:00", tz="UTC").value,
        pd.Timestamp("2024-07-15 12:00", tz="UTC").value,
    )
    assert utc_offsets(np.array([winter, summer])).tolist() == [-5 * HOUR, -4 * HOUR]
    # 2024-03-10 07:00 UTC is 03:00 EDT; a nanosecond before it, 01:59:59.999999999 EST
    change = pd.Timestamp("2024-03-10 07:00", tz="UTC").value
    assert utc_offsets(np.array([change - 1, change])).tolist() == [-5 * HOUR, -4 * HOUR]
