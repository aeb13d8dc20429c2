"""Drift: PSI and KS of a live window against a reference profile.

Expected values come from the definitions, written again here: PSI = sum((a - e) * ln(a / e)),
the KS statistic = the largest gap between two empirical CDFs, and the PSI that a known shift of a
normal distribution gives on its deciles (from the normal CDF, in ``_normal_decile_psi``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from titan_ray.metrics.drift import MIN_LIVE, ColumnDrift, Profile, live_props, psi

NAMES = ("normal", "lognormal", "uniform")


def _draw(rng: np.random.Generator, n: int, *, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """n rows of three differently shaped columns; shift and scale are in units of each column's sd."""
    lognormal_sd = math.sqrt((math.e - 1) * math.e)
    uniform_sd = 1 / math.sqrt(12)
    return np.column_stack(
        [
            rng.normal(0.0, 1.0, n) * scale + shift,
            (rng.lognormal(0.0, 1.0, n) - math.exp(0.5)) * scale + math.exp(0.5) + shift * lognormal_sd,
            (rng.uniform(0.0, 1.0, n) - 0.5) * scale + 0.5 + shift * uniform_sd,
        ]
    )


def _normal_decile_psi(shift: float, scale: float) -> float:
    """PSI of N(shift, scale^2) against N(0, 1) on the deciles of N(0, 1), from the normal CDF."""
    cuts = norm.ppf(np.arange(1, 10) / 10)
    a = np.diff(np.concatenate(([0.0], norm.cdf((cuts - shift) / scale), [1.0])))
    e = np.full(10, 0.1)
    return float(np.sum((a - e) * np.log(a / e)))


def _ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """sup |F_x - F_y|, evaluated at every observed point."""
    points = np.concatenate([x, y])
    fx = np.searchsorted(np.sort(x), points, side="right") / x.size
    fy = np.searchsorted(np.sort(y), points, side="right") / y.size
    return float(np.max(np.abs(fx - fy)))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return _draw(np.random.default_rng(11), 5000)


@pytest.fixture(scope="module")
def profile(reference: np.ndarray) -> Profile:
    return Profile.from_rows(reference, NAMES, seed=3)


# --- psi and live_props -------------------------------------------------------------------------


def test_psi_of_identical_proportions_is_zero() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert psi(p, p) == 0.0
    assert psi(p * 50, p * 7) == 0.0  # counts are normalised first


def test_psi_matches_a_hand_computation_on_three_bins() -> None:
    # (0.4 - 0.5) ln(0.4 / 0.5) + (0.4 - 0.3) ln(0.4 / 0.3) + 0 = 0.1 (ln 1.25 + ln 4/3) = 0.1 ln(5/3)
    want = 0.1 * math.log(5 / 3)
    assert psi(np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])) == pytest.approx(want, rel=1e-12)
    assert psi(np.array([50, 30, 20]), np.array([4, 4, 2])) == pytest.approx(want, rel=1e-12)


def test_psi_floors_an_empty_bin_so_it_stays_finite() -> None:
    eps = 1e-4
    a = np.array([1.0, eps]) / (1.0 + eps)  # [1, 0] floored, then renormalised
    e = np.array([0.5, 0.5])
    want = float(np.sum((a - e) * np.log(a / e)))
    got = psi(e, np.array([1.0, 0.0]), eps=eps)
    assert math.isfinite(got)
    assert got == pytest.approx(want, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12).filter(lambda v: sum(v) > 0),
    st.integers(0, 2**32 - 1),
)
def test_psi_is_non_negative_and_symmetric(expected: list[float], seed: int) -> None:
    actual = np.random.default_rng(seed).dirichlet(np.ones(len(expected)))
    forward = psi(np.array(expected), actual)
    assert forward >= 0.0
    assert psi(actual, np.array(expected)) == pytest.approx(forward, rel=1e-9, abs=1e-12)


def test_psi_rejects_bad_input_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="expected has 3 bins and actual has 2"):
        psi(np.array([1, 1, 1]), np.array([1, 1]))
    with pytest.raises(ValueError, match="actual sums to 0"):
        psi(np.array([1, 1]), np.array([0, 0]))
    with pytest.raises(ValueError, match="expected must hold finite, non-negative"):
        psi(np.array([1, -1]), np.array([1, 1]))
    with pytest.raises(ValueError, match="eps must be > 0"):
        psi(np.array([1, 1]), np.array([1, 1]), eps=0.0)


def test_live_props_counts_bins_closed_on_the_right_and_drops_non_finite() -> None:
    edges = np.array([-np.inf, 0.0, 1.0, np.inf])
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan, np.inf])
    # (-inf, 0] holds -1 and 0; (0, 1] holds 0.5 and 1; (1, inf) holds 2; nan and inf are dropped
    np.testing.assert_array_equal(live_props(edges, values), np.array([2, 2, 1]) / 5)
    np.testing.assert_array_equal(live_props(edges, np.array([np.nan])), np.zeros(3))


# --- Profile.from_rows ----------------------------------------------------------------------------


def test_edges_are_the_reference_quantiles_and_props_are_equal_shares() -> None:
    rows = np.arange(1.0, 101.0).reshape(-1, 1)
    p = Profile.from_rows(rows, ["x"], bins=4)
    # linear interpolation on 1..100: the q-quantile sits at 1 + 99 q
    np.testing.assert_array_equal(p.edges[0], [-np.inf, 25.75, 50.5, 75.25, np.inf])
    np.testing.assert_array_equal(p.props[0], [0.25] * 4)
    assert p.n == (100,)
    np.testing.assert_array_equal(p.sample[0], rows[:, 0])  # fewer than max_sample: all of them


def test_sample_is_a_seeded_draw_without_replacement(reference: np.ndarray) -> None:
    a = Profile.from_rows(reference, NAMES, max_sample=500, seed=7)
    assert a == Profile.from_rows(reference, NAMES, max_sample=500, seed=7)
    assert a != Profile.from_rows(reference, NAMES, max_sample=500, seed=8)
    for j, s in enumerate(a.sample):
        assert s.dtype == np.float64 and s.size == 500
        assert np.unique(s).size == 500  # continuous values: no value drawn twice
        assert np.isin(s, reference[:, j]).all()
    assert a.n == (5000, 5000, 5000)


def test_profile_arrays_are_read_only(profile: Profile) -> None:
    with pytest.raises(ValueError):
        profile.props[0][0] = 1.0


def test_from_rows_errors_name_the_column() -> None:
    rows = np.random.default_rng(0).normal(size=(50, 2))
    rows[5:, 1] = np.nan
    with pytest.raises(ValueError, match="column 'thin' has 5 finite values.*bins=10"):
        Profile.from_rows(rows, ["fat", "thin"])
    with pytest.raises(ValueError, match="names has 3 entries but rows has 2 columns"):
        Profile.from_rows(rows, ["a", "b", "c"])
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        Profile.from_rows(rows, ["a", "b"], bins=1)
    with pytest.raises(ValueError, match="rows must be"):
        Profile.from_rows(rows[:, 0], ["a"])


# --- Profile.compare ------------------------------------------------------------------------------


def test_a_sample_of_the_same_distribution_shows_no_drift(profile: Profile) -> None:
    live = _draw(np.random.default_rng(12), 2000)
    drift = profile.compare(live)
    assert [d.name for d in drift] == list(NAMES)
    for d in drift:
        assert d.n_live == 2000
        assert d.psi is not None and 0.0 <= d.psi < 0.1, d
        assert d.p_value is not None and d.p_value > 0.01, d


def test_a_one_sd_mean_shift_is_significant(profile: Profile) -> None:
    assert _normal_decile_psi(1.0, 1.0) > 0.9  # the population value the sample should approach
    drift = profile.compare(_draw(np.random.default_rng(13), 2000, shift=1.0))
    for d in drift:
        assert d.psi is not None and d.psi > 0.25, d
        assert d.p_value is not None and d.p_value < 1e-6, d


def test_a_variance_times_three_is_caught_by_psi(profile: Profile) -> None:
    want = _normal_decile_psi(0.0, math.sqrt(3))  # 0.33: same mean, wider
    assert want > 0.25
    drift = profile.compare(_draw(np.random.default_rng(14), 2000, scale=math.sqrt(3)))
    normal = drift[0]
    assert normal.psi == pytest.approx(want, abs=0.08)
    for d in drift:
        assert d.psi is not None and d.psi > 0.25, d


def test_ks_statistic_is_the_largest_cdf_gap_against_the_stored_sample(profile: Profile) -> None:
    live = _draw(np.random.default_rng(15), 300, shift=0.3)
    for j, d in enumerate(profile.compare(live)):
        assert d.ks == pytest.approx(_ks_statistic(live[:, j], profile.sample[j]), abs=1e-12)


def test_a_constant_column_works() -> None:
    rng = np.random.default_rng(1)
    rows = np.column_stack([np.full(500, 5.0), rng.normal(size=500)])
    p = Profile.from_rows(rows, ["const", "x"])
    np.testing.assert_array_equal(p.edges[0], [-np.inf, 5.0, np.inf])
    np.testing.assert_array_equal(p.props[0], [1.0, 0.0])
    same = p.compare(np.column_stack([np.full(100, 5.0), rng.normal(size=100)]))[0]
    assert (same.psi, same.ks, same.p_value) == (0.0, 0.0, 1.0)
    moved = p.compare(np.column_stack([np.full(100, 6.0), rng.normal(size=100)]))[0]
    assert moved.psi is not None and moved.psi > 0.25
    assert moved.ks == 1.0


def test_non_finite_rows_are_dropped(reference: np.ndarray, profile: Profile) -> None:
    dirty = reference.copy()
    dirty[::7, 0] = np.nan
    dirty[::11, 2] = np.inf
    p = Profile.from_rows(dirty, NAMES, seed=3)
    assert p.n == (5000 - len(range(0, 5000, 7)), 5000, 5000 - len(range(0, 5000, 11)))
    for j, name in enumerate(NAMES):
        column = dirty[:, j]
        alone = Profile.from_rows(column[np.isfinite(column)].reshape(-1, 1), [name], seed=3)
        assert alone.n[0] == p.n[j]
        np.testing.assert_array_equal(p.edges[j], alone.edges[0])
        np.testing.assert_array_equal(p.props[j], alone.props[0])
        np.testing.assert_array_equal(p.sample[j], alone.sample[0])

    live = _draw(np.random.default_rng(16), 1000)
    noisy = np.vstack([live, np.full((40, 3), np.nan)])
    assert profile.compare(noisy) == profile.compare(live)


def test_a_panel_is_read_as_its_flattened_rows(reference: np.ndarray) -> None:
    panel = reference.reshape(1000, 5, 3)
    assert Profile.from_rows(panel, NAMES) == Profile.from_rows(reference, NAMES)
    profile = Profile.from_rows(panel, NAMES)
    live = _draw(np.random.default_rng(17), 600, shift=0.2)
    assert profile.compare(live.reshape(200, 3, 3)) == profile.compare(live)


def test_too_few_live_values_give_no_statistics(profile: Profile) -> None:
    live = _draw(np.random.default_rng(18), MIN_LIVE)
    live[0, 1] = np.nan  # column 1 keeps MIN_LIVE - 1 finite values
    drift = profile.compare(live)
    assert drift[1] == ColumnDrift("lognormal", None, None, None, MIN_LIVE - 1)
    assert drift[0].n_live == MIN_LIVE
    assert drift[0].psi is not None and drift[0].ks is not None and drift[0].p_value is not None


def test_compare_rejects_other_columns(profile: Profile) -> None:
    with pytest.raises(ValueError, match="live has 2 columns but the profile has 3"):
        profile.compare(np.zeros((50, 2)))


def test_column_drift_to_dict_is_plain_json(profile: Profile) -> None:
    d = profile.compare(_draw(np.random.default_rng(19), 100))[0].to_dict()
    assert set(d) == {"name", "psi", "ks", "p_value", "n_live"}
    assert json.loads(json.dumps(d, allow_nan=False)) == d


# --- JSON -----------------------------------------------------------------------------------------


def test_json_round_trip_gives_identical_comparisons(profile: Profile) -> None:
    rows = np.column_stack([np.full(100, 2.5), np.random.default_rng(2).normal(size=100)])
    for p in (profile, Profile.from_rows(rows, ["const", "x"])):
        text = json.dumps(p.to_json(), allow_nan=False)  # plain JSON: no NaN or Infinity tokens
        back = Profile.from_json(json.loads(text))
        assert back == p
        live = np.random.default_rng(20).normal(1.0, 2.0, size=(400, len(p.names)))
        assert back.compare(live) == p.compare(live)


def test_from_json_rejects_what_to_json_did_not_write(profile: Profile) -> None:
    d = profile.to_json()
    with pytest.raises(ValueError, match=r"unknown \['extra'\]"):
        Profile.from_json({**d, "extra": 1})
    with pytest.raises(ValueError, match="version 99 is not supported"):
        Profile.from_json({**d, "version": 99})
    broken = {**d, "edges": [e[1:] for e in d["edges"]]}
    with pytest.raises(ValueError, match="column 'normal': edges must be strictly increasing from -inf"):
        Profile.from_json(broken)
