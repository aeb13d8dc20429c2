"""Bar frequencies, trading calendars and annualisation.

Two calendars: ``equities`` (US equity sessions, 09:30-16:00 America/New_York on weekdays, 6.5 h a
day, 252 days a year) and ``continuous`` (24/7, 365 days a year). Annualisation follows
empyrical's conventions: daily bars 252 periods a year; intraday bars on ``equities`` 252 x bars
per 6.5 h session; ``continuous`` 365 x bars per day.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import pandas as pd

NS_PER_MINUTE = 60 * 1_000_000_000
NS_PER_DAY = 24 * 60 * NS_PER_MINUTE
SESSION_MINUTES = 390  # 6.5 h
TRADING_DAYS = 252
EXCHANGE_TZ = "America/New_York"


class Calendar(str, Enum):
    EQUITIES = "equities"
    CONTINUOUS = "continuous"


def parse_frequency(freq: str) -> pd.Timedelta:
    """Parse a bar size such as ``15min``, ``1h``, ``1d`` or ``D`` into a Timedelta.

    Raises ValueError naming the accepted forms.
    """
    text = str(freq).strip()
    try:
        td = pd.Timedelta(pd.tseries.frequencies.to_offset(text))
    except (ValueError, TypeError):
        try:
            td = pd.Timedelta(text)
        except (ValueError, TypeError):
            raise ValueError(
                f"bar frequency {freq!r} is not understood; use a pandas offset such as "
                "'1min', '15min', '1h' or '1D'"
            ) from None
    if td <= pd.Timedelta(0):
        raise ValueError(f"bar frequency {freq!r} must be positive")
    return td


def format_frequency(td: pd.Timedelta) -> str:
    minutes = td / pd.Timedelta(minutes=1)
    if td >= pd.Timedelta(days=1) and td % pd.Timedelta(days=1) == pd.Timedelta(0):
        return f"{int(td / pd.Timedelta(days=1))}D"
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)}h"
    if minutes == int(minutes):
        return f"{int(minutes)}min"
    return f"{int(td / pd.Timedelta(seconds=1))}s"


def infer_frequency(timestamps: np.ndarray) -> pd.Timedelta:
    """The typical spacing of bars: the smallest gap that covers at least half of all gaps.

    Overnight and weekend gaps do not distort it, because they are a minority of gaps for
    intraday bars and daily bars are one day apart on most days.
    """
    if len(timestamps) < 2:
        raise ValueError("cannot infer a bar frequency from fewer than 2 timestamps; set data.frequency")
    gaps = np.diff(np.asarray(timestamps, dtype=np.int64))
    gaps = gaps[gaps > 0]
    median = int(np.median(gaps))
    if median >= NS_PER_DAY // 2:
        return pd.Timedelta(days=max(1, round(median / NS_PER_DAY)))
    return pd.Timedelta(median, unit="ns")


def periods_per_year(bar: pd.Timedelta, calendar: Calendar | str) -> float:
    calendar = Calendar(calendar)
    if bar >= pd.Timedelta(days=1):
        days = bar / pd.Timedelta(days=1)
        return (TRADING_DAYS if calendar is Calendar.EQUITIES else 365) / days
    minutes = bar / pd.Timedelta(minutes=1)
    if calendar is Calendar.EQUITIES:
        return TRADING_DAYS * SESSION_MINUTES / minutes
    return 365 * 24 * 60 / minutes


def session_days(timestamps: np.ndarray, calendar: Calendar | str) -> np.ndarray:
    """An int64 day key per timestamp: the exchange-local date for equities, the UTC date otherwise.

    Used for daily risk limits: bars with the same key belong to the same trading day.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if Calendar(calendar) is Calendar.EQUITIES:
        local = pd.DatetimeIndex(ts.astype("datetime64[ns]"), tz="UTC").tz_convert(EXCHANGE_TZ)
        return (local.tz_localize(None).normalize().asi8 // NS_PER_DAY).astype(np.int64)
    return ts // NS_PER_DAY
