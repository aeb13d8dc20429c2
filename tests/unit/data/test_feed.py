"""The market feed: warm-up first, chunks in order, and live-like pacing on an injected clock."""

from __future__ import annotations

from titan_ray.config import DataConfig, ReplayConfig
from titan_ray.data.actor import MarketFeed
from titan_ray.data.synthetic import SyntheticProvider


def _market(bars=100):
    return SyntheticProvider(DataConfig(n_symbols=2, bars=bars, frequency="1min", calendar="continuous"), 1).load()


def test_chunks_cover_warmup_then_trading_without_straddling():
    feed = MarketFeed(_market(), ReplayConfig(chunk_size=30, warmup_bars=45))
    spans = []
    while (chunk := feed.next_chunk()) is not None:
        spans.append((chunk.start, chunk.stop))
    assert spans == [(0, 30), (30, 45), (45, 75), (75, 100)]
    assert feed.n_warmup_chunks == 2


def test_pace_releases_each_bar_when_it_is_due():
    now = [1000.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    feed = MarketFeed(_market(10), ReplayConfig(chunk_size=1, pace={"speed": 60}), clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        feed.next_chunk()
    # one-minute bars at 60x: one bar a second after the first
    assert [round(s, 9) for s in slept] == [1.0, 1.0, 1.0, 1.0]
