"""The causal feature pipeline: bulk == incremental, causal, and each feature what it says."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.features import ALL_FEATURES, DESCRIPTIONS, FeatureEngine
from titan_ray.models.baselines import RsiReversion


def market(n_symbols: int = 5, bars: int = 300, seed: int = 4) -> BarBatch:
    return SyntheticProvider(DataConfig(n_symbols=n_symbols, bars=bars), seed).load().bars


def with_gaps(bars: BarBatch) -> BarBatch:
    """Some missing bars (NaN prices, zero volume) and a symbol that starts late."""
    fields = {f: getattr(bars, f).copy() for f in ("open", "high", "low", "close", "volume")}
    rng = np.random.default_rng(0)
    holes = rng.random(fields["close"].shape) < 0.03
    holes[:60, -1] = True  # the last symbol lists late
    for f in ("open", "high", "low", "close"):
        fields[f][holes] = np.nan
    fields["volume"][holes] = 0.0
    return BarBatch.from_arrays(bars.timestamps, bars.symbols, **fields)


@pytest.mark.parametrize("size", [1, 7, 64, 299])
def test_incremental_rows_are_the_bulk_rows_bit_for_bit(size):
    bars = with_gaps(market())
    engine = FeatureEngine()
    bulk = engine.transform(bars)
    stream = engine.stream()
    parts = [stream.update(chunk) for chunk in bars.chunks(size)]
    assert all(p.shape[1:] == (5, len(ALL_FEATURES)) for p in parts)
    assert np.array_equal(np.concatenate(parts), bulk, equal_nan=True)


def test_a_row_never_depends_on_later_bars():
    bars = market()
    engine = FeatureEngine()
    base = engine.transform(bars)
    cut = 150
    fields = {f: getattr(bars, f).copy() for f in ("open", "high", "low", "close", "volume")}
    for f in ("open", "high", "low", "close"):
        fields[f][cut:] *= 1.5  # the future changes completely
    fields["volume"][cut:] *= 7
    changed = engine.transform(BarBatch.from_arrays(bars.timestamps, bars.symbols, **fields))
    assert np.array_equal(changed[:cut], base[:cut], equal_nan=True)
    assert not np.array_equal(changed[cut:], base[cut:], equal_nan=True)


def test_features_are_nan_until_their_lookback_then_valid_and_nan_on_missing_bars():
    bars = with_gaps(market())
    engine = FeatureEngine()
    x = engine.transform(bars)
    assert engine.lookback == 34
    assert np.isnan(x[: 1, :, ALL_FEATURES.index("ret_1")]).all()
    assert np.isnan(x[:33]).any(axis=(1, 2)).all()  # macd_signal needs 34 bars
    present = np.isfinite(bars.close)
    late = x[engine.lookback + 60 :]
    assert np.isfinite(late[present[engine.lookback + 60 :]]).all()
    assert np.isnan(late[~present[engine.lookback + 60 :]]).all()


def test_values_match_their_definitions():
    bars = market(n_symbols=3, bars=200)
    names = ("ret_1", "ret_5", "ret_20", "vol_20", "bb_pos_20", "volume_z_20", "rsi_14", "rank_ret_5")
    engine = FeatureEngine(names)
    x = engine.transform(bars)
    c = pd.DataFrame(bars.close)
    logc = np.log(c)
    r1 = logc.diff()
    expected = {
        "ret_1": r1,
        "ret_5": logc.diff(5),
        "ret_20": logc.diff(20),
        "vol_20": r1.rolling(20).std(),
        "bb_pos_20": (logc - logc.rolling(20).mean()) / (2 * logc.rolling(20).std()),
        "volume_z_20": (np.log1p(pd.DataFrame(bars.volume)) - np.log1p(pd.DataFrame(bars.volume)).rolling(20).mean())
        / np.log1p(pd.DataFrame(bars.volume)).rolling(20).std(),
    }
    for name, want in expected.items():
        got = x[:, :, names.index(name)]
        ok = np.isfinite(got)
        assert ok[40:].all(), name
        np.testing.assert_allclose(got[ok], want.to_numpy()[ok], rtol=1e-9, atol=1e-12, err_msg=name)
    # RSI agrees with the rsi_reversion baseline's Wilder RSI
    model = RsiReversion("rsi", {"period": 14}, bars.symbols, seed=0)
    _, info = model._weights(bars)
    got = x[:, :, names.index("rsi_14")]
    np.testing.assert_allclose(got[15:], info["rsi"][15:], rtol=1e-9)
    # ranks: 0 for the lowest 5-bar return, 1 for the highest, per row
    ranks, ret5 = x[:, :, names.index("rank_ret_5")], x[:, :, names.index("ret_5")]
    row = 100
    assert ranks[row, np.argmin(ret5[row])] == 0.0 and ranks[row, np.argmax(ret5[row])] == 1.0


def test_time_of_day_is_new_york_wall_clock():
    bars = market(n_symbols=1, bars=30)
    x = FeatureEngine(["tod_sin", "tod_cos"]).transform(bars)
    first = pd.Timestamp(bars.timestamps[0], tz="UTC").tz_convert("America/New_York")
    assert (first.hour, first.minute) == (9, 30)
    angle = 2 * math.pi * (9 * 60 + 30) / 1440
    assert x[0, 0, 0] == pytest.approx(math.sin(angle)) and x[0, 0, 1] == pytest.approx(math.cos(angle))


def test_bad_names_are_refused_with_the_known_list():
    with pytest.raises(ValueError, match="unknown feature.*rsi_15.*known features: ret_1"):
        FeatureEngine(["rsi_15"])
    with pytest.raises(ValueError, match="twice"):
        FeatureEngine(["ret_1", "ret_1"])
    assert set(DESCRIPTIONS) == set(ALL_FEATURES)


def test_a_stream_refuses_a_chunk_of_other_symbols():
    stream = FeatureEngine().stream()
    stream.update(market(n_symbols=3, bars=10))
    with pytest.raises(ValueError, match="4 symbols"):
        stream.update(market(n_symbols=4, bars=10))


def test_time_of_day_equals_pandas_wall_clock_across_dst_changes():
    """The per-hour offset cache gives exactly what converting each timestamp with pandas gives,
    on random instants and on every second around New York's 2024 and 2025 clock changes."""
    from titan_ray.features.pipeline import _time_of_day

    rng = np.random.default_rng(3)
    edges = [pd.Timestamp(t, tz="America/New_York").tz_convert("UTC").value
             for t in ("2024-03-10 01:59:00", "2024-11-03 00:59:00", "2025-03-09 01:59:00", "2025-11-02 00:59:00")]
    ts = np.concatenate([rng.integers(-2 * 10**18, 4 * 10**18, 5000),
                         *[np.arange(e, e + 3 * 3600 * 10**9, 10**9) for e in edges]]).astype(np.int64)
    local = pd.DatetimeIndex(pd.to_datetime(ts, unit="ns", utc=True)).tz_convert("America/New_York")
    minutes = (local.hour * 60 + local.minute + local.second / 60).to_numpy(dtype=np.float64)
    angle = 2 * math.pi * minutes / 1440.0
    sin, cos = _time_of_day(ts)
    assert np.array_equal(sin, np.sin(angle)) and np.array_equal(cos, np.cos(angle))
