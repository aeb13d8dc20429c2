"""The synthetic market: determinism, shape, OHLC sanity, stylised facts and the bar clock."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from titan_ray.config import DataConfig, SyntheticConfig
from titan_ray.data.market import DataError, MarketData
from titan_ray.data.providers import make_provider
from titan_ray.data.synthetic import SyntheticProvider, synthetic_symbols
from titan_ray.domain.bars import FIELDS
from titan_ray.domain.calendar import Calendar

NY = "America/New_York"


def load(seed: int = 7, **data: object) -> MarketData:
    return SyntheticProvider(DataConfig(**data), seed).load()


def ny_times(market: MarketData) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(market.bars.timestamps, tz="UTC").tz_convert(NY)


def log_returns(market: MarketData) -> np.ndarray:
    return np.diff(np.log(market.bars.close), axis=0)


def test_same_seed_gives_the_same_bytes() -> None:
    a, b = load(seed=3), load(seed=3)
    for name in ("timestamps", *FIELDS):
        assert getattr(a.bars, name).tobytes() == getattr(b.bars, name).tobytes(), name
    assert a.bars.symbols == b.bars.symbols


def test_another_seed_gives_other_prices_on_the_same_clock() -> None:
    a, b = load(seed=3), load(seed=4)
    assert np.array_equal(a.bars.timestamps, b.bars.timestamps)
    assert not np.array_equal(a.bars.close, b.bars.close)


def test_make_provider_builds_the_synthetic_market() -> None:
    market = make_provider(DataConfig(), 7).load()
    assert market.bars.close.shape == (5000, 12)
    assert market.source == "synthetic(seed=7)"
    assert market.frequency == pd.Timedelta("15min")
    assert market.calendar is Calendar.EQUITIES
    assert market.rejected == ()


def test_default_symbol_names_are_distinct_three_letter_names() -> None:
    market = load(n_symbols=30, bars=10)
    assert market.bars.symbols[:3] == ("AAA", "BBB", "CCC")
    assert market.bars.symbols[25] == "ZZZ"
    assert market.bars.symbols[26:] == ("AAB", "AAC", "AAD", "AAE")
    names = synthetic_symbols(5000)
    assert len(set(names)) == 5000
    assert all(len(n) == 3 and n.isalpha() and n.isupper() for n in names)


def test_configured_symbols_are_used_in_order() -> None:
    market = load(symbols=["SPY", "QQQ"], bars=50)
    assert market.bars.symbols == ("SPY", "QQQ")
    assert market.bars.close.shape == (50, 2)


def test_ohlc_is_consistent_positive_and_volume_is_whole() -> None:
    b = load(n_symbols=20, bars=3000).bars
    assert np.isfinite(b.close).all()
    assert (b.low > 0).all()
    assert (b.high >= np.maximum(b.open, b.close)).all()
    assert (b.low <= np.minimum(b.open, b.close)).all()
    assert (b.volume >= 1).all()
    assert np.array_equal(b.volume, np.rint(b.volume))


def test_open_is_the_previous_close_plus_a_small_gap() -> None:
    b = load(bars=2000).bars
    gap = np.abs(np.log(b.open[1:] / b.close[:-1]))
    body = np.abs(np.log(b.close / b.open))
    assert np.median(gap) < 0.5 * np.median(body)


@pytest.mark.parametrize("share", [0.2, 0.5, 0.8])
def test_correlation_between_symbols_is_near_the_market_share(share: float) -> None:
    market = load(bars=5000, n_symbols=10, synthetic=SyntheticConfig(market_correlation=share))
    corr = np.corrcoef(log_returns(market).T)[np.triu_indices(10, 1)]
    assert corr.min() > 0
    assert abs(corr.mean() - share) < 0.08


def test_returns_have_fat_tails() -> None:
    r = log_returns(load(bars=5000, n_symbols=8))
    z = (r - r.mean(axis=0)) / r.std(axis=0)
    excess_kurtosis = (z**4).mean(axis=0) - 3.0
    assert (excess_kurtosis > 0).all()


@pytest.mark.parametrize("frequency", ["15min", "1D"])
def test_volatility_is_annualised_for_the_bar_size(frequency: str) -> None:
    # Calm regime only, so the per-bar volatility is exactly annual / sqrt(periods per year).
    p = SyntheticConfig(annual_volatility=0.25, regime_switch_prob=0.0)
    market = load(bars=5000, n_symbols=20, frequency=frequency, synthetic=p)
    per_year = 252 * 26 if frequency == "15min" else 252
    realised = log_returns(market).std(axis=0).mean() * np.sqrt(per_year)
    assert 0.25 * 0.9 < realised < 0.25 * 1.2  # symbol levels span 0.7x-1.4x, mean 1.05x


def test_turbulent_regime_raises_volatility_for_all_symbols_at_once() -> None:
    p = SyntheticConfig(high_vol_multiplier=4.0, regime_switch_prob=0.01)
    r = log_returns(load(bars=5000, n_symbols=12, synthetic=p))
    # A shared regime makes the cross-section's absolute moves rise and fall together.
    rolling = pd.DataFrame(np.abs(r)).rolling(100).mean().dropna().to_numpy()
    assert np.corrcoef(rolling.T)[np.triu_indices(12, 1)].mean() > 0.5


def test_intraday_volume_is_u_shaped() -> None:
    market = load(bars=26 * 200, n_symbols=5)
    slot = (ny_times(market).hour * 60 + ny_times(market).minute - 570) // 15
    by_slot = pd.DataFrame(market.bars.volume).groupby(np.asarray(slot)).mean().mean(axis=1)
    assert len(by_slot) == 26
    assert by_slot.iloc[0] > 1.3 * by_slot.iloc[13]
    assert by_slot.iloc[-1] > 1.3 * by_slot.iloc[13]


def test_equities_bars_open_inside_weekday_sessions() -> None:
    market = load(bars=26 * 60, start="2024-03-01")  # spans the DST change of 2024-03-10
    local = ny_times(market)
    minutes = local.hour * 60 + local.minute
    assert (local.day_of_week < 5).all()
    assert minutes.min() == 9 * 60 + 30
    assert minutes.max() == 15 * 60 + 45
    assert (pd.Series(local.date).value_counts() == 26).all()
    assert local[0] == pd.Timestamp("2024-03-01 09:30", tz=NY)
    assert (np.diff(market.bars.timestamps) > 0).all()


def test_hourly_equities_bars_end_with_a_half_hour_bar() -> None:
    local = ny_times(load(bars=70, frequency="1h"))
    assert [t.strftime("%H:%M") for t in local[:8]] == [
        "09:30",
        "10:30",
        "11:30",
        "12:30",
        "13:30",
        "14:30",
        "15:30",
        "09:30",
    ]


def test_daily_equities_bars_are_stamped_at_new_york_midnight_on_weekdays() -> None:
    market = load(bars=30, frequency="1D", start="2024-01-05")
    local = ny_times(market)
    assert market.frequency == pd.Timedelta(days=1)
    assert (local.day_of_week < 5).all()
    assert (local == local.normalize()).all()
    assert local[0] == pd.Timestamp("2024-01-05", tz=NY)
    assert local[1] == pd.Timestamp("2024-01-08", tz=NY)  # Friday, then Monday


@pytest.mark.parametrize("frequency", ["1min", "15min", "1h", "4h", "1D"])
def test_continuous_bars_are_evenly_spaced_around_the_clock(frequency: str) -> None:
    market = load(bars=500, frequency=frequency, calendar="continuous", start="2024-01-06")
    step = pd.Timedelta(frequency).value
    assert (np.diff(market.bars.timestamps) == step).all()
    assert market.bars.timestamps[0] == pd.Timestamp("2024-01-06", tz="UTC").value
    assert market.calendar is Calendar.CONTINUOUS


def test_start_inside_a_session_begins_at_that_bar_and_end_cuts_the_rest() -> None:
    market = load(bars=100, start="2024-01-02 12:00", end="2024-01-03")
    local = ny_times(market)
    assert local[0] == pd.Timestamp("2024-01-02 12:00", tz=NY)
    assert local[-1] == pd.Timestamp("2024-01-03 15:45", tz=NY)  # a bare end date is the whole day


def test_end_before_the_data_raises_with_the_fix() -> None:
    with pytest.raises(DataError, match=r"data\.end"):
        load(bars=100, start="2024-01-02", end="2023-12-01")


def test_generation_is_fast() -> None:
    t0 = time.perf_counter()
    load(bars=5000, n_symbols=12)
    small = time.perf_counter() - t0
    t0 = time.perf_counter()
    load(bars=10_000, n_symbols=100)
    large = time.perf_counter() - t0
    assert small < 1.0, small
    assert large < 3.0, large
