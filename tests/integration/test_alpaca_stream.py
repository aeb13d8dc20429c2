"""The live bar stream: alpaca-py's real StockDataStream against the loopback fake, no Ray needed.

A dropped socket is reconnected by alpaca-py and the bars missed meanwhile are backfilled over
REST, so the feed hands out every bar time once, in order; refused keys stop it with an error that
names the variables.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from fakes.alpaca_server import FakeAlpaca, random_walk_bars

from titan_ray.config import DataConfig, LiveConfig, ReplayConfig
from titan_ray.data.alpaca import AlpacaAuthError
from titan_ray.data.live import alpaca_live_feed

SYMBOLS = ["AAPL", "MSFT"]


def _data(**extra) -> DataConfig:
    return DataConfig(provider="alpaca", symbols=SYMBOLS, frequency="1min", start="2024-03-04",
                      cache={"enabled": False}, **extra)


def _take(feed, first: int, n: int, timeout: float = 30) -> list:
    chunks, k, deadline = [], first, time.monotonic() + timeout
    while len(chunks) < n:
        assert time.monotonic() < deadline, f"only {len(chunks)} of {n} bars arrived"
        ready = feed.wait_chunk(k, 0.5)
        assert ready is not None
        if ready:
            chunks.append(feed.next_chunk(k))
            k += 1
    return chunks


def test_a_dropped_stream_reconnects_and_the_missed_bars_are_backfilled(caplog):
    caplog.set_level(logging.INFO)
    bars = random_walk_bars(SYMBOLS, "2024-03-04 14:30", 60, seed=4)
    with FakeAlpaca(bars, page_size=25) as fake:
        fake.set_now(19)
        feed = alpaca_live_feed(_data(), ReplayConfig(chunk_size=8, warmup_bars=20), LiveConfig(bar_grace_s=5),
                                environ=fake.environ())
        assert feed.n_warmup_chunks == 3 and feed.info()["n_timestamps"] == 20

        def market():
            fake.wait_subscribed(1)
            for _ in range(3):
                fake.advance()
                time.sleep(0.05)
            fake.drop_streams()
            fake.advance(2)  # nobody is connected: these two bar times are lost on the stream
            fake.wait_subscribed(2)
            for _ in range(3):
                fake.advance()
                time.sleep(0.05)

        thread = threading.Thread(target=market, daemon=True)
        thread.start()
        try:
            warm = [feed.next_chunk(k) for k in range(3)]
            live = _take(feed, 3, 8)
        finally:
            feed.close()
            thread.join(10)
        assert len(fake.connections) == 2  # alpaca-py reconnected on its own
    assert [len(c) for c in warm] == [8, 8, 4] and [c.start for c in live] == list(range(20, 28))
    for c in live:  # every bar time once, in order, with the market's own numbers
        row = c.start
        for j, s in enumerate(SYMBOLS):
            exp = bars[s].iloc[row]
            assert c.timestamps[0] == exp["timestamp"] and c.close[0, j] == exp["close"]
            assert c.high[0, j] == exp["high"] and c.volume[0, j] == exp["volume"]
    info = feed.info()
    assert info["reconnects"] == 1 and info["backfilled_bars"] >= 4 and info["n_timestamps"] == 28
    assert "data websocket error, restarting connection" in caplog.text
    with pytest.raises(ValueError, match="no look-ahead"):
        feed.history(0, 29)
    np.testing.assert_array_equal(feed.history(0, 28).close[:, 0], bars["AAPL"]["close"].to_numpy()[:28])


def test_refused_or_missing_keys_stop_the_stream_with_the_variables_named(caplog):
    caplog.set_level(logging.DEBUG)
    bars = random_walk_bars(SYMBOLS, "2024-03-04 14:30", 10)
    with FakeAlpaca(bars) as fake:
        env = fake.environ() | {"APCA_API_KEY_ID": "PKWRONGWRONGWRONG01"}
        feed = alpaca_live_feed(_data(), ReplayConfig(chunk_size=1), LiveConfig(), environ=env)
        try:
            with pytest.raises(AlpacaAuthError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY") as err:
                for _ in range(40):
                    feed.wait_chunk(0, 0.5)
        finally:
            feed.close()
        assert "refused the API keys" in str(err.value) and fake.connections == []
        with pytest.raises(AlpacaAuthError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY are not set"):
            alpaca_live_feed(_data(), ReplayConfig(chunk_size=1), LiveConfig(), environ=fake.environ(keys=False))
    for secret in ("PKWRONGWRONGWRONG01", fake.secret_key):
        assert secret not in caplog.text and secret not in str(err.value)
