"""Labels look forward exactly ``horizon`` bars and no further; triple-barrier picks the first touch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from titan_ray.ml.labels import forward_returns, rolling_vol, triple_barrier


def test_forward_returns_values_and_unknown_tail():
    close = np.array([[100.0, 50.0], [110.0, 50.0], [121.0, 55.0], [100.0, 60.0]])
    y = forward_returns(close, 2)
    assert y[0, 0] == pytest.approx(math.log(121 / 100)) and y[1, 1] == pytest.approx(math.log(60 / 50))
    assert np.isnan(y[2:]).all()
    d = forward_returns(close, 1, demean=True)
    np.testing.assert_allclose(np.nansum(d[:3], axis=1), 0.0, atol=1e-15)
    with pytest.raises(ValueError, match="horizon"):
        forward_returns(close, 0)


def test_a_label_depends_only_on_the_next_horizon_bars():
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (200, 3)), axis=0))
    h, cut = 5, 120
    later = close.copy()
    later[cut:] *= 1.3
    for fn in (lambda c: forward_returns(c, h), lambda c: triple_barrier(c, h, width=1.0).label):
        a, b = fn(close), fn(later)
        # rows whose window [t, t+h] ends before the change are untouched
        assert np.array_equal(a[: cut - h], b[: cut - h], equal_nan=True)


def test_triple_barrier_first_touch_wins():
    # vol is tiny and constant until bar 30, then three paths: up, down, sideways
    base = 100 * np.exp(np.cumsum(np.tile([0.001, -0.001], 15)))
    up = np.concatenate([base, base[-1] * np.exp([0.0, 0.01, -0.05, 0.0])])
    down = np.concatenate([base, base[-1] * np.exp([-0.01, 0.05, 0.0, 0.0])])
    flat = np.concatenate([base, base[-1] * np.exp([0.0002, -0.0002, 0.0001, 0.0])])
    close = np.column_stack([up, down, flat])
    tb = triple_barrier(close, 3, width=1.0, vol_window=20)
    t = len(base) - 1  # last bar of the quiet part
    assert tb.label[t].tolist() == [1.0, -1.0, 0.0]
    assert tb.exit_offset[t].tolist() == [2.0, 1.0, 3.0]
    assert tb.ret[t, 0] == pytest.approx(0.01)
    assert np.isnan(tb.label[:20]).all()  # no volatility estimate yet
    assert np.isnan(tb.label[-3:]).all()  # window runs past the data


def test_rolling_vol_matches_numpy():
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (60, 2)), axis=0))
    v = rolling_vol(close, 10)
    r = np.diff(np.log(close), axis=0)
    assert v[30, 1] == pytest.approx(np.std(r[20:30, 1], ddof=1))
    assert np.isnan(v[:10]).all() and np.isfinite(v[10:]).all()
