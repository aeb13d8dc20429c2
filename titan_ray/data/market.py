"""What every data provider returns: ``MarketData``, the bars ingestion rejected, and ``DataError``.

A provider's ``load()`` returns ``MarketData``: the whole history as one aligned ``BarBatch``
(T timestamps x S symbols, NaN where a symbol has no bar), the bar frequency, and every bar that
ingestion rejected with its reason. The market-data actor slices it into chunks for replay. The
providers (``synthetic``, ``files``, ``alpaca``) import these types; ``titan_ray.data.providers``
picks one by name.

Rejected bars never stop a run while clean data remains: each is recorded (file, row, symbol,
rule, detail), counted in ``run.json`` and skipped. ``DataError`` is raised only when nothing
usable is left, or the input cannot be read at all, with a message that says how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import pandas as pd

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import Calendar


class DataError(ValueError):
    """Market data that cannot be used; the message names the source and the fix."""


class BadBarRule(str, Enum):
    UNPARSEABLE_TIMESTAMP = "UNPARSEABLE_TIMESTAMP"
    MISSING_VALUE = "MISSING_VALUE"  # NaN / empty / non-numeric price or volume
    NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"
    HIGH_BELOW_LOW = "HIGH_BELOW_LOW"
    OPEN_CLOSE_OUTSIDE_RANGE = "OPEN_CLOSE_OUTSIDE_RANGE"  # open or close not within [low, high]
    NEGATIVE_VOLUME = "NEGATIVE_VOLUME"
    DUPLICATE_TIMESTAMP = "DUPLICATE_TIMESTAMP"
    OUT_OF_ORDER_TIMESTAMP = "OUT_OF_ORDER_TIMESTAMP"
    OUTSIDE_SESSION = "OUTSIDE_SESSION"  # data.session.outside: reject, bar outside the regular session


@dataclass(frozen=True, slots=True)
class RejectedBar:
    source: str  # file path, or "synthetic"
    row: int  # 1-based data row in the source (header not counted)
    symbol: str
    rule: BadBarRule
    detail: str

    def __str__(self) -> str:
        return f"{self.source} row {self.row} ({self.symbol}): {self.rule.value}: {self.detail}"


@dataclass(frozen=True)
class MarketData:
    bars: BarBatch
    frequency: pd.Timedelta
    calendar: Calendar
    source: str  # human-readable description of where the bars came from
    rejected: tuple[RejectedBar, ...] = field(default=())

    def rejected_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejected:
            counts[r.rule.value] = counts.get(r.rule.value, 0) + 1
        return counts


class DataProvider(Protocol):
    def load(self) -> MarketData: ...
