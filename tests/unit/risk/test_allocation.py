"""Allocation across return streams: HRP matches PyPortfolioOpt's ``HRPOpt``, inverse volatility a hand
computation, and the degenerate windows (a flat stream, one stream, missing rows) have a defined answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pypfopt import HRPOpt

from titan_ray.risk.allocation import equal_weights, hrp_weights, inverse_vol_weights


def clustered(seed: int, t: int, clusters: list[int], *, within: float = 0.8) -> np.ndarray:
    """(t, M) returns in clusters of the given sizes: a market factor, a factor per cluster, noise, and
    a different volatility per stream."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0, 0.01, t)
    cols = []
    for size in clusters:
        factor = rng.normal(0, 0.01, t)
        for _ in range(size):
            noise = rng.normal(0, 0.01, t)
            vol = rng.uniform(0.5, 3.0)
            cols.append(vol * (0.3 * market + within * factor + (1 - within) * noise))
    return np.column_stack(cols)


def reference(returns: np.ndarray) -> np.ndarray:
    names = [f"m{i:02d}" for i in range(returns.shape[1])]  # sorted as the columns are: HRPOpt sorts by name
    weights = HRPOpt(pd.DataFrame(returns, columns=names)).optimize()
    return np.array([weights[n] for n in names])


@pytest.mark.parametrize(("seed", "t", "clusters", "within"), [
    (1, 60, [3, 2], 0.8),
    (2, 250, [4, 3, 3], 0.7),
    (3, 120, [1, 1, 1, 1, 1], 0.0),  # no clusters: market and noise only
    (4, 500, [5, 2, 6, 1], 0.9),
    (5, 40, [2, 2, 2, 2, 2, 2], 0.5),
    (6, 30, [7], 0.6),  # one cluster
    (9, 12, [6, 5, 4], 0.8),  # fewer rows than streams: a singular covariance
])
def test_hrp_weights_are_pypfopts(seed, t, clusters, within):
    r = clustered(seed, t, clusters, within=within)
    got = hrp_weights(r)
    np.testing.assert_allclose(got, reference(r), rtol=0, atol=1e-10)
    assert np.all(got > 0) and abs(got.sum() - 1) < 1e-12


def test_hrp_weights_are_pypfopts_on_plain_random_returns():
    rng = np.random.default_rng(11)
    for m in (2, 3, 8, 17):
        r = rng.standard_t(4, size=(90, m)) * rng.uniform(0.001, 0.03, m)
        np.testing.assert_allclose(hrp_weights(r), reference(r), rtol=0, atol=1e-10)


def test_hrp_puts_less_in_a_cluster_of_look_alikes_than_inverse_vol_does():
    # three near copies of one stream and one stream apart, all of the same volatility: inverse volatility
    # gives each a quarter, so 3/4 to what is one bet; HRP's bisection (of the quasi-diagonal order, in
    # halves, as López de Prado and PyPortfolioOpt do) sets the lone stream against a look-alike
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 0.01, 300), rng.normal(0, 0.01, 300)
    r = np.column_stack([a, a + rng.normal(0, 1e-4, 300), a + rng.normal(0, 1e-4, 300), b])
    hrp, ivol = hrp_weights(r), inverse_vol_weights(r)
    assert ivol[:3].sum() == pytest.approx(0.75, abs=0.01)
    assert hrp[3] > ivol[3] + 0.05 and hrp[:3].sum() < 0.7


def test_inverse_vol_weights_by_hand():
    r = np.array([[0.01, 0.02, -0.01],
                  [-0.01, 0.00, 0.03],
                  [0.02, -0.02, 0.00],
                  [0.00, 0.04, -0.02]])
    sd = [np.sqrt(sum((x - col.mean()) ** 2 for x in col) / (len(col) - 1)) for col in r.T]
    inv = [1 / s for s in sd]
    expected = [v / sum(inv) for v in inv]
    np.testing.assert_allclose(inverse_vol_weights(r), expected, rtol=1e-14)
    # twice the volatility, half the weight
    np.testing.assert_allclose(inverse_vol_weights(np.column_stack([r[:, 0], 2 * r[:, 0]])), [2 / 3, 1 / 3])


def test_equal_weights():
    np.testing.assert_array_equal(equal_weights(4), [0.25] * 4)
    assert equal_weights(1).tolist() == [1.0]
    with pytest.raises(ValueError, match="at least one stream"):
        equal_weights(0)


@pytest.mark.parametrize("allocate", [hrp_weights, inverse_vol_weights])
def test_a_stream_that_never_moves_gets_nothing_and_the_others_share_as_without_it(allocate):
    r = clustered(7, 100, [2, 2])
    with_flat = np.column_stack([r[:, :2], np.zeros(100), r[:, 2:]])
    got = allocate(with_flat)
    assert got[2] == 0.0
    np.testing.assert_allclose(np.delete(got, 2), allocate(r), rtol=0, atol=1e-15)
    assert np.isfinite(got).all() and got.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("allocate", [hrp_weights, inverse_vol_weights])
def test_degenerate_windows(allocate):
    r = clustered(8, 50, [3])
    np.testing.assert_array_equal(allocate(r[:, :1]), [1.0])  # one stream: all of it
    np.testing.assert_array_equal(allocate(np.zeros((50, 3))), equal_weights(3))  # nothing moves: equal
    np.testing.assert_array_equal(allocate(r[:1]), equal_weights(3))  # one row: no variance defined
    # one stream moving, the rest flat: all of it to that one
    np.testing.assert_array_equal(allocate(np.column_stack([r[:, 0], np.zeros((50, 2))])), [1.0, 0.0, 0.0])
    # rows with a missing value are left out
    holes = r.copy()
    holes[[3, 17, 40], [0, 2, 1]] = np.nan
    np.testing.assert_allclose(allocate(holes), allocate(np.delete(r, [3, 17, 40], axis=0)), rtol=0, atol=0)
    assert np.isfinite(allocate(np.full((5, 3), np.nan))).all()


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(T, M\)"):
        hrp_weights(np.zeros(10))
    with pytest.raises(ValueError, match=r"\(T, M\)"):
        inverse_vol_weights(np.zeros((10, 0)))
