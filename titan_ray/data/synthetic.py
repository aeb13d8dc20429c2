"""The built-in synthetic market: seeded, vectorised, deterministic bit for bit.

Four parts; all randomness comes from one ``numpy.random.default_rng(seed)``, drawn in a fixed
order, so the same config and seed give the same bytes:

- ``synthetic_timestamps``: the bar clock. On ``equities``, weekday sessions 09:30-16:00
  America/New_York, each bar stamped with its open time (15min bars: 09:30 .. 15:45, 26 a day);
  daily bars are stamped at midnight New York time of the session's date, the way daily files
  (LEAN, Yahoo) stamp them, so synthetic and file data line up. On ``continuous``, every bar 24/7.
  Exchange holidays are not modelled: every weekday is a session.
- ``_log_returns``: close-to-close log returns = drift + vol x (market factor + idiosyncratic),
  with ``market_correlation`` of the variance from the market factor. Two options for testing
  learned models: ``random_walk`` (no drift, no regimes, Gaussian: nothing to predict) and
  ``signal`` (a planted, weak, predictable component: each idiosyncratic shock gains ``signal``
  times the normalised sum of the symbol's last ``signal_lag`` shocks, so past returns predict
  the next ones). Neither draws extra random numbers beyond the Gaussian shocks, and with both
  off the market is the same bytes as before. Shocks are Student-t scaled
  to unit variance (fat tails); a two-state Markov regime (calm / turbulent), shared by all
  symbols, multiplies volatility; each symbol has its own volatility level (0.7x-1.4x).
- ``_market_path``: the market-wide drift and calm/turbulent state per bar, which ``_log_returns``
  applies and ``true_regimes`` reads back as labels (same seed, same draws, nothing generated
  twice differently). ``SyntheticConfig.scenario`` picks it: ``default`` is the market above,
  byte for byte; ``random_walk`` is the ``random_walk`` option; ``trending`` replaces the constant
  drift by alternating up/down segments (their lengths and first direction drawn after the
  Markov chain); ``mean_reverting`` is ``signal`` = -0.4; ``crash_and_recovery`` is scripted,
  with no draws (calm drift, a turbulent crash in the middle, a recovery); and
  ``volatility_clustering`` is a faster, wider Markov chain. The presets' numbers are the
  ``_TREND_*``, ``_CRASH_*``, ... constants below.
- ``SyntheticProvider.load``: turns returns into OHLCV. Each bar's open is the previous close
  times a small gap, so close-to-close returns are exactly the model's; highs and lows add wicks
  beyond the body; volume is ``base_volume`` x a U-shaped intraday profile x lognormal noise x a
  bump that grows with the bar's absolute return.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from titan_ray.config import DataConfig, SyntheticConfig
from titan_ray.data.files import naive_timezone, time_bounds
from titan_ray.data.market import DataError, MarketData
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import (
    EXCHANGE_TZ,
    SESSION_MINUTES,
    Calendar,
    parse_frequency,
    periods_per_year,
)
from titan_ray.metrics.regimes import encode

DEFAULT_FREQUENCY = "15min"
DEFAULT_START = "2024-01-02"
_SESSION_OPEN = pd.Timedelta(hours=9, minutes=30)
_SESSION = pd.Timedelta(minutes=SESSION_MINUTES)
_VOL_DISPERSION = (0.7, 1.4)  # per-symbol volatility relative to annual_volatility
_GAP_SCALE = 0.1  # sd of the open-vs-previous-close gap, in bar volatilities
_SESSION_GAP_SCALE = 0.5  # the overnight gap at a session's first bar is larger
_WICK_SCALE = 0.5  # mean size of high/low wicks beyond the body, in bar volatilities
_VOLUME_NOISE = 0.3  # sd of the lognormal volume noise
_U_DEPTH = 1.5  # open/close volume is (1 + depth) x midday volume before normalising
# The scenarios' presets (SyntheticConfig.scenario; the config's description quotes these numbers).
_TREND_SEGMENT = 600  # trending: mean bars per trend segment (uniform over half to 1.5x)
_TREND_STRENGTH = 0.15  # trending: drift per bar, in typical bar volatilities (t-stat 1.5 over 100 bars)
_MEAN_REVERTING_SIGNAL = -0.4  # mean_reverting: the planted component's weight (reversal)
_CRASH_SHARE = 0.04  # crash_and_recovery: share of the bars the crash lasts, in the middle
_CRASH_DEPTH = 0.45  # crash_and_recovery: the crash's market drift in log-points (a 36% fall)
_RECOVERY = 0.6  # crash_and_recovery: share of the fall the rest of the bars drift back
_CLUSTER_SWITCH_PROB = 0.01  # volatility_clustering: chance per bar of switching calm/turbulent
_CLUSTER_MULTIPLIER = 4.0  # volatility_clustering: turbulent / calm volatility


def synthetic_symbols(n: int) -> list[str]:
    """``n`` distinct three-letter names: AAA, BBB, .., ZZZ, then AAB, AAC, .. in order."""
    letters = string.ascii_uppercase
    repeated = [c * 3 for c in letters]
    others = ("".join(p) for p in itertools.product(letters, repeat=3) if len(set(p)) > 1)
    return (repeated + list(itertools.islice(others, max(0, n - len(repeated)))))[:n]


def synthetic_timestamps(
    start: pd.Timestamp, bar: pd.Timedelta, n: int, calendar: Calendar
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``n`` bar timestamps (int64 UTC ns) at or after ``start`` (tz-aware).

    Also returns each bar's slot within its session and the slots per session, for intraday
    bars on ``equities`` (the slot drives the intraday volume profile); ``None`` and 1 otherwise.
    """
    if Calendar(calendar) is Calendar.CONTINUOUS:
        first = start.tz_convert("UTC").as_unit("ns").value
        return first + np.arange(n, dtype=np.int64) * bar.value, None, 1
    local_start = start.tz_convert(EXCHANGE_TZ).tz_localize(None).as_unit("ns")
    first_day = np.datetime64(local_start.normalize().date(), "D")
    if bar >= pd.Timedelta(days=1):
        step = max(1, round(bar / pd.Timedelta(days=1)))  # a 2D bar spans two sessions
        days = _weekdays(first_day, n * step)[::step][:n]
        return _ny_to_utc_ns(days.astype("datetime64[ns]")), None, 1
    per_day = math.ceil(_SESSION / bar)  # a bar that does not divide 6.5 h ends early at 16:00
    offsets = (_SESSION_OPEN.value + np.arange(per_day, dtype=np.int64) * bar.value).astype("timedelta64[ns]")
    days = _weekdays(first_day, math.ceil(n / per_day) + 1)
    local = (days.astype("datetime64[ns]")[:, None] + offsets[None, :]).ravel()
    slots = np.tile(np.arange(per_day), len(days))
    keep = np.flatnonzero(local >= local_start.to_datetime64())[:n]
    return _ny_to_utc_ns(local[keep]), slots[keep], per_day


def _weekdays(first: np.datetime64, count: int) -> np.ndarray:
    days = np.arange(first, first + count * 7 // 5 + 7, dtype="datetime64[D]")
    return days[np.is_busday(days)][:count]


def _ny_to_utc_ns(local: np.ndarray) -> np.ndarray:
    # Session hours never fall in a daylight-saving change (02:00), so localising cannot fail.
    index = pd.DatetimeIndex(local).tz_localize(EXCHANGE_TZ).tz_convert("UTC")
    return index.as_unit("ns").asi8.copy()


@dataclass(frozen=True)
class _MarketPath:
    """The market-wide state per bar, shared by all symbols: what ``true_regimes`` reads back."""

    drift: np.ndarray  # (T,) log return per bar added to every symbol
    scale: np.ndarray  # (T,) volatility multiplier
    turbulent: np.ndarray  # (T,) bool: the calm/turbulent state behind ``scale``

    def labels(self) -> np.ndarray:
        """(T,) int8 true regime labels (``titan_ray.metrics.regimes.REGIMES``); zero drift counts as up."""
        return encode(self.drift < 0, self.turbulent)


def _market_path(rng: np.random.Generator, t: int, p: SyntheticConfig, periods: float) -> _MarketPath:
    """Drift and volatility state per bar for ``p.scenario``; the generator's only draws before the shocks."""
    if p.random_walk or p.scenario == "random_walk":
        return _MarketPath(np.zeros(t), np.ones(t), np.zeros(t, dtype=bool))
    if p.scenario == "crash_and_recovery":
        return _crash_and_recovery(t, p, periods)
    switch, multiplier = p.regime_switch_prob, p.high_vol_multiplier
    if p.scenario == "volatility_clustering":
        switch, multiplier = _CLUSTER_SWITCH_PROB, _CLUSTER_MULTIPLIER
    turbulent = _markov_state(rng, t, switch)
    calm, high = _vol_levels(multiplier)
    # switch 0: volatility exactly 1 (not ``calm``), as the market always had without regimes
    scale = np.where(turbulent, high, calm) if switch else np.ones(t)
    if p.scenario == "trending":
        return _MarketPath(_trend_drift(rng, t, p, periods), scale, turbulent)
    return _MarketPath(np.full(t, p.annual_drift / periods), scale, turbulent)


def _markov_state(rng: np.random.Generator, t: int, switch: float) -> np.ndarray:
    """(T,) bool turbulent states of a symmetric two-state Markov chain (all calm when ``switch`` is 0).

    A symmetric chain's state is the parity of the number of switches so far, so the chain is a
    cumulative sum rather than a Python loop.
    """
    if switch == 0:
        return np.zeros(t, dtype=bool)
    initial = int(rng.random() < 0.5)
    return (initial + np.cumsum(rng.random(t) < switch)) % 2 == 1


def _vol_levels(multiplier: float) -> tuple[float, float]:
    """Calm and turbulent volatility multipliers: the calm level is set so that the long-run
    variance equals ``annual_volatility`` when half the time is calm and half turbulent."""
    calm = 1.0 / math.sqrt((1.0 + multiplier**2) / 2.0)
    return calm, multiplier * calm


def _trend_drift(rng: np.random.Generator, t: int, p: SyntheticConfig, periods: float) -> np.ndarray:
    """``trending``: alternating up/down segments of uniform random length around ``_TREND_SEGMENT`` bars,
    the first one's direction drawn; each drifts ``_TREND_STRENGTH`` typical bar volatilities per bar."""
    lo, hi = _TREND_SEGMENT // 2, 3 * _TREND_SEGMENT // 2
    first = 1.0 if rng.random() < 0.5 else -1.0
    lengths = rng.integers(lo, hi + 1, size=t // lo + 1)  # enough segments to cover t bars
    segment = np.repeat(np.arange(len(lengths)), lengths)[:t]
    sign = np.where(segment % 2 == 0, first, -first)
    return sign * _TREND_STRENGTH * p.annual_volatility / math.sqrt(periods)


def _crash_and_recovery(t: int, p: SyntheticConfig, periods: float) -> _MarketPath:
    """``crash_and_recovery``, scripted (no draws): calm with ``annual_drift`` until the middle
    ``_CRASH_SHARE`` of the bars, which fall ``_CRASH_DEPTH`` log-points in the turbulent state; the
    rest climbs back ``_RECOVERY`` of the fall, turbulent for as long as the crash lasted, then calm."""
    n_crash = max(1, round(_CRASH_SHARE * t))
    start = (t - n_crash) // 2
    end = start + n_crash
    drift = np.full(t, p.annual_drift / periods)
    drift[start:end] = -_CRASH_DEPTH / n_crash
    drift[end:] = _RECOVERY * _CRASH_DEPTH / max(1, t - end)
    turbulent = np.zeros(t, dtype=bool)
    turbulent[start : end + n_crash] = True  # the aftershock: volatility stays high as the rebound starts
    calm, high = _vol_levels(p.high_vol_multiplier)
    return _MarketPath(drift, np.where(turbulent, high, calm), turbulent)


def _unit_t(rng: np.random.Generator, dof: float, size: int | tuple[int, int]) -> np.ndarray:
    """Student-t draws scaled to unit variance (the t's variance is dof / (dof - 2))."""
    return rng.standard_t(dof, size) * math.sqrt((dof - 2.0) / dof)


def _symbol_vol(rng: np.random.Generator, s: int, p: SyntheticConfig, periods: float) -> np.ndarray:
    """(S,) typical bar volatility per symbol: the generator's first draw."""
    return p.annual_volatility / math.sqrt(periods) * rng.uniform(*_VOL_DISPERSION, size=s)


def _log_returns(
    rng: np.random.Generator, t: int, s: int, p: SyntheticConfig, periods: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, S) log returns, (T, S) volatility per bar, (S,) typical bar volatility per symbol."""
    symbol_vol = _symbol_vol(rng, s, p, periods)
    path = _market_path(rng, t, p, periods)
    if p.random_walk or p.scenario == "random_walk":
        market, idio = rng.standard_normal(t), rng.standard_normal((t, s))
    else:
        market = _unit_t(rng, p.tail_dof, t)
        idio = _unit_t(rng, p.tail_dof, (t, s))
    signal = _MEAN_REVERTING_SIGNAL if p.scenario == "mean_reverting" else p.signal
    if signal:
        idio = idio + signal * _lagged_sum(idio, p.signal_lag) / math.sqrt(p.signal_lag)
    shock = math.sqrt(p.market_correlation) * market[:, None] + math.sqrt(1.0 - p.market_correlation) * idio
    vol = path.scale[:, None] * symbol_vol[None, :]
    return path.drift[:, None] + vol * shock, vol, symbol_vol


def _lagged_sum(x: np.ndarray, lag: int) -> np.ndarray:
    """Row t: the sum of rows t-lag .. t-1 of ``x`` (the past only; fewer rows at the start)."""
    c = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])  # c[t] = sum of rows < t
    t = np.arange(len(x))
    return c[t] - c[np.maximum(t - lag, 0)]


def _intraday_profile(slots: np.ndarray | None, per_day: int) -> np.ndarray:
    """Volume multiplier per bar, mean 1 over a session: high at the open and close, low midday."""
    if slots is None or per_day < 3:
        return np.ones(1 if slots is None else len(slots))
    x = 2.0 * np.arange(per_day) / (per_day - 1) - 1.0  # -1 at the open, +1 at the last bar
    shape = 1.0 + _U_DEPTH * x**2
    return (shape / shape.mean())[slots]


def synthetic_provider(config: DataConfig, seed: int, environ: Mapping[str, str] | None) -> SyntheticProvider:
    """``data.provider: synthetic`` (``titan_ray.data.providers``): the seed draws the market; no environment."""
    return SyntheticProvider(config, seed)


class SyntheticProvider:
    """A seeded synthetic market described by ``DataConfig`` (``bars``, symbols, ``synthetic``)."""

    def __init__(self, config: DataConfig, seed: int) -> None:
        self._config = config
        self._seed = seed

    def load(self) -> MarketData:
        cfg, p = self._config, self._config.synthetic
        clock = _clock(cfg)
        timestamps, slots, per_day = clock.timestamps, clock.slots, clock.per_day
        t, s = len(timestamps), len(clock.symbols)

        rng = np.random.default_rng(self._seed)
        returns, vol, symbol_vol = _log_returns(rng, t, s, p, clock.periods)
        log_close = math.log(p.start_price) + np.cumsum(returns, axis=0)
        log_prev = np.vstack([np.full((1, s), math.log(p.start_price)), log_close[:-1]])
        gap_scale = np.full(t, _GAP_SCALE)
        if slots is not None:
            gap_scale[slots == 0] = _SESSION_GAP_SCALE
        log_open = log_prev + gap_scale[:, None] * vol * rng.standard_normal((t, s))
        body_high = np.maximum(log_open, log_close)
        body_low = np.minimum(log_open, log_close)
        high = np.exp(body_high + _WICK_SCALE * vol * np.abs(rng.standard_normal((t, s))))
        low = np.exp(body_low - _WICK_SCALE * vol * np.abs(rng.standard_normal((t, s))))

        noise = np.exp(_VOLUME_NOISE * rng.standard_normal((t, s)) - _VOLUME_NOISE**2 / 2.0)
        # Busy bars trade more: |return| in units of the symbol's typical bar volatility.
        bump = 0.5 + 0.5 * np.abs(returns - returns.mean(axis=0)) / symbol_vol[None, :]
        volume = p.base_volume * _intraday_profile(slots, per_day)[:, None] * noise * bump
        volume = np.maximum(1.0, np.rint(volume))

        keep = _window(cfg, timestamps)
        return MarketData(
            bars=BarBatch.from_arrays(
                timestamps[keep],
                clock.symbols,
                open=np.exp(log_open)[keep],
                high=high[keep],
                low=low[keep],
                close=np.exp(log_close)[keep],
                volume=volume[keep],
            ),
            frequency=clock.bar,
            calendar=Calendar(cfg.calendar),
            source=f"synthetic(seed={self._seed})",
            rejected=(),
        )


def true_regimes(data: DataConfig, seed: int) -> np.ndarray:
    """The market's true regime per bar: int8 labels (``titan_ray.metrics.regimes.REGIMES``), one per
    timestamp that ``SyntheticProvider(data, seed).load()`` returns, in the same order.

    Trend axis: the sign of the drift the generator added at that bar (the scenario's segment;
    zero drift, as in ``random_walk``, counts as up). Volatility axis: its calm/turbulent state.
    The path is rebuilt from the same seed and draws as ``load``, which it does not change.
    """
    if data.provider != "synthetic":
        raise ValueError(f"true_regimes needs data.provider: synthetic, not {data.provider!r}")
    clock = _clock(data)
    rng = np.random.default_rng(seed)
    _symbol_vol(rng, len(clock.symbols), data.synthetic, clock.periods)  # drawn first, as in load
    path = _market_path(rng, len(clock.timestamps), data.synthetic, clock.periods)
    return path.labels()[_window(data, clock.timestamps)]


@dataclass(frozen=True)
class _Clock:
    """What the config says about the bars before any draw: names, bar size, timestamps."""

    symbols: list[str]
    bar: pd.Timedelta
    periods: float  # bars per year
    timestamps: np.ndarray
    slots: np.ndarray | None
    per_day: int


def _clock(cfg: DataConfig) -> _Clock:
    symbols = list(cfg.symbols) if cfg.symbols is not None else synthetic_symbols(cfg.n_symbols)
    bar = pd.Timedelta(parse_frequency(cfg.frequency or DEFAULT_FREQUENCY))
    start_ns, _ = time_bounds(cfg)  # naive times read like a file's: data.timezone or default
    if start_ns is None:
        start = pd.Timestamp(DEFAULT_START).tz_localize(naive_timezone(cfg))
    else:
        start = pd.Timestamp(start_ns, tz="UTC")
    timestamps, slots, per_day = synthetic_timestamps(start, bar, cfg.bars, cfg.calendar)
    return _Clock(symbols, bar, periods_per_year(bar, cfg.calendar), timestamps, slots, per_day)


def _window(cfg: DataConfig, timestamps: np.ndarray) -> np.ndarray:
    """Bars up to ``data.end``; ``data.start`` already set where generation began."""
    _, end = time_bounds(cfg)
    if end is None:
        return np.ones(len(timestamps), dtype=bool)
    keep = timestamps <= end
    if keep.sum() < 2:
        raise DataError(
            f"data.end {cfg.end!r} leaves fewer than 2 synthetic bars (the first is at "
            f"{pd.Timestamp(timestamps[0], tz='UTC')}); move data.end later or data.start earlier"
        )
    return keep
