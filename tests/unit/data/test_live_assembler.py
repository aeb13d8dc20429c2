"""Pure parts of the Alpaca path: the live bar assembler, the back-off policy, the bar cache, keys."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from titan_ray.data.alpaca import Backoff, Credentials, timeframe
from titan_ray.data.cache import BarCache, merge_spans
from titan_ray.data.live import BarAssembler
from titan_ray.data.market import DataError

M = 60 * 10**9
T0 = pd.Timestamp("2024-03-04 14:30", tz="UTC").value


def test_a_bar_time_is_complete_when_every_symbol_has_sent_it():
    a = BarAssembler(["A", "B"], M, grace_s=5)
    assert a.add("A", T0, (1, 2, 0.5, 1.5, 10), now=0.0) == []
    [(t, row)] = a.add("B", T0, (3, 4, 2.5, 3.5, 20), now=0.1)
    assert t == T0 and row[:, 0].tolist() == [1, 2, 0.5, 1.5, 10] and row[:, 1].tolist() == [3, 4, 2.5, 3.5, 20]
    assert a.add("A", T0, (9, 9, 9, 9, 9), now=0.2) == [] and a.late == 1  # already handed out
    assert a.add("X", T0 + M, (1, 1, 1, 1, 1), now=0.3) == []  # not a symbol of the arena


def test_a_silent_symbol_waits_for_the_grace_period_or_the_next_bar_time():
    a = BarAssembler(["A", "B"], M, grace_s=5)
    a.add("A", T0, (1, 1, 1, 1, 1), now=100.0)
    assert a.poll(104.9) == []
    [(t, row)] = a.poll(105.0)
    assert t == T0 and math.isnan(row[3, 1]) and row[4, 1] == 0
    a.add("A", T0 + M, (2, 2, 2, 2, 2), now=106.0)
    [(t, _)] = a.add("B", T0 + 2 * M, (3, 3, 3, 3, 3), now=106.5)  # a later bar time closes the open one
    assert t == T0 + M


def test_minute_bars_aggregate_into_longer_bars_and_duplicates_count_once():
    a = BarAssembler(["A"], 5 * M, grace_s=60)
    out = []
    for i, (o, h, low, c, v) in enumerate([(10, 11, 9, 10.5, 1), (10.5, 12, 10, 11, 2), (11, 11.5, 8, 9, 3),
                                           (9, 9.5, 8.5, 9.2, 4), (9.2, 9.9, 9.1, 9.8, 5)]):
        out += a.add("A", T0 + i * M, (o, h, low, c, v), now=float(i))
        if i == 1:
            out += a.add("A", T0 + i * M, (o, h, low, c, v), now=float(i))  # the backfill repeats a minute
    [(t, row)] = out
    assert t == T0 and row[:, 0].tolist() == [10, 12, 8, 9.8, 15]


def test_back_off_honours_the_server_then_doubles_up_to_the_cap():
    b = Backoff(max_retries=5, base_s=0.5, max_s=4.0, now=lambda: 1000.0)
    assert [b.delay(i, {}) for i in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert b.delay(0, {"Retry-After": "3"}) == 3.0
    assert b.delay(0, {"X-RateLimit-Reset": "1002.5"}) == 2.5
    assert b.delay(0, {"Retry-After": "120"}) == 4.0  # capped
    assert b.delay(0, {"X-RateLimit-Reset": "990"}) == 0.0  # already reset


def test_bar_sizes_alpaca_serves():
    assert timeframe(pd.Timedelta("15min")).value == "15Min" and timeframe(pd.Timedelta("2h")).value == "2Hour"
    assert timeframe(pd.Timedelta("1D")).value == "1Day"
    with pytest.raises(DataError, match="1-59 minutes"):
        timeframe(pd.Timedelta("90s"))


def test_the_cache_remembers_what_it_holds_and_merges_downloads(tmp_path):
    cache = BarCache(tmp_path, "alpaca-stocks-iex-all-1Min")
    frame = pd.DataFrame({"timestamp": [10, 20, 30], "open": [1.0, 2, 3], "high": [1.0, 2, 3], "low": [1.0, 2, 3],
                          "close": [1.0, 2, 3], "volume": [5.0, 5, 5]})
    cache.store("BRK/B", frame, 0, 35)
    assert cache.covers("BRK/B", 5, 35) and not cache.covers("BRK/B", 5, 36)
    assert cache.missing("BRK/B", -5, 50) == [(-5, -1), (36, 50)]
    newer = frame.assign(timestamp=[30, 40, 50], close=[3.5, 4, 5])
    cache.store("BRK/B", newer, 30, 60)  # a fresh download wins where both hold a bar
    got = cache.load("BRK/B")
    assert got["timestamp"].tolist() == [10, 20, 30, 40, 50] and got["close"].tolist() == [1, 2, 3.5, 4, 5]
    assert cache.spans("BRK/B") == [(0, 60)] and merge_spans([(0, 5), (7, 9), (6, 6)]) == [(0, 9)]
    assert (tmp_path / "alpaca-stocks-iex-all-1Min" / "BRK-B.parquet").exists()
    assert cache.load("NONE").empty and np.all(cache.load("BRK/B", 20, 40)["timestamp"] == [20, 30, 40])


def test_credentials_never_show_a_key():
    c = Credentials("PKABCDEF123", "very-secret")
    assert "PKABCDEF123" not in repr(c) and "very-secret" not in f"{c}" and "APCA_API_KEY_ID" in repr(c)
    assert c.redact("key PKABCDEF123 / very-secret") == "key *** / ***"
