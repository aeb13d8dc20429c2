"""The bad-bar rules of file ingestion, each a vectorised check that names the row it rejects.

``check_rows`` applies the per-row rules (unparseable time, missing value, non-positive price,
high below low, open/close outside the range, negative volume) and ``check_order`` the rules that
need the rows before (duplicate and out-of-order timestamps). Each rejected row becomes
``(row index, BadBarRule, detail)``; ``FIX`` says, per rule, how to repair the input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from titan_ray.data.market import BadBarRule, DataError
from titan_ray.domain.bars import FIELDS

NAT = np.iinfo(np.int64).min  # what pandas stores for NaT
_Found = list[tuple[int, BadBarRule, str]]  # (0-based row, rule, detail) per rejected row

FIX = {
    BadBarRule.UNPARSEABLE_TIMESTAMP: "Write timestamps like 2024-01-02 09:30:00, one format per file.",
    BadBarRule.MISSING_VALUE: "Fill the gaps or strip those lines, e.g. with `df.dropna()`.",
    BadBarRule.NON_POSITIVE_PRICE: "Prices must be > 0; strip those lines, e.g. with "
    "`df[(df[['open', 'high', 'low', 'close']] > 0).all(axis=1)]`.",
    BadBarRule.HIGH_BELOW_LOW: "High must be >= low; check that the high and low columns are not swapped.",
    BadBarRule.OPEN_CLOSE_OUTSIDE_RANGE: "Open and close must lie within [low, high]; check the columns.",
    BadBarRule.NEGATIVE_VOLUME: "Volume must be >= 0; strip those lines, e.g. `df[df['volume'] >= 0]`.",
    BadBarRule.DUPLICATE_TIMESTAMP: "Keep one row per timestamp, e.g. `df.drop_duplicates('timestamp')`.",
    BadBarRule.OUT_OF_ORDER_TIMESTAMP: "Sort the rows oldest first, e.g. `df.sort_values('timestamp')`.",
    BadBarRule.OUTSIDE_SESSION: "Set data.session.outside: keep (or drop), or data.calendar: continuous.",
}


def empty(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_string_dtype(col.dtype) or col.dtype == object:
        return (col.isna() | (col.astype(str).str.strip() == "")).to_numpy()
    return col.isna().to_numpy()


def check_rows(
    times: pd.Series,
    cells: list[pd.Series],
    ns: np.ndarray,
    unplaced: np.ndarray,
    values: np.ndarray,
    pending: np.ndarray,
    tz: str,
) -> _Found:
    """Reject rows that are bad on their own, first failing rule first; clears them in ``pending``.

    The checks run vectorised over all rows; details are written only for the rows they reject.
    """
    found: _Found = []

    def reject(mask: np.ndarray, rule: BadBarRule, detail: Callable[[int], str]) -> None:
        hit = np.flatnonzero(pending & mask)
        found.extend((int(i), rule, detail(int(i))) for i in hit)
        pending[hit] = False

    def time_detail(i: int) -> str:
        if empty(times.iloc[[i]])[0]:
            return "timestamp is empty"
        if unplaced[i]:
            return (
                f"timestamp {_stamp(times, i)} does not exist or is ambiguous in {tz} "
                "(a daylight-saving change); write it with a UTC offset"
            )
        return f"timestamp {_stamp(times, i)} is not a date or time"

    def missing_detail(i: int) -> str:
        j = int(np.argmax(~np.isfinite(values[i])))
        if empty(cells[j].iloc[[i]])[0]:
            return f"{FIELDS[j]} is empty"
        return f"{FIELDS[j]}={str(cells[j].iloc[i]).strip()!r} is not a finite number"

    o, h, l, c, v = values.T
    prices = values[:, :4]
    open_out = (o < l) | (o > h)

    def price_detail(i: int) -> str:
        j = int(np.argmax(prices[i] <= 0))
        return f"{FIELDS[j]}={prices[i, j]:.10g} must be > 0"

    def range_detail(i: int) -> str:
        name, x = ("open", o[i]) if open_out[i] else ("close", c[i])
        return f"{name}={x:.10g} outside [low={l[i]:.10g}, high={h[i]:.10g}]"

    reject(ns == NAT, BadBarRule.UNPARSEABLE_TIMESTAMP, time_detail)
    reject(~np.isfinite(values).all(axis=1), BadBarRule.MISSING_VALUE, missing_detail)
    reject((prices <= 0).any(axis=1), BadBarRule.NON_POSITIVE_PRICE, price_detail)
    reject(h < l, BadBarRule.HIGH_BELOW_LOW, lambda i: f"high={h[i]:.10g} < low={l[i]:.10g}")
    reject(open_out | (c < l) | (c > h), BadBarRule.OPEN_CLOSE_OUTSIDE_RANGE, range_detail)
    reject(v < 0, BadBarRule.NEGATIVE_VOLUME, lambda i: f"volume={v[i]:.10g} must be >= 0")
    return found


def check_order(
    path: Path, times: pd.Series, ns: np.ndarray, pending: np.ndarray
) -> tuple[np.ndarray, _Found]:
    """Rows kept (0-based) and the rows rejected for repeating or going back in time.

    A row is kept when it is later than every row kept before it. Only kept rows can raise the
    running maximum, so that maximum is a plain cumulative max over the rows still pending.
    """
    idx = np.flatnonzero(pending)
    t = ns[idx]
    ok = t > np.concatenate([[NAT], np.maximum.accumulate(t)[:-1]])
    kept_t, kept_rows = t[ok], idx[ok]
    late = np.flatnonzero(~ok)
    pos = np.searchsorted(kept_t, t[late])
    dup = (pos < len(kept_t)) & (kept_t[np.minimum(pos, len(kept_t) - 1)] == t[late])
    last_kept = idx[np.maximum.accumulate(np.where(ok, np.arange(len(t)), 0))]  # row kept last, so far
    n_back = int((~dup).sum())
    if n_back * 2 > len(t):
        # Most rows going back in time is a file sorted newest first (or a typo'd year early on),
        # not a few bad rows: refuse it rather than keep a handful of bars.
        b = late[~dup][0]
        row, prev = int(idx[b]), int(last_kept[b - 1])
        raise DataError(
            f"{path}: {n_back} of {len(t)} rows have a timestamp earlier than a row above them (first: "
            f"row {row + 1}, {_stamp(times, row)}, after row {prev + 1}, {_stamp(times, prev)}); the file "
            "looks sorted newest first or shuffled. Bars are never reordered silently: sort the file "
            f"oldest first, e.g. with `df.sort_values('timestamp')`, or fix row {prev + 1} if it is a typo"
        )
    found: _Found = []
    for b, p, is_dup in zip(late, pos, dup, strict=True):
        row = int(idx[b])
        if is_dup:
            detail = f"timestamp {_stamp(times, row)} repeats row {kept_rows[p] + 1}"
            found.append((row, BadBarRule.DUPLICATE_TIMESTAMP, detail))
        else:
            prev = int(last_kept[b - 1])
            detail = (
                f"timestamp {_stamp(times, row)} is earlier than row {prev + 1}'s "
                f"{_stamp(times, prev)}; rows must run oldest first"
            )
            found.append((row, BadBarRule.OUT_OF_ORDER_TIMESTAMP, detail))
    return kept_rows, found


def _stamp(times: pd.Series, i: int) -> str:
    return repr(str(times.iloc[i]).strip())
