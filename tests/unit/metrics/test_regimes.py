"""The regime classifier: no look-ahead, accuracy against the synthetic market's true regimes,
and exact figures per regime on hand-built examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from titan_ray.config import DataConfig, SyntheticConfig
from titan_ray.data.synthetic import SyntheticProvider, true_regimes
from titan_ray.metrics.performance import sharpe
from titan_ray.metrics.regimes import (
    REGIMES,
    UNKNOWN,
    accuracy,
    classify,
    encode,
    market_index,
    regime_metrics,
)

SMALL = {"trend_bars": 10, "vol_bars": 10, "vol_history": 20}


def synthetic_index(scenario: str, seed: int, bars: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    config = DataConfig(bars=bars, synthetic=SyntheticConfig(scenario=scenario))  # type: ignore[arg-type]
    return market_index(SyntheticProvider(config, seed).load().bars.close), true_regimes(config, seed)


def test_labels_encode_trend_then_volatility() -> None:
    assert REGIMES == ("up_calm", "up_turbulent", "down_calm", "down_turbulent")
    down = np.array([False, False, True, True])
    turbulent = np.array([False, True, False, True])
    labels = encode(down, turbulent)
    assert labels.dtype == np.int8
    assert [REGIMES[i] for i in labels] == list(REGIMES)


# --- no look-ahead ---------------------------------------------------------------------------


def _perturbed_future(close: np.ndarray, cut: int, rng: np.random.Generator) -> np.ndarray:
    """``close`` with bars from ``cut`` on changed in one of several ways."""
    future = close.copy()
    n = len(close) - cut
    kind = rng.integers(4)
    if kind == 0:  # a different path
        future[cut:] = close[cut - 1] * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
    elif kind == 1:  # a crash
        future[cut:] = close[cut:] * 1e-3
    elif kind == 2:  # missing bars
        future[cut:][rng.random(n) < 0.5] = np.nan
    else:  # noise on every bar
        future[cut:] = close[cut:] * np.exp(rng.normal(0, 0.2, n))
    return future


@pytest.mark.parametrize("params", [{}, SMALL], ids=["defaults", "small-windows"])
def test_changing_the_future_never_changes_an_earlier_label(params: dict[str, int]) -> None:
    rng = np.random.default_rng(11)
    close, _ = synthetic_index("volatility_clustering", 3, bars=2000)
    close[rng.random(len(close)) < 0.02] = np.nan  # some missing bars in the past too
    labels = classify(close, **params)
    assert (labels != UNKNOWN).sum() > 1000
    for _ in range(40):
        cut = int(rng.integers(1, len(close)))
        changed = classify(_perturbed_future(close, cut, rng), **params)
        assert np.array_equal(changed[:cut], labels[:cut]), cut


def test_changing_future_bars_never_changes_an_earlier_index_level() -> None:
    rng = np.random.default_rng(5)
    panel = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (500, 6)), axis=0))
    panel[rng.random(panel.shape) < 0.05] = np.nan
    level = market_index(panel)
    for _ in range(30):
        cut = int(rng.integers(1, len(panel)))
        future = panel.copy()
        future[cut:] *= np.exp(rng.normal(0, 0.3, future[cut:].shape))
        future[cut:][rng.random(future[cut:].shape) < 0.3] = np.nan
        assert np.array_equal(market_index(future)[:cut], level[:cut], equal_nan=True), cut


# --- the rule on hand-built series -----------------------------------------------------------


def test_warm_up_is_unknown_until_both_axes_are() -> None:
    close, _ = synthetic_index("default", 1, bars=1000)
    labels = classify(close)
    # vol needs 25 of its 50 returns (bar 25), then the calm level 500 vol values (bar 524)
    first = int(np.flatnonzero(labels != UNKNOWN)[0])
    assert first == 524
    assert (labels[first:] != UNKNOWN).all()
    assert set(np.unique(labels[first:])) <= {0, 1, 2, 3}
    assert classify(close, trend_bars=600)[599] == UNKNOWN and classify(close, trend_bars=600)[600] != UNKNOWN


def test_a_rise_then_a_turbulent_fall_reads_up_calm_then_down_turbulent() -> None:
    t = np.arange(150)
    wiggle = np.where(t % 2 == 0, 1.0, -1.0)
    returns = np.where(t < 100, 0.002 + 0.01 * wiggle, -0.002 + 0.04 * wiggle)
    labels = classify(100 * np.exp(np.cumsum(returns)), **SMALL)
    # vol needs 5 of its 10 returns (bar 5), then the calm level 20 vol values (bar 24)
    assert (labels[:24] == UNKNOWN).all()
    assert (labels[24:100] == REGIMES.index("up_calm")).all()
    assert (labels[115:] == REGIMES.index("down_turbulent")).all()


def test_classify_rejects_a_panel_and_bad_windows_naming_them() -> None:
    with pytest.raises(ValueError, match="market_index"):
        classify(np.ones((10, 2)))
    with pytest.raises(ValueError, match="trend_bars"):
        classify(np.ones(10), trend_bars=0)
    with pytest.raises(ValueError, match="vol_bars"):
        classify(np.ones(10), vol_bars=1)
    with pytest.raises(ValueError, match="positive"):
        classify(np.array([1.0, 0.0, 2.0]))


def test_market_index_compounds_the_mean_return_of_the_symbols_present() -> None:
    closes = np.array(
        [
            [np.nan, np.nan],
            [100.0, 50.0],
            [110.0, 50.0],
            [110.0, np.nan],  # the second symbol is missing: the mean is over the first alone
            [121.0, 55.0],  # 55 is measured against 50, its last known close
            [np.nan, np.nan],  # nothing trades: flat
        ]
    )
    level = market_index(closes)
    assert np.isnan(level[0])
    assert level[1:] == pytest.approx([1.0, 1.05, 1.05, 1.05 * 1.1, 1.05 * 1.1], rel=1e-15)


# --- figures per regime ----------------------------------------------------------------------


def test_regime_metrics_on_a_hand_built_example() -> None:
    returns = np.array([0.5, -0.05, 0.02, np.nan, 0.03, 0.01, 0.04])
    labels = np.array([-1, 0, 0, 0, 3, 1, 3])
    out = regime_metrics(returns, labels, periods=252)
    assert list(out) == list(REGIMES)
    up_calm = out["up_calm"]  # -0.05 and 0.02; the NaN bar and the -1 bar are left out
    assert up_calm["n_bars"] == 2
    assert up_calm["total_return"] == pytest.approx(0.95 * 1.02 - 1, rel=1e-14)
    assert up_calm["mean_return"] == pytest.approx(-0.015, rel=1e-14)
    assert up_calm["sharpe"] == pytest.approx(-0.015 / (0.07 / math.sqrt(2)) * math.sqrt(252), rel=1e-12)
    assert up_calm["sharpe"] == sharpe(np.array([-0.05, 0.02]), 252)
    down_turbulent = out["down_turbulent"]
    assert down_turbulent["n_bars"] == 2
    assert down_turbulent["total_return"] == pytest.approx(1.03 * 1.04 - 1, rel=1e-14)
    assert down_turbulent["mean_return"] == pytest.approx(0.035, rel=1e-14)
    assert down_turbulent["sharpe"] == pytest.approx(0.035 / (0.01 / math.sqrt(2)) * math.sqrt(252), rel=1e-12)
    up_turbulent = out["up_turbulent"]  # one bar: no Sharpe
    assert (up_turbulent["n_bars"], up_turbulent["total_return"], up_turbulent["mean_return"]) == (1, 1.01 - 1, 0.01)
    assert math.isnan(up_turbulent["sharpe"])
    down_calm = out["down_calm"]
    assert (down_calm["n_bars"], down_calm["total_return"]) == (0, 0.0)
    assert math.isnan(down_calm["mean_return"]) and math.isnan(down_calm["sharpe"])


def test_regime_metrics_rejects_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="returns and labels"):
        regime_metrics(np.zeros(3), np.zeros(4, dtype=np.int8), 252)


def test_accuracy_on_a_hand_built_example() -> None:
    predicted = np.array([-1, 0, 1, 2, 3])
    true = np.array([3, 0, 0, 3, 3])
    # scored bars: 0/0 right; 1/0 trend right, volatility wrong; 2/3 the same; 3/3 right
    assert accuracy(predicted, true) == {"overall": 0.5, "trend": 1.0, "volatility": 0.5, "n": 4.0}
    empty = accuracy(np.array([-1, -1]), np.array([0, 1]))
    assert empty["n"] == 0.0 and math.isnan(empty["overall"])


# --- accuracy against the synthetic market's true regimes ------------------------------------

# Thresholds sit below the lowest figure measured over seeds 0-19 (5000 bars, default windows);
# the means are in brackets. Chance is 0.5 per axis and 0.25 overall.
ACCURACY_FLOORS = [
    ("trending", "trend", 0.80),  # lowest 0.84 (mean 0.89)
    ("trending", "overall", 0.60),  # lowest 0.66 (mean 0.81)
    ("volatility_clustering", "volatility", 0.72),  # lowest 0.78 (mean 0.82)
    ("crash_and_recovery", "volatility", 0.85),  # lowest 0.90 (mean 0.95)
    ("default", "volatility", 0.65),  # lowest 0.72 (mean 0.90)
    ("random_walk", "volatility", 0.99),  # lowest 1.00: never turbulent, never called so
]


@pytest.mark.parametrize(("scenario", "axis", "floor"), ACCURACY_FLOORS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classifier_beats_chance_on_the_synthetic_scenarios(scenario: str, axis: str, floor: float, seed: int) -> None:
    close, truth = synthetic_index(scenario, seed)
    scores = accuracy(classify(close), truth)
    print(f"{scenario} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    assert scores["n"] > 4000
    assert scores[axis] > floor
