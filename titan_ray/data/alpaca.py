"""Alpaca market data through alpaca-py: historical bars (stocks, crypto) and a live bar stream.

The parts, and how they connect:

- ``Credentials.from_env``: the API key pair, read only from APCA_API_KEY_ID and
  APCA_API_SECRET_KEY. A missing variable is an ``AlpacaAuthError`` that names it; a key is never
  logged, printed, or written to results (``repr`` shows neither).
- ``endpoints``: where alpaca-py connects. ``data.alpaca.endpoints`` wins, then the environment
  (APCA_API_DATA_URL, APCA_API_STREAM_URL, APCA_API_BASE_URL, APCA_API_TRADING_STREAM_URL), then
  Alpaca's own URLs. Tests point alpaca-py's real clients at a loopback fake this way.
- ``historical_client``: alpaca-py's ``StockHistoricalDataClient`` / ``CryptoHistoricalDataClient``
  with our retry policy. alpaca-py pages through ``next_page_token`` itself; every page request
  that is rate-limited (429) or fails on the server (5xx, connection) is retried after
  ``Retry-After`` (or ``X-RateLimit-Reset``) when the server says, else after an exponential
  back-off from ``backoff_s`` up to ``max_backoff_s``, at most ``max_retries`` times. HTTP errors
  become ``AlpacaAuthError`` (401/403: keys refused) or ``AlpacaError`` with the fix.
- ``AlpacaProvider.load``: the window ``data.start``..``data.end`` for ``data.symbols``, first from
  the Parquet cache (``data.cache``), the rest from Alpaca, saved back to the cache. When Alpaca is
  not configured (no keys) or not reachable, ``data.fallback`` decides: the cache's bars, local
  files, or an error; the source in use is logged and recorded in ``run.json`` (``data_source``).
- ``AlpacaLiveSource``: alpaca-py's ``StockDataStream`` / ``CryptoDataStream`` in a background
  thread. alpaca-py reconnects a dropped socket itself (exponential back-off); each connection is
  reported, so the live feed (``titan_ray.data.live``) backfills the bars missed while it was down
  from the REST API. A refused key stops the stream with an error naming the variables.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np
import pandas as pd

from titan_ray.config import AlpacaConfig, DataConfig
from titan_ray.data.cache import BarCache, default_cache_root
from titan_ray.data.files import FileProvider, time_bounds
from titan_ray.data.market import BadBarRule, DataError, MarketData, RejectedBar
from titan_ray.data.market_calendar import UsEquityCalendar, filter_session
from titan_ray.domain.bars import FIELDS, BarBatch
from titan_ray.domain.calendar import Calendar, format_frequency, parse_frequency

log = logging.getLogger("titan_ray.data.alpaca")

KEY_ENV = "APCA_API_KEY_ID"
SECRET_ENV = "APCA_API_SECRET_KEY"
ENDPOINT_ENV = {
    "data": "APCA_API_DATA_URL",
    "stream": "APCA_API_STREAM_URL",
    "trading": "APCA_API_BASE_URL",
    "trading_stream": "APCA_API_TRADING_STREAM_URL",
}
_KEY_HELP = (
    f"export {KEY_ENV}=... and {SECRET_ENV}=... with a key pair from your Alpaca dashboard "
    "(paper keys for paper trading)"
)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class AlpacaError(DataError):
    """Alpaca answered, but not with bars; the message says why and how to fix it."""


class AlpacaAuthError(AlpacaError):
    """The keys are missing or Alpaca refused them; the message names the variables to set."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class AlpacaUnavailable(AlpacaError):
    """Alpaca could not be reached (network, outage, rate limit beyond the retries)."""


@dataclass(frozen=True)
class Credentials:
    """An Alpaca key pair from the environment. Neither key appears in ``repr`` or ``str``."""

    key_id: str = field(repr=False)
    secret_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(from ${KEY_ENV}, ${SECRET_ENV})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if environ is None else environ
        key, secret = env.get(KEY_ENV, "").strip(), env.get(SECRET_ENV, "").strip()
        missing = [name for name, value in ((KEY_ENV, key), (SECRET_ENV, secret)) if not value]
        if missing:
            raise AlpacaAuthError(
                f"Alpaca is not configured: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                f"set; {_KEY_HELP}", missing=True,
            )
        return cls(key, secret)

    def redact(self, text: str) -> str:
        """``text`` with both keys blanked out (for messages that echo a server's answer)."""
        for secret in (self.key_id, self.secret_key):
            if secret:
                text = text.replace(secret, "***")
        return text


def endpoints(cfg: AlpacaConfig, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Each endpoint: the config's, else its environment variable's, else None (alpaca-py's default)."""
    env = os.environ if environ is None else environ
    out: dict[str, str | None] = {}
    for name, var in ENDPOINT_ENV.items():
        value = getattr(cfg.endpoints, name) or env.get(var) or None
        out[name] = value.rstrip("/") if value else None
    return out


def timeframe(bar: pd.Timedelta):
    """alpaca-py's ``TimeFrame`` for a bar size; DataError naming the sizes Alpaca serves otherwise."""
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    minutes = bar / pd.Timedelta(minutes=1)
    options = [
        (minutes, TimeFrameUnit.Minute, 1 <= minutes <= 59),
        (minutes / 60, TimeFrameUnit.Hour, 1 <= minutes / 60 <= 23),
        (minutes / 1440, TimeFrameUnit.Day, minutes == 1440),
        (minutes / 10080, TimeFrameUnit.Week, minutes == 10080),
    ]
    for amount, unit, fits in options:
        if fits and amount == int(amount):
            return TimeFrame(int(amount), unit)
    raise DataError(
        f"data.frequency {format_frequency(bar)} is not a bar size Alpaca serves; use 1-59 minutes (1min, 15min), "
        "1-23 hours (1h) or 1D"
    )


# --- REST with back-off ---------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """When to retry a failed request; the sleep is injected so tests need not wait."""

    max_retries: int = 6
    base_s: float = 1.0
    max_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time

    def delay(self, attempt: int, headers: Mapping[str, str] | None) -> float:
        """Seconds before retry ``attempt`` (0-based): what the server asked for, else exponential."""
        asked = _server_delay(headers or {}, self.now())
        if asked is not None:
            return min(max(asked, 0.0), self.max_s)
        return min(self.base_s * 2**attempt, self.max_s)


def _server_delay(headers: Mapping[str, str], now: float) -> float | None:
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return float(retry_after)
        except ValueError:
            try:
                return parsedate_to_datetime(retry_after).timestamp() - now
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return float(reset) - now  # Alpaca: unix seconds when the window resets
        except ValueError:
            return None
    return None


def _with_backoff(base: type) -> type:
    """A subclass of an alpaca-py REST client whose every GET retries under a ``Backoff``."""

    class Client(base):
        def __init__(self, *args: Any, backoff: Backoff, credentials: Credentials | None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # alpaca-py would retry 429 itself after a fixed 3 s; retries are ours, with back-off.
            self._retry_codes = []
            self._backoff = backoff
            self._credentials = credentials
            self.retries: list[tuple[int | str, float]] = []  # (status or error, delay): for run.json/tests

        def get(self, path: str, data: Any = None, **kwargs: Any) -> Any:
            from alpaca.common.exceptions import APIError
            from requests.exceptions import ConnectionError as ConnError
            from requests.exceptions import Timeout

            attempt = 0
            while True:
                try:
                    return super().get(path, data, **kwargs)
                except APIError as err:
                    status = err.status_code
                    if status not in _RETRY_STATUS or attempt >= self._backoff.max_retries:
                        raise _translate(err, self._credentials, attempt) from None
                    headers = err.response.headers if err.response is not None else {}
                    why: int | str = status
                except (ConnError, Timeout) as err:
                    if attempt >= self._backoff.max_retries:
                        raise AlpacaUnavailable(
                            f"cannot reach Alpaca at {self._base_url} ({type(err).__name__}) after {attempt} "
                            "retries; check the network or data.alpaca.endpoints.data"
                        ) from None
                    headers, why = {}, type(err).__name__
                wait = self._backoff.delay(attempt, headers)
                self.retries.append((why, wait))
                log.warning("Alpaca %s on %s; retry %d/%d in %.1f s", why, path, attempt + 1,
                            self._backoff.max_retries, wait)
                self._backoff.sleep(wait)
                attempt += 1

    Client.__name__ = f"Retrying{base.__name__}"
    return Client


def _translate(err: Any, credentials: Credentials | None, attempts: int) -> AlpacaError:
    status = err.status_code
    try:
        message = str(err.message)
    except (ValueError, KeyError, TypeError):
        message = str(err)[:300]
    if credentials is not None:
        message = credentials.redact(message)
    if status in (401, 403) and "subscription" in message.lower():
        return AlpacaError(
            f"Alpaca refused the request (HTTP {status}: {message}); your plan does not include this feed: "
            "set data.alpaca.feed: iex (free), or delayed_sip for SIP data 15 minutes late"
        )
    if status in (401, 403):
        return AlpacaAuthError(f"Alpaca refused the API keys (HTTP {status}: {message}); check {KEY_ENV} and "
                               f"{SECRET_ENV}: {_KEY_HELP}")
    if status == 429 or (status is not None and status >= 500):
        return AlpacaUnavailable(f"Alpaca answered HTTP {status} ({message}) {attempts} times in a row; "
                                 "try again later or raise data.alpaca.max_retries")
    return AlpacaError(f"Alpaca rejected the request (HTTP {status}: {message}); check data.symbols, "
                       "data.start/end and data.frequency")


def historical_client(cfg: AlpacaConfig, credentials: Credentials | None, *, backoff: Backoff | None = None,
                      environ: Mapping[str, str] | None = None):
    """alpaca-py's historical client for the asset class, with our back-off and endpoint."""
    from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient

    base = StockHistoricalDataClient if cfg.asset_class == "stocks" else CryptoHistoricalDataClient
    if credentials is None and cfg.asset_class == "stocks":
        raise AlpacaAuthError(f"stock bars need Alpaca keys; {_KEY_HELP}", missing=True)
    backoff = backoff or Backoff(cfg.max_retries, cfg.backoff_s, cfg.max_backoff_s)
    keys = {"api_key": credentials.key_id, "secret_key": credentials.secret_key} if credentials else {}
    return _with_backoff(base)(raw_data=True, url_override=endpoints(cfg, environ)["data"], backoff=backoff,
                               credentials=credentials, **keys)


def fetch_bars(client: Any, cfg: AlpacaConfig, symbols: list[str], bar: pd.Timedelta, start_ns: int,
               end_ns: int | None) -> dict[str, pd.DataFrame]:
    """Bars of ``symbols`` in [start_ns, end_ns] (all pages), one frame per symbol, oldest first."""
    from alpaca.data.enums import Adjustment, CryptoFeed, DataFeed
    from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest

    window = {
        "symbol_or_symbols": list(symbols),
        "timeframe": timeframe(bar),
        "start": pd.Timestamp(start_ns, tz="UTC").ceil("us").to_pydatetime(),
        "end": pd.Timestamp(end_ns, tz="UTC").floor("us").to_pydatetime() if end_ns is not None else None,
    }
    if cfg.asset_class == "stocks":
        raw = client.get_stock_bars(StockBarsRequest(**window, adjustment=Adjustment(cfg.adjustment),
                                                     feed=DataFeed(cfg.feed_name)))
    else:
        raw = client.get_crypto_bars(CryptoBarsRequest(**window), feed=CryptoFeed(cfg.feed_name))
    return {s: _frame(raw.get(s) or []) for s in symbols}


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({"timestamp": np.empty(0, np.int64), **{f: np.empty(0) for f in FIELDS}})
    t = pd.DatetimeIndex(pd.to_datetime([r["t"] for r in rows], utc=True)).as_unit("ns").asi8
    frame = pd.DataFrame({"timestamp": t, **{f: [float(r[f[0]]) for r in rows] for f in FIELDS}})
    return frame.sort_values("timestamp", kind="stable").drop_duplicates("timestamp", keep="last")


# --- the provider ---------------------------------------------------------------------------


def source_key(cfg: AlpacaConfig, bar: pd.Timedelta) -> str:
    """Everything that changes the numbers: the cache keeps each combination apart."""
    adjustment = cfg.adjustment if cfg.asset_class == "stocks" else "raw"
    return f"alpaca-{cfg.asset_class}-{cfg.feed_name}-{adjustment}-{timeframe(bar).value}"


def alpaca_provider(config: DataConfig, seed: int, environ: Mapping[str, str] | None) -> AlpacaProvider:
    """``data.provider: alpaca`` (``titan_ray.data.providers``): the keys and endpoints from ``environ``; no seed."""
    return AlpacaProvider(config, environ=environ)


class AlpacaProvider:
    """Historical bars from Alpaca, through the cache, with ``data.fallback`` when Alpaca is out of reach."""

    def __init__(
        self,
        config: DataConfig,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if not config.symbols:
            raise DataError("data.symbols is not set; list the tickers to trade, e.g. symbols: [AAPL, MSFT]"
                            + (" (crypto pairs like BTC/USD)" if config.alpaca.asset_class == "crypto" else ""))
        self.config = config
        self.cfg = config.alpaca
        self._env = os.environ if environ is None else environ
        self._sleep, self._now_ns = sleep, now_ns
        self.bar = pd.Timedelta(parse_frequency(config.frequency or "1D"))
        self.retries: list[tuple[int | str, float]] = []
        cache = config.cache
        self.cache = BarCache(default_cache_root(cache.path), source_key(self.cfg, self.bar)) if cache.enabled else None

    # what the live feed uses too
    def client(self):
        try:
            creds: Credentials | None = Credentials.from_env(self._env)
        except AlpacaAuthError:
            if self.cfg.asset_class == "stocks":
                raise
            creds = None  # crypto bars need no keys (keys only raise the rate limit)
        backoff = Backoff(self.cfg.max_retries, self.cfg.backoff_s, self.cfg.max_backoff_s, sleep=self._sleep)
        return historical_client(self.cfg, creds, backoff=backoff, environ=self._env)

    def window(self) -> tuple[int, int]:
        start, end = time_bounds(self.config)
        if start is None:
            raise DataError("data.start is not set; provider alpaca needs the first day to fetch, e.g. "
                            "start: 2024-01-02 (and end: 2024-06-28 for a rerun that needs no network)")
        # the bar that is still forming is not history yet
        settled = self._now_ns() - int(self.bar.value)
        end = settled if end is None else min(end, settled)
        if end < start:
            raise DataError(f"data.start {self.config.start!r} is in the future; nothing to fetch yet")
        return start, end

    def load(self) -> MarketData:
        start, end = self.window()
        symbols = list(self.config.symbols or [])
        frames, source = self._frames(symbols, start, end)
        market = assemble(frames, symbols, self.bar, Calendar(self.config.calendar), source)
        return with_session_rule(market, self.config)

    def _frames(self, symbols: list[str], start: int, end: int) -> tuple[dict[str, pd.DataFrame], str]:
        cache = self.cache
        need = [s for s in symbols if cache is None or not cache.covers(s, start, end)]
        if not need:
            log.info("Alpaca bars for %s served from the cache %s", ", ".join(symbols), cache.folder)
            return {s: cache.load(s, start, end) for s in symbols}, f"alpaca (cache {cache.folder}, no network)"
        if self.config.cache.offline:
            raise DataError(
                f"data.cache.offline is set, but the cache {cache.folder if cache else '(disabled)'} lacks "
                f"{', '.join(need)} for {_span(start, end)}; run once online, or unset data.cache.offline"
            )
        try:
            client = self.client()
            fetched = fetch_bars(client, self.cfg, need, self.bar, start, end)
            self.retries = list(client.retries)
        except AlpacaAuthError as err:
            if not err.missing:
                raise  # wrong keys must be fixed, not hidden behind a fallback
            return self._fallback(err, symbols, start, end)
        except AlpacaUnavailable as err:
            return self._fallback(err, symbols, start, end)
        if cache is not None:
            for s in need:
                cache.store(s, fetched[s], start, end)
        frames = {s: fetched[s] if s in fetched else cache.load(s, start, end) for s in symbols}
        where = endpoints(self.cfg, self._env)["data"] or "data.alpaca.markets"
        cached = len(symbols) - len(need)
        note = f", {cached} symbol(s) from the cache" if cached else ""
        return frames, f"alpaca {self.cfg.asset_class} {self.cfg.feed_name} ({where}{note})"

    def _fallback(self, why: AlpacaError, symbols: list[str], start: int, end: int
                  ) -> tuple[dict[str, pd.DataFrame], str]:
        fb = self.config.fallback
        if fb.provider == "none":
            raise why
        if fb.provider == "cache":
            if self.cache is None:
                raise AlpacaError(f"{why} (data.fallback.provider is cache, but data.cache.enabled is false)")
            frames = {s: self.cache.load(s, start, end) for s in symbols}
            empty = [s for s, f in frames.items() if f.empty]
            if empty:
                raise AlpacaError(f"{why}. The fallback cache {self.cache.folder} has no bars of "
                                  f"{', '.join(empty)} for {_span(start, end)} either")
            source = f"cache {self.cache.folder} (FALLBACK: {why})"
            log.warning("using the bar cache %s instead of Alpaca: %s", self.cache.folder, why)
            return frames, source
        cfg = self.config.model_copy(update={"provider": fb.provider, "path": fb.path})
        market = FileProvider(cfg).load()
        log.warning("using %s files at %s instead of Alpaca: %s", fb.provider, fb.path, why)
        frames = {}
        for j, s in enumerate(market.bars.symbols):
            b = market.bars
            ok = np.isfinite(b.close[:, j])
            frames[s] = pd.DataFrame({"timestamp": b.timestamps[ok], **{f: getattr(b, f)[ok, j] for f in FIELDS}})
        return frames, f"{fb.provider}:{fb.path} (FALLBACK: {why})"


def _span(start: int, end: int) -> str:
    return f"{pd.Timestamp(start, tz='UTC')} to {pd.Timestamp(end, tz='UTC')}"


def assemble(frames: dict[str, pd.DataFrame], symbols: list[str], bar: pd.Timedelta, calendar: Calendar,
             source: str, *, cache_note: bool = False) -> MarketData:
    """Per-symbol frames aligned on the union of their timestamps (NaN where a symbol has no bar)."""
    rejected: list[RejectedBar] = []
    clean: dict[str, pd.DataFrame] = {}
    for s in symbols:
        f = frames.get(s)
        if f is None or f.empty:
            raise DataError(f"Alpaca returned no bars for {s} in this window; check the ticker and data.start/end "
                            "(a symbol that did not trade then has no bars)")
        o, h, lo, c, v = (f[k].to_numpy(np.float64) for k in FIELDS)
        bad = {
            BadBarRule.MISSING_VALUE: ~np.isfinite(np.column_stack([o, h, lo, c, v])).all(axis=1),
            BadBarRule.NON_POSITIVE_PRICE: (np.minimum.reduce([o, h, lo, c]) <= 0),
            BadBarRule.HIGH_BELOW_LOW: h < lo,
            BadBarRule.NEGATIVE_VOLUME: v < 0,
        }
        drop = np.zeros(len(f), dtype=bool)
        for rule, mask in bad.items():
            for i in np.flatnonzero(mask & ~drop):
                rejected.append(RejectedBar(source, int(i) + 1, s, rule, f"o={o[i]} h={h[i]} l={lo[i]} c={c[i]} v={v[i]}"))
            drop |= mask
        clean[s] = f[~drop]
    timestamps = np.unique(np.concatenate([f["timestamp"].to_numpy(np.int64) for f in clean.values()]))
    shape = (len(timestamps), len(symbols))
    arrays = {f: np.full(shape, np.nan) for f in FIELDS}
    arrays["volume"] = np.zeros(shape)
    for j, s in enumerate(symbols):
        rows = np.searchsorted(timestamps, clean[s]["timestamp"].to_numpy(np.int64))
        for k in FIELDS:
            arrays[k][rows, j] = clean[s][k].to_numpy(np.float64)
    return MarketData(BarBatch.from_arrays(timestamps, symbols, **arrays), bar, calendar, source, tuple(rejected))


def with_session_rule(market: MarketData, config: DataConfig) -> MarketData:
    return filter_session(market, config.session_rule, UsEquityCalendar(config.session.extra_holidays))


# --- the live stream ------------------------------------------------------------------------


def _stream_class(base: type) -> type:
    """alpaca-py's data stream, reporting each connection and stopping for good on refused keys."""

    class Stream(base):
        def __init__(self, *args: Any, events: queue.Queue, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._events = events
            self._reconnect_min_backoff = 0.5  # alpaca-py's default is 1 s; a bar is often 60 s

        async def _start_ws(self) -> None:
            try:
                await super()._start_ws()
            except ValueError as err:
                text = str(err).lower()
                if "auth" in text:  # alpaca-py raises ValueError("auth failed" / "failed to authenticate")
                    self._events.put(("auth_error", str(err)))
                    await self.stop_ws()
                raise
            self._events.put(("connected", None))

        async def _halt(self) -> None:
            await self.stop_ws()
            await self.close()  # wakes the receive loop now, not at its next 5 s timeout

    Stream.__name__ = f"Reporting{base.__name__}"
    return Stream


class AlpacaLiveSource:
    """Live bars of ``symbols`` from Alpaca's market-data stream, as events on a queue.

    Events: ``("bar", symbol, t_ns, o, h, l, c, v)``, ``("connected", n)`` with n = 1, 2, ... (n > 1 is
    a reconnect), ``("auth_error", text)``. ``fetch`` reads history over REST (warm-up, backfill).
    """

    def __init__(self, provider: AlpacaProvider, *, environ: Mapping[str, str] | None = None) -> None:
        self.provider = provider
        self.cfg = provider.cfg
        self.symbols = list(provider.config.symbols or [])
        self._env = os.environ if environ is None else environ
        self.credentials = Credentials.from_env(self._env)  # the stream always needs keys
        self.events: queue.Queue = queue.Queue()
        self.connections = 0
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def fetch(self, start_ns: int, end_ns: int | None, *, minutes: bool = False) -> dict[str, pd.DataFrame]:
        bar = pd.Timedelta(minutes=1) if minutes else self.provider.bar
        return fetch_bars(self.provider.client(), self.cfg, self.symbols, bar, start_ns, end_ns)

    def start(self) -> None:
        from alpaca.data.enums import CryptoFeed, DataFeed
        from alpaca.data.live import CryptoDataStream, StockDataStream

        url = endpoints(self.cfg, self._env)["stream"]
        keys = {"api_key": self.credentials.key_id, "secret_key": self.credentials.secret_key}
        if self.cfg.asset_class == "stocks":
            stream = _stream_class(StockDataStream)(**keys, raw_data=True, feed=DataFeed(self.cfg.feed_name),
                                                    url_override=url, events=self.events)
        else:
            stream = _stream_class(CryptoDataStream)(**keys, raw_data=True, feed=CryptoFeed(self.cfg.feed_name),
                                                     url_override=url, events=self.events)
        events = self.events

        async def on_bar(bar: dict[str, Any]) -> None:
            t = bar["t"]
            t_ns = t.to_unix_nano() if hasattr(t, "to_unix_nano") else pd.Timestamp(t).value
            events.put(("bar", bar["S"], int(t_ns), float(bar["o"]), float(bar["h"]), float(bar["l"]),
                        float(bar["c"]), float(bar["v"])))

        stream.subscribe_bars(on_bar, *self.symbols)
        self._stream = stream
        self._thread = threading.Thread(target=stream.run, name="alpaca-bar-stream", daemon=True)
        self._thread.start()

    def get(self, timeout: float) -> tuple | None:
        try:
            event = self.events.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if event[0] == "connected":
            self.connections += 1
            return ("connected", self.connections)
        if event[0] == "auth_error":
            raise AlpacaAuthError(f"the Alpaca stream refused the API keys ({event[1]}); check {KEY_ENV} and "
                                  f"{SECRET_ENV}: {_KEY_HELP}")
        return event

    def close(self) -> None:
        import asyncio

        stream, thread = self._stream, self._thread
        self._stream = self._thread = None
        if stream is None:
            return
        loop = getattr(stream, "_loop", None)
        if loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(stream._halt(), loop).result(timeout=5)
            except Exception:  # a loop that is already shutting down
                log.debug("stream stop raced its shutdown", exc_info=True)
        if thread is not None:
            thread.join(timeout=10)
