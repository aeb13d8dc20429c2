"""Historical Alpaca bars through alpaca-py's real client against a loopback fake of Alpaca's REST API.

Paging over next_page_token, a rate-limited answer and its back-off, the Parquet cache that makes
a rerun need no network, the fallback when Alpaca is not configured or not reachable, refused
keys, crypto bars, and off-session bars.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from fakes.alpaca_server import FakeAlpaca, random_walk_bars

from titan_ray.config import DataConfig
from titan_ray.data.alpaca import AlpacaAuthError, AlpacaError, AlpacaProvider, Credentials, endpoints
from titan_ray.data.market import DataError
from titan_ray.data.providers import make_provider

SYMBOLS = ["AAPL", "MSFT"]
BARS = random_walk_bars(SYMBOLS, "2024-03-04 14:25", 130, seed=7)  # 5 minutes before the open


def _config(tmp_path, **data) -> DataConfig:
    base = {"provider": "alpaca", "symbols": SYMBOLS, "frequency": "1min", "start": "2024-03-04",
            "end": "2024-03-04", "cache": {"path": str(tmp_path / "cache")}}
    return DataConfig.model_validate(base | data)


@pytest.fixture
def fake():
    with FakeAlpaca(BARS, page_size=40) as server:
        yield server


def _expected(symbol: str) -> pd.DataFrame:
    f = BARS[symbol]
    open_ns = pd.Timestamp("2024-03-04 14:30", tz="UTC").value
    return f[f["timestamp"] >= open_ns].reset_index(drop=True)


def test_pages_a_rate_limit_and_the_cache(fake, tmp_path):
    fake.rate_limit(1, retry_after="2")  # the first page is answered 429, Retry-After 2 s
    slept = []
    provider = AlpacaProvider(_config(tmp_path), environ=fake.environ(), sleep=slept.append)
    market = provider.load()
    # 2 x 130 bars at 40 a page: 7 pages, plus the one rate-limited request retried with the same token
    requests = fake.data_requests()
    assert [r["status"] for r in requests] == [429] + [200] * 7
    assert requests[0]["query"] == requests[1]["query"]  # the retry asks for the same page again
    tokens = [r["query"].get("page_token") for r in requests[1:]]
    assert tokens[0] is None and len(set(tokens[1:])) == 6
    assert requests[1]["query"]["feed"] == "iex" and requests[1]["query"]["adjustment"] == "all"
    assert slept == [2.0] and provider.retries == [(429, 2.0)]
    # session rule (default drop for alpaca stocks): the 5 pre-open minutes are gone
    assert len(market.bars) == 125 and "5 off-session timestamps dropped" in market.source
    for j, s in enumerate(SYMBOLS):
        exp = _expected(s)
        np.testing.assert_array_equal(market.bars.timestamps, exp["timestamp"].to_numpy())
        np.testing.assert_array_equal(market.bars.close[:, j], exp["close"].to_numpy())
        np.testing.assert_array_equal(market.bars.volume[:, j], exp["volume"].to_numpy())

    # a rerun needs no network: the server is gone, the cache answers
    fake.stop()
    again = AlpacaProvider(_config(tmp_path), environ={}).load()
    assert "no network" in again.source
    np.testing.assert_array_equal(again.bars.close, market.bars.close)
    offline = AlpacaProvider(_config(tmp_path, cache={"path": str(tmp_path / "cache"), "offline": True}),
                             environ={}).load()
    np.testing.assert_array_equal(offline.bars.open, market.bars.open)
    with pytest.raises(DataError, match="data.cache.offline is set"):
        AlpacaProvider(_config(tmp_path, end="2024-03-05", cache={"path": str(tmp_path / "cache"), "offline": True}),
                       environ={}).load()


def test_back_off_doubles_without_a_retry_after_and_gives_up_with_a_clear_error(fake, tmp_path):
    fake.fail(3)  # three 503 answers in a row
    slept = []
    cfg = _config(tmp_path, cache={"enabled": False}, alpaca={"backoff_s": 0.5, "max_retries": 5})
    AlpacaProvider(cfg, environ=fake.environ(), sleep=slept.append).load()
    assert slept == [0.5, 1.0, 2.0]
    fake.rate_limit(10)
    slept.clear()
    cfg = _config(tmp_path, cache={"enabled": False}, fallback={"provider": "none"},
                  alpaca={"backoff_s": 0.5, "max_retries": 2, "max_backoff_s": 0.75})
    with pytest.raises(AlpacaError, match=r"HTTP 429 .* 2 times in a row"):
        AlpacaProvider(cfg, environ=fake.environ(), sleep=slept.append).load()
    assert len(slept) == 2 and all(0 <= s <= 1.1 for s in slept)  # X-RateLimit-Reset, capped


def test_missing_or_wrong_keys_name_the_variables_and_never_print_a_key(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    no_fallback = _config(tmp_path, fallback={"provider": "none"})
    with pytest.raises(AlpacaAuthError) as missing:
        AlpacaProvider(no_fallback, environ=fake.environ(keys=False)).load()
    assert "APCA_API_KEY_ID and APCA_API_SECRET_KEY are not set" in str(missing.value)
    env = fake.environ() | {"APCA_API_SECRET_KEY": "not-the-secret-" + fake.secret_key[::-1]}
    with pytest.raises(AlpacaAuthError) as wrong:
        AlpacaProvider(_config(tmp_path), environ=env).load()  # wrong keys never hide behind the fallback
    text = str(wrong.value)
    assert "HTTP 401" in text and "APCA_API_KEY_ID" in text and "APCA_API_SECRET_KEY" in text
    only_key = {"APCA_API_KEY_ID": fake.key_id}
    with pytest.raises(AlpacaAuthError, match="APCA_API_SECRET_KEY is not set"):
        Credentials.from_env(only_key)
    creds = Credentials.from_env(fake.environ())
    for shown in (repr(creds), str(creds), text, str(missing.value), caplog.text):
        assert fake.key_id not in shown and fake.secret_key not in shown and env["APCA_API_SECRET_KEY"] not in shown


def test_fallback_to_the_cache_and_to_files_says_which_source_is_in_use(fake, tmp_path, caplog):
    AlpacaProvider(_config(tmp_path), environ=fake.environ()).load()  # fills the cache
    caplog.set_level(logging.WARNING)
    market = AlpacaProvider(_config(tmp_path, end="2024-03-05"), environ=fake.environ(keys=False)).load()
    assert market.source.startswith("cache ") and "FALLBACK: Alpaca is not configured" in market.source
    assert "APCA_API_KEY_ID" in market.source and "using the bar cache" in caplog.text
    assert len(market.bars) == 125

    folder = tmp_path / "files"
    folder.mkdir()
    for s in SYMBOLS:
        f = BARS[s].copy()
        f["timestamp"] = pd.to_datetime(f["timestamp"], utc=True)
        f.to_csv(folder / f"{s.lower()}.csv", index=False)
    unreachable = {"APCA_API_DATA_URL": "http://127.0.0.1:9", "APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"}
    cfg = _config(tmp_path, cache={"enabled": False}, fallback={"provider": "csv", "path": str(folder)},
                  alpaca={"max_retries": 1, "backoff_s": 0.01})
    from_files = make_provider(cfg, 0, environ=unreachable).load()
    assert from_files.source.startswith(f"csv:{folder} (FALLBACK: cannot reach Alpaca")
    np.testing.assert_allclose(from_files.bars.close[:, 1], _expected("MSFT")["close"].to_numpy())
    with pytest.raises(AlpacaError, match="has no bars of AAPL, MSFT"):
        AlpacaProvider(_config(tmp_path, start="2023-01-03", end="2023-01-03"), environ={}).load()


def test_crypto_bars_and_feed_errors(fake, tmp_path):
    btc = random_walk_bars(["BTC/USD"], "2024-03-09 23:50", 30, seed=2)  # a Saturday night: crypto trades 24/7
    with FakeAlpaca(btc, page_size=7) as server:
        cfg = _config(tmp_path, symbols=["BTC/USD"], start="2024-03-09", end="2024-03-10", calendar="continuous",
                      alpaca={"asset_class": "crypto"})
        market = AlpacaProvider(cfg, environ=server.environ(keys=False)).load()  # crypto needs no keys
        assert market.bars.symbols == ("BTC/USD",) and len(market.bars) == 30
        assert {r["path"] for r in server.data_requests()} == {"/v1beta3/crypto/us/bars"}
        np.testing.assert_array_equal(market.bars.close[:, 0], btc["BTC/USD"]["close"].to_numpy())
    with pytest.raises(AlpacaError, match="set data.alpaca.feed: iex"):
        AlpacaProvider(_config(tmp_path, cache={"enabled": False}, alpaca={"feed": "sip"}),
                       environ=fake.environ()).load()
    five = AlpacaProvider(_config(tmp_path, frequency="5min", session={"outside": "reject"}),
                          environ=fake.environ()).load()
    assert len(five.bars) == 25 and five.rejected_counts() == {"OUTSIDE_SESSION": 2}
    first = BARS["AAPL"][(BARS["AAPL"]["timestamp"] >= five.bars.timestamps[0])].head(5)
    assert five.bars.high[0, 0] == first["high"].max() and five.bars.volume[0, 0] == first["volume"].sum()
    with pytest.raises(DataError, match="data.start is not set"):
        AlpacaProvider(_config(tmp_path, start=None), environ=fake.environ()).load()


def test_endpoints_come_from_the_config_then_the_environment():
    cfg = DataConfig(provider="alpaca", symbols=["A"], alpaca={"endpoints": {"data": "http://proxy:1/"}}).alpaca
    got = endpoints(cfg, {"APCA_API_DATA_URL": "http://env:2", "APCA_API_STREAM_URL": "ws://env:3/v2/iex"})
    assert got == {"data": "http://proxy:1", "stream": "ws://env:3/v2/iex", "trading": None, "trading_stream": None}


def test_the_shipped_alpaca_config_validates_in_replay_and_live_form():
    from pathlib import Path

    import yaml

    from titan_ray.config import parse_config

    path = Path(__file__).resolve().parents[2] / "titan_ray" / "configs" / "alpaca.yaml"
    text = path.read_text()
    replay = parse_config(yaml.safe_load(text))
    assert replay.data.provider == "alpaca" and replay.data.start == "2024-01-02" and replay.live is None
    head, tail = text.split("# live:")
    live_text = head + "live:" + tail.replace("\n#   ", "\n  ")
    live = parse_config(yaml.safe_load(live_text))
    assert live.live is not None and live.live.paper is not None and live.live.paper.model == "sma"
