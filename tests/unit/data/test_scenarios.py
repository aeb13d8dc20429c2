"""The synthetic market's named scenarios and their true regimes (``true_regimes``)."""

from __future__ import annotations

from typing import Any, get_args

import numpy as np
import pytest
from pydantic import ValidationError

from titan_ray.config import DataConfig, SyntheticConfig
from titan_ray.data.synthetic import SyntheticProvider, true_regimes
from titan_ray.domain.bars import FIELDS, BarBatch
from titan_ray.metrics.regimes import REGIMES, market_index

SCENARIOS: tuple[str, ...] = get_args(SyntheticConfig.model_fields["scenario"].annotation)
SHAPED = tuple(s for s in SCENARIOS if s != "default")
UP_CALM, DOWN_TURBULENT = REGIMES.index("up_calm"), REGIMES.index("down_turbulent")


def data(scenario: str = "default", synthetic: dict[str, Any] | None = None, **fields: Any) -> DataConfig:
    return DataConfig(synthetic=SyntheticConfig(scenario=scenario, **(synthetic or {})), **fields)


def bars(config: DataConfig, seed: int = 7) -> BarBatch:
    return SyntheticProvider(config, seed).load().bars


def same_bytes(a: BarBatch, b: BarBatch) -> bool:
    return all(getattr(a, f).tobytes() == getattr(b, f).tobytes() for f in ("timestamps", *FIELDS))


def test_the_scenarios_are_the_documented_six() -> None:
    assert SCENARIOS == (
        "default", "random_walk", "trending", "mean_reverting", "crash_and_recovery", "volatility_clustering"
    )
    assert SyntheticConfig().scenario == "default"


@pytest.mark.parametrize("synthetic", [{}, {"random_walk": True}, {"signal": 0.3, "signal_lag": 7},
                                       {"regime_switch_prob": 0.0, "annual_drift": -0.1}])
def test_default_scenario_is_the_market_without_the_field(synthetic: dict[str, Any]) -> None:
    without = DataConfig(bars=1500, n_symbols=4, synthetic=SyntheticConfig(**synthetic))
    with_field = data("default", bars=1500, n_symbols=4, synthetic=synthetic)
    assert "scenario" not in without.synthetic.model_fields_set
    assert same_bytes(bars(without, 3), bars(with_field, 3))


@pytest.mark.parametrize("scenario", SHAPED)
def test_each_scenario_shapes_the_market(scenario: str) -> None:
    assert not np.array_equal(bars(data(scenario)).close, bars(data("default")).close)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_is_deterministic_per_seed_and_sane(scenario: str) -> None:
    a, b, other = bars(data(scenario), 5), bars(data(scenario), 5), bars(data(scenario), 6)
    assert same_bytes(a, b)
    assert not np.array_equal(a.close, other.close)
    assert np.array_equal(a.timestamps, other.timestamps)
    assert a.close.shape == (5000, 12)
    assert np.isfinite(a.close).all() and (a.low > 0).all()
    assert (a.high >= np.maximum(a.open, a.close)).all() and (a.low <= np.minimum(a.open, a.close)).all()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_tiny_market_still_generates(scenario: str) -> None:
    assert bars(data(scenario, bars=2, n_symbols=1)).close.shape == (2, 1)
    assert true_regimes(data(scenario, bars=2, n_symbols=1), 7).shape == (2,)


@pytest.mark.parametrize(
    ("scenario", "preset"),
    [
        ("random_walk", {"random_walk": True}),
        ("mean_reverting", {"signal": -0.4}),
        ("volatility_clustering", {"regime_switch_prob": 0.01, "high_vol_multiplier": 4.0}),
    ],
)
def test_a_preset_scenario_is_exactly_its_documented_fields(scenario: str, preset: dict[str, Any]) -> None:
    by_fields = DataConfig(bars=2000, n_symbols=5, synthetic=SyntheticConfig(**preset))
    assert same_bytes(bars(data(scenario, bars=2000, n_symbols=5)), bars(by_fields))


def test_mean_reverting_prices_revert() -> None:
    def variance_ratio(close: np.ndarray, h: int = 10) -> float:
        r = np.diff(np.log(close), axis=0)
        r = r - r.mean(axis=1, keepdims=True)  # the idiosyncratic part, where the signal lives
        rh = np.add.reduceat(r, np.arange(0, len(r) - h, h), axis=0)
        return float((rh.var(axis=0) / (h * r.var(axis=0))).mean())

    reverting, default = variance_ratio(bars(data("mean_reverting")).close), variance_ratio(bars(data()).close)
    print(f"variance ratio over 10 bars: mean_reverting {reverting:.3f}, default {default:.3f}")
    assert reverting < 0.6  # measured 0.38 (seed 7: see the print)
    assert default > 0.85  # measured 0.96: a random walk is near 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_crash_and_recovery_falls_hard_in_the_middle_and_recovers_part(seed: int) -> None:
    index = market_index(bars(data("crash_and_recovery"), seed).close)
    drawdown = index / np.maximum.accumulate(index) - 1.0
    trough = int(np.argmin(index))
    print(f"seed {seed}: max drawdown {drawdown.min():.3f} at bar {trough}, end / trough {index[-1] / index[trough]:.3f}")
    assert drawdown.min() < -0.20
    assert 0.4 * len(index) < trough < 0.65 * len(index)
    assert index[-1] > 1.1 * index[trough]


def test_crash_and_recovery_true_regimes_mark_the_crash_down_and_turbulent() -> None:
    labels = true_regimes(data("crash_and_recovery", bars=1000), 7)
    crash = np.flatnonzero(labels == DOWN_TURBULENT)
    assert np.array_equal(crash, np.arange(480, 520))  # the middle 4% of 1000 bars
    assert labels[0] == UP_CALM and labels[-1] == UP_CALM
    assert (labels[520:560] == REGIMES.index("up_turbulent")).all()  # the aftershock


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trending_has_up_and_down_segments_the_prices_follow(seed: int) -> None:
    config = data("trending")
    down = true_regimes(config, seed) // 2 == 1
    returns = np.diff(np.log(market_index(bars(config, seed).close)), prepend=0.0)
    assert 0 < down.sum() < len(down)
    assert returns[down].mean() < 0 < returns[~down].mean()
    switches = np.count_nonzero(np.diff(down.astype(int)))
    assert 3 <= switches <= 20  # ~600-bar segments over 5000 bars


@pytest.mark.parametrize("scenario", ["default", "volatility_clustering", "trending"])
def test_true_turbulent_bars_move_more(scenario: str) -> None:
    config = data(scenario)
    turbulent = true_regimes(config, 4) % 2 == 1
    moves = np.abs(np.diff(np.log(market_index(bars(config, 4).close)), prepend=np.nan))
    assert 0 < turbulent.sum() < len(turbulent)
    assert np.nanmean(moves[turbulent]) > 1.5 * np.nanmean(moves[~turbulent])


def test_random_walk_is_always_up_and_calm() -> None:
    labels = true_regimes(data("random_walk"), 7)
    assert labels.dtype == np.int8
    assert (labels == UP_CALM).all()


def test_true_regimes_follow_the_providers_timestamps_and_window() -> None:
    config = data("volatility_clustering", bars=600, start="2024-01-02", end="2024-01-10")
    labels, market = true_regimes(config, 9), bars(config, 9)
    assert labels.shape == (len(market.timestamps),) == (7 * 26,)  # seven sessions up to the end date
    assert np.array_equal(labels, true_regimes(data("volatility_clustering", bars=600), 9)[: 7 * 26])


def test_true_regimes_of_default_follow_the_drift_sign() -> None:
    assert (true_regimes(data(synthetic={"annual_drift": -0.1}), 1) // 2 == 1).all()
    assert (true_regimes(data(synthetic={"annual_drift": 0.1}), 1) // 2 == 0).all()


def test_true_regimes_need_the_synthetic_provider() -> None:
    with pytest.raises(ValueError, match="data.provider: synthetic"):
        true_regimes(DataConfig(provider="csv", path="x.csv"), 1)


@pytest.mark.parametrize(
    ("scenario", "field", "value"),
    [
        ("trending", "random_walk", True),
        ("trending", "annual_drift", 0.2),
        ("mean_reverting", "signal", 0.1),
        ("random_walk", "random_walk", True),
        ("random_walk", "signal", 0.2),
        ("crash_and_recovery", "regime_switch_prob", 0.01),
        ("volatility_clustering", "high_vol_multiplier", 3.0),
    ],
)
def test_a_scenario_with_a_field_it_sets_is_rejected_naming_the_field(scenario: str, field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=rf"scenario '{scenario}' sets .*{field}.*remove {field}"):
        DataConfig.model_validate({"synthetic": {"scenario": scenario, field: value}})


@pytest.mark.parametrize(
    ("scenario", "field", "value"),
    [("trending", "signal", 0.2), ("crash_and_recovery", "high_vol_multiplier", 4.0),
     ("mean_reverting", "signal_lag", 10), ("volatility_clustering", "annual_drift", 0.1)],
)
def test_a_scenario_combines_with_fields_it_leaves_alone(scenario: str, field: str, value: object) -> None:
    config = DataConfig.model_validate({"bars": 300, "synthetic": {"scenario": scenario, field: value}})
    assert not np.array_equal(bars(config).close, bars(data(scenario, bars=300)).close)


def test_an_unknown_scenario_is_rejected() -> None:
    with pytest.raises(ValidationError, match="scenario"):
        SyntheticConfig(scenario="sideways")  # type: ignore[arg-type]
