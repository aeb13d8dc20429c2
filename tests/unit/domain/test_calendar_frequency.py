"""Bar frequencies without pandas (``titan_ray.domain.calendar``), checked against the pandas versions."""

from __future__ import annotations

import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from titan_ray.domain.calendar import (
    SESSION_MINUTES,
    TRADING_DAYS,
    Calendar,
    format_frequency,
    infer_frequency,
    parse_frequency,
    periods_per_year,
)

NS_PER_DAY = 86_400 * 10**9


# --- the implementations this module replaced, on pandas --------------------------------------------


def pandas_parse(freq: str) -> pd.Timedelta:
    text = str(freq).strip()
    with warnings.catch_warnings():  # pandas 3 deprecates some spellings ('d', 'S', 'MIN', 'w')
        warnings.simplefilter("ignore")
        try:
            return pd.Timedelta(pd.tseries.frequencies.to_offset(text))
        except (ValueError, TypeError):
            return pd.Timedelta(text)


def pandas_format(td: pd.Timedelta) -> str:
    minutes = td / pd.Timedelta(minutes=1)
    if td >= pd.Timedelta(days=1) and td % pd.Timedelta(days=1) == pd.Timedelta(0):
        return f"{int(td / pd.Timedelta(days=1))}D"
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)}h"
    if minutes == int(minutes):
        return f"{int(minutes)}min"
    return f"{int(td / pd.Timedelta(seconds=1))}s"


def pandas_infer(timestamps: np.ndarray) -> pd.Timedelta:
    gaps = np.diff(np.asarray(timestamps, dtype=np.int64))
    median = int(np.median(gaps[gaps > 0]))
    if median >= NS_PER_DAY // 2:
        return pd.Timedelta(days=max(1, round(median / NS_PER_DAY)))
    return pd.Timedelta(median, unit="ns")


def pandas_periods(bar: pd.Timedelta, calendar: Calendar) -> float:
    if bar >= pd.Timedelta(days=1):
        days = bar / pd.Timedelta(days=1)
        return (TRADING_DAYS if calendar is Calendar.EQUITIES else 365) / days
    minutes = bar / pd.Timedelta(minutes=1)
    if calendar is Calendar.EQUITIES:
        return TRADING_DAYS * SESSION_MINUTES / minutes
    return 365 * 24 * 60 / minutes


# --- parsing --------------------------------------------------------------------------------------

# What the configs, docs and tests write, and the other spellings pandas read as a fixed bar size.
ACCEPTED = [
    "1min",
    "5min",
    "15min",
    "30min",
    "60min",
    "1h",
    "1H",
    "2H",
    "4h",
    "1D",
    "1d",
    "D",
    "d",
    "2D",
    "1s",
    "1S",
    "s",
    "min",
    "h",
    "ms",
    "us",
    "1W",
    "1w",
    "2W",
    "1ms",
    "1us",
    "90s",
    "1.5h",
    "0.5D",
    "1.5min",
    ".5min",
    "1.min",
    "0.0001s",
    "1m",
    "15m",
    "15MIN",
    "1Min",
    "1Ms",
    " 15min ",
    "1 h",
    "15 min",
    "1 minute",
    "15 minutes",
    "1 Minutes",
    "1 day",
    "1 days",
    "1DAY",
    "1 dAy",
    "1 hour",
    "3 Hours",
    "1hour",
    "1hr",
    "1sec",
    "1second",
    "2 seconds",
    "1milli",
    "1millis",
    "1millisecond",
    "1micro",
    "1µs",
    "1microsecond",
    "1000ns",
    "+1min",
    "1h30min",
    "1h30m",
    "1hour30minutes",
    "1D1h",
    "1D2H",
    "1D 2h",
    "1h1h",
    "01:00:00",
    "0:15:00",
    "10:00:00.5",
    "1 days 02:00:00",
    "1 day, 0:00:00",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_parses_what_pandas_parsed(text: str) -> None:
    parsed = parse_frequency(text)
    assert type(parsed) is timedelta
    assert parsed == pandas_parse(text)
    assert pd.Timedelta(parsed).value == pandas_parse(text).value


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 10_000),
    st.sampled_from(["s", "min", "h", "D", "d", "H", "ms", "us", "W", " min", "sec"]),
)
def test_a_number_and_a_unit_parse_as_in_pandas(n: int, unit: str) -> None:
    text = f"{n}{unit}"
    assert pd.Timedelta(parse_frequency(text)).value == pandas_parse(text).value


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("fortnightly-ish", "not understood"),
        ("fortnightly", "unknown unit 'fortnightly'"),
        ("", "not understood"),
        ("15", "not understood"),  # pandas read a bare number as nanoseconds
        ("1.5", "not understood"),
        ("M", "month or minute"),
        ("1M", "month or minute"),
        ("1Y", "years are not"),
        ("1B", "business days"),
        ("5T", "use 'min'"),
        ("1L", "use 'ms'"),
        ("1U", "use 'us'"),
        ("0min", "must be positive"),
        ("-1min", "must be positive"),
        ("1 2min", "not understood"),
        ("1..5min", "not understood"),
        ("1e3s", "unknown unit 'e'"),
        ("1_000s", "not understood"),
        ("W-SUN", "not understood"),
        ("15min ago", "not understood"),
        ("min1", "not understood"),
        ("1ns", "finer than a microsecond"),
        ("1500ns", "finer than a microsecond"),
        ("1.5ns", "finer than a nanosecond"),
    ],
)
def test_refuses_with_a_reason_and_the_forms(text: str, hint: str) -> None:
    with pytest.raises(ValueError, match="bar frequency") as err:
        parse_frequency(text)
    assert hint in str(err.value)
    assert repr(text) in str(err.value)


def test_a_timedelta_passes_through() -> None:
    assert parse_frequency(pd.Timedelta("15min")) == timedelta(minutes=15)
    assert type(parse_frequency(pd.Timedelta("15min"))) is timedelta
    assert parse_frequency(timedelta(hours=1)) == timedelta(hours=1)
    assert parse_frequency(np.timedelta64(90, "s")) == timedelta(seconds=90)
    with pytest.raises(ValueError, match="positive"):
        parse_frequency(timedelta(0))


# --- formatting, annualising, inferring -------------------------------------------------------------

DURATIONS = st.one_of(
    st.integers(1, 60 * 24 * 40).map(lambda m: m * 60 * 10**9),  # whole minutes up to 40 days
    st.integers(1, 40 * 86_400).map(lambda s: s * 10**9),  # whole seconds
    st.integers(1, 40 * NS_PER_DAY // 1000).map(lambda us: us * 1000),  # microseconds
    st.integers(1, 40 * NS_PER_DAY),  # nanoseconds: a pandas.Timedelta may carry them
)


@settings(max_examples=500, deadline=None)
@given(DURATIONS)
def test_format_and_periods_per_year_equal_the_pandas_versions(ns: int) -> None:
    td = pd.Timedelta(ns, unit="ns")
    assert format_frequency(td) == pandas_format(td)
    for calendar in Calendar:
        assert periods_per_year(td, calendar) == pandas_periods(td, calendar)
        assert periods_per_year(td, calendar.value) == pandas_periods(td, calendar)
    if ns % 1000 == 0:  # a datetime.timedelta holds microseconds
        plain = timedelta(microseconds=ns // 1000)
        assert format_frequency(plain) == pandas_format(td)
        assert periods_per_year(plain, Calendar.EQUITIES) == pandas_periods(td, Calendar.EQUITIES)
        assert periods_per_year(np.timedelta64(ns, "ns"), Calendar.CONTINUOUS) == pandas_periods(
            td, Calendar.CONTINUOUS
        )


@pytest.mark.parametrize("text", ACCEPTED)
def test_format_reads_back(text: str) -> None:
    bar = parse_frequency(text)
    if bar % timedelta(seconds=1) == timedelta(0):
        assert parse_frequency(format_frequency(bar)) == bar


def test_known_periods_per_year() -> None:
    assert periods_per_year(parse_frequency("1D"), "equities") == 252
    assert periods_per_year(parse_frequency("15min"), "equities") == 252 * 26
    assert periods_per_year(parse_frequency("1h"), "continuous") == 365 * 24


@settings(max_examples=300, deadline=None)
@given(
    st.integers(pd.Timestamp("1990-01-01").value // 1000, pd.Timestamp("2040-01-01").value // 1000),
    st.lists(st.integers(1, 3 * NS_PER_DAY // 1000), min_size=1, max_size=60),
)
def test_infer_frequency_equals_the_pandas_version(start_us: int, gaps_us: list[int]) -> None:
    # timestamps to the microsecond (what files hold); the median of an even count can end in .5 us,
    # which the pandas version kept as 500 ns and this one rounds down to the microsecond
    ts = (start_us + np.cumsum([0, *gaps_us])) * 1000
    inferred, reference = infer_frequency(ts), pandas_infer(ts)
    assert type(inferred) is timedelta
    assert pd.Timedelta(inferred).value == reference.value - reference.value % 1000


def test_infer_frequency_of_bars() -> None:
    day = pd.date_range("2024-01-01", periods=30, freq="B").as_unit("ns").asi8
    assert infer_frequency(day) == timedelta(days=1)
    intraday = np.concatenate([np.arange(26) * 15 * 60 * 10**9 + d for d in day[:5]])
    assert infer_frequency(intraday) == timedelta(minutes=15)
    with pytest.raises(ValueError, match="data.frequency"):
        infer_frequency(np.array([5]))
    with pytest.raises(ValueError, match="data.frequency"):
        infer_frequency(np.array([5, 5, 5]))
