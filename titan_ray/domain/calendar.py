"""Bar frequencies, trading calendars, exchange-local time and annualisation.

Two calendars: ``equities`` (US equity sessions, 09:30-16:00 America/New_York on weekdays, 6.5 h a
day, 252 days a year) and ``continuous`` (24/7, 365 days a year). Annualisation follows
empyrical's conventions: daily bars 252 periods a year; intraday bars on ``equities`` 252 x bars
per 6.5 h session; ``continuous`` 365 x bars per day.

Only numpy and the standard library (``zoneinfo``, ``datetime``): every model actor imports this
module through the config, and pandas would cost each one ~90 MB and a second of CPU.

- Frequencies are ``datetime.timedelta`` values. ``parse_frequency`` reads a bar size such as
  ``15min``, ``1h``, ``1D`` or ``D``; the functions that take a frequency also accept a
  ``pandas.Timedelta`` (a ``timedelta`` subclass, read to the nanosecond) or a ``numpy.timedelta64``.
- Local time: ``utc_offsets`` gives a zone's UTC offset for each of an array of UTC nanosecond
  timestamps, exactly as ``pandas.DatetimeIndex.tz_convert`` would: the zone's offset changes
  (found once per block of days from ``zoneinfo`` and cached) are looked up with one
  ``np.searchsorted``.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from enum import Enum
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_HOUR = 60 * NS_PER_MINUTE
NS_PER_DAY = 24 * NS_PER_HOUR
SESSION_MINUTES = 390  # 6.5 h
TRADING_DAYS = 252
EXCHANGE_TZ = "America/New_York"

Frequency = timedelta | np.timedelta64


class Calendar(str, Enum):
    EQUITIES = "equities"
    CONTINUOUS = "continuous"


# ---------------------------------------------------------------------------------------- frequencies

_UNIT_NS: dict[str, int] = {
    name: ns
    for names, ns in (
        (("w", "week", "weeks"), 7 * NS_PER_DAY),
        (("d", "day", "days"), NS_PER_DAY),
        (("h", "hr", "hrs", "hour", "hours"), NS_PER_HOUR),
        (("m", "min", "mins", "minute", "minutes"), NS_PER_MINUTE),
        (("s", "sec", "secs", "second", "seconds"), NS_PER_SECOND),
        (("ms", "milli", "millis", "millisecond", "milliseconds"), 1_000_000),
        (("us", "µs", "micro", "micros", "microsecond", "microseconds"), 1_000),
        (("ns", "nano", "nanos", "nanosecond", "nanoseconds"), 1),
    )
    for name in names
}

# Aliases pandas no longer accepts, and calendar offsets that are not one fixed length of time.
_REFUSED = {
    "t": "'T' is no longer a pandas alias; use 'min'",
    "l": "'L' is no longer a pandas alias; use 'ms'",
    "u": "'U' is no longer a pandas alias; use 'us'",
    "n": "'N' is no longer a pandas alias; use 'ns'",
    "b": "business days are not one fixed length of time; use 'D'",
    "y": "years are not one fixed length of time; use 'D'",
    "q": "quarters are not one fixed length of time; use 'D'",
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_TERM = re.compile(rf"\s*({_NUMBER})?\s*([^\W\d_]+)\s*")
_CLOCK = re.compile(r"(?:(\d+)\s*days?\s*,?\s*)?\+?(\d+):(\d\d):(\d\d(?:\.\d+)?)", re.IGNORECASE)
_FORMS = "a number and a unit such as '1min', '15min', '1h' or '1D' (units: W, D, h, min, s, ms, us)"


def parse_frequency(freq: str | Frequency) -> timedelta:
    """Parse a bar size such as ``15min``, ``1h``, ``1D`` or ``D`` into a ``timedelta``.

    Accepted: a number (``1``, ``1.5``; omitted means 1) and a unit, in any letter case except
    ``M`` (month or minute?): ``W``/``week``, ``D``/``day``, ``h``/``hr``/``hour``,
    ``min``/``m``/``minute``, ``s``/``sec``/``second``, ``ms``, ``us``, ``ns``, plural forms
    included; several terms add up (``1h30min``); a clock (``01:00:00``, ``1 days 02:00:00``).
    These are the forms pandas' ``to_offset``/``Timedelta`` accepted for a fixed bar size. A
    ``timedelta`` (or ``pandas.Timedelta``) passes through. Raises ValueError naming the forms.
    """
    if isinstance(freq, (timedelta, np.timedelta64)):
        ns = _nanoseconds(freq)
    else:
        ns = _parse_ns(str(freq).strip(), freq)
    if ns <= 0:
        raise ValueError(f"bar frequency {freq!r} must be positive; use {_FORMS}")
    if ns % 1_000:
        raise ValueError(f"bar frequency {freq!r} is finer than a microsecond; use {_FORMS}")
    return timedelta(microseconds=ns // 1_000)


def _parse_ns(text: str, freq: object) -> int:
    clock = _CLOCK.fullmatch(text)
    if clock:
        days, hours, minutes, seconds = clock.groups()
        total = (int(days or 0) * 24 + int(hours)) * 3600 + int(minutes) * 60 + Fraction(seconds)
        return _whole_ns(total * NS_PER_SECOND, freq)
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in "+-" else text
    terms: list[tuple[str | None, str]] = []
    pos = 0
    while pos < len(body):
        m = _TERM.match(body, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"bar frequency {freq!r} is not understood; use {_FORMS}")
        terms.append((m.group(1), m.group(2)))
        pos = m.end()
    if not terms or (len(terms) > 1 and any(number is None for number, _ in terms)):
        raise ValueError(f"bar frequency {freq!r} is not understood; use {_FORMS}")
    total = Fraction(0)
    for number, unit in terms:
        if unit == "M":
            raise ValueError(
                f"bar frequency {freq!r}: 'M' could mean month or minute; write 'min' for minutes"
            )
        key = unit.lower()
        if key in _REFUSED:
            raise ValueError(f"bar frequency {freq!r}: {_REFUSED[key]}")
        if key not in _UNIT_NS:
            raise ValueError(f"bar frequency {freq!r} has an unknown unit {unit!r}; use {_FORMS}")
        total += Fraction(number or "1") * _UNIT_NS[key]
    return sign * _whole_ns(total, freq)


def _whole_ns(ns: Fraction, freq: object) -> int:
    if ns.denominator != 1:
        raise ValueError(f"bar frequency {freq!r} is finer than a nanosecond; use {_FORMS}")
    return int(ns)


def _nanoseconds(freq: Frequency) -> int:
    """A frequency in whole nanoseconds; a ``pandas.Timedelta`` carries its nanoseconds apart."""
    if isinstance(freq, np.timedelta64):
        return int(freq.astype("timedelta64[ns]").astype(np.int64))
    if not isinstance(freq, timedelta):
        raise TypeError(f"a bar frequency is a datetime.timedelta, not {type(freq).__name__}")
    micros = (freq.days * 86_400 + freq.seconds) * 1_000_000 + freq.microseconds
    return micros * 1_000 + int(getattr(freq, "nanoseconds", 0))


def format_frequency(freq: Frequency) -> str:
    """The short name of a bar size: ``1D``, ``4h``, ``15min`` or ``30s``."""
    ns = _nanoseconds(freq)
    minutes = ns / NS_PER_MINUTE
    if ns >= NS_PER_DAY and ns % NS_PER_DAY == 0:
        return f"{ns // NS_PER_DAY}D"
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)}h"
    if minutes == int(minutes):
        return f"{int(minutes)}min"
    return f"{int(ns / NS_PER_SECOND)}s"


def infer_frequency(timestamps: np.ndarray) -> timedelta:
    """The typical spacing of bars (to the microsecond): the median gap between timestamps.

    Overnight and weekend gaps do not distort it, because they are a minority of gaps for
    intraday bars and daily bars are one day apart on most days.
    """
    if len(timestamps) < 2:
        raise ValueError("cannot infer a bar frequency from fewer than 2 timestamps; set data.frequency")
    gaps = np.diff(np.asarray(timestamps, dtype=np.int64))
    gaps = gaps[gaps > 0]
    if len(gaps) == 0:
        raise ValueError("cannot infer a bar frequency: every timestamp is the same; set data.frequency")
    median = int(np.median(gaps))
    if median >= NS_PER_DAY // 2:
        return timedelta(days=max(1, round(median / NS_PER_DAY)))
    return timedelta(microseconds=median // 1_000)


def periods_per_year(bar: Frequency, calendar: Calendar | str) -> float:
    calendar = Calendar(calendar)
    ns = _nanoseconds(bar)
    if ns >= NS_PER_DAY:
        days = ns / NS_PER_DAY
        return (TRADING_DAYS if calendar is Calendar.EQUITIES else 365) / days
    minutes = ns / NS_PER_MINUTE
    if calendar is Calendar.EQUITIES:
        return TRADING_DAYS * SESSION_MINUTES / minutes
    return 365 * 24 * 60 / minutes


# ------------------------------------------------------------------------------------- local time

# Offset changes are found per block of days: the zone's offset is sampled at every UTC midnight of
# the block and, where two neighbours differ, bisected to the second it changes (zones change offset
# on whole seconds, months apart; a change undone within one day would be missed, and no zone in the
# tz database has one).
_BLOCK_DAYS = 366
_SECONDS_PER_DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = np.iinfo(np.int64)


def utc_offsets(timestamps: np.ndarray, tz: str = EXCHANGE_TZ) -> np.ndarray:
    """The UTC offset (int64 ns, local minus UTC) of zone ``tz`` at each UTC timestamp (int64 ns).

    ``timestamps + utc_offsets(timestamps)`` is the local wall-clock time, the same nanoseconds as
    ``pd.DatetimeIndex(timestamps, tz="UTC").tz_convert(tz).tz_localize(None)``.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.size == 0:
        return np.zeros(ts.shape, dtype=np.int64)
    block_ns = _BLOCK_DAYS * NS_PER_DAY
    starts, offsets = _offset_table(tz, int(ts.min()) // block_ns, int(ts.max()) // block_ns)
    return offsets[np.searchsorted(starts, ts, side="right")]


def local_times(timestamps: np.ndarray, tz: str = EXCHANGE_TZ) -> np.ndarray:
    """Wall-clock times in zone ``tz`` (int64 ns since a naive epoch) of UTC timestamps (int64 ns)."""
    ts = np.asarray(timestamps, dtype=np.int64)
    return ts + utc_offsets(ts, tz)


def session_days(timestamps: np.ndarray, calendar: Calendar | str) -> np.ndarray:
    """An int64 day key per timestamp: the exchange-local date for equities, the UTC date otherwise.

    Used for daily risk limits: bars with the same key belong to the same trading day.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if Calendar(calendar) is Calendar.EQUITIES:
        return local_times(ts, EXCHANGE_TZ) // NS_PER_DAY
    return ts // NS_PER_DAY


@functools.lru_cache(maxsize=256)
def _offset_table(tz: str, first_block: int, last_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Offset changes of blocks ``first_block..last_block``: their times (ns, ascending) and the
    offsets (ns), one more than the times: ``offsets[i]`` holds from ``times[i - 1]`` on."""
    times: list[int] = []
    offsets = [_block_changes(tz, first_block)[0]]
    for block in range(first_block, last_block + 1):
        _, block_times, block_offsets = _block_changes(tz, block)
        for t, offset in zip(block_times, block_offsets, strict=True):
            t_ns = t * NS_PER_SECOND
            if t_ns > _INT64.max:  # no int64 timestamp reaches it
                break
            if t_ns <= _INT64.min:  # every int64 timestamp is past it
                offsets[0] = offset
                continue
            times.append(t_ns)
            offsets.append(offset)
    starts = np.array(times, dtype=np.int64)
    values = np.array(offsets, dtype=np.int64) * NS_PER_SECOND
    starts.setflags(write=False)
    values.setflags(write=False)
    return starts, values


@functools.lru_cache(maxsize=4096)
def _block_changes(tz: str, block: int) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Zone ``tz`` over one block of days, in seconds: the offset at the block's first second, and
    each change after it up to and including the block's end (its second and the new offset)."""
    zone = ZoneInfo(tz)
    start = block * _BLOCK_DAYS * _SECONDS_PER_DAY
    first = _offset_at(zone, start)
    times: list[int] = []
    offsets: list[int] = []
    before, before_offset = start, first
    for day in range(1, _BLOCK_DAYS + 1):
        end = start + day * _SECONDS_PER_DAY
        end_offset = _offset_at(zone, end)
        while before_offset != end_offset:  # a change in (before, end]: bisect to its second
            lo, hi = before, end
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset_at(zone, mid) == before_offset:
                    lo = mid
                else:
                    hi = mid
            before, before_offset = hi, _offset_at(zone, hi)
            times.append(before)
            offsets.append(before_offset)
        before, before_offset = end, end_offset
    return first, tuple(times), tuple(offsets)


def _offset_at(zone: ZoneInfo, second: int) -> int:
    """The zone's UTC offset (whole seconds) at a UTC time given in seconds since the epoch."""
    try:
        offset = datetime.fromtimestamp(second, zone).utcoffset()
    except (OverflowError, OSError):  # a platform whose C time functions stop short of the year
        offset = (_EPOCH + timedelta(seconds=second)).astimezone(zone).utcoffset()
    assert offset is not None
    return offset.days * _SECONDS_PER_DAY + offset.seconds
