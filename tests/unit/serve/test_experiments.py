"""Arm choice, sticky keys, per-arm statistics and the arms' comparison, without Ray."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from titan_ray.serve.experiments import ExperimentState, compare_arms, pick, sticky_point
from titan_ray.serve.settings import ExperimentSpec


def spec(**weights: float) -> ExperimentSpec:
    arms = [{"name": n, "model": "m", "weight": w} for n, w in weights.items()]
    return ExperimentSpec.model_validate({"name": "exp", "arms": [*arms, {"name": "ghost", "model": "m",
                                                                           "shadow": True}]})


def test_sticky_point_is_stable_and_uniform():
    assert sticky_point("exp", "alice") == sticky_point("exp", "alice")
    assert sticky_point("exp", "alice") != sticky_point("other", "alice")
    u = np.array([sticky_point("exp", f"k{i}") for i in range(20000)])
    assert ((u >= 0) & (u < 1)).all()
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert (abs(hist - 2000) < 4 * math.sqrt(2000)).all()


@given(st.floats(min_value=0, max_value=1, exclude_max=True))
def test_pick_follows_cumulative_weights(u):
    w = {"a": 0.2, "b": 0.0, "c": 0.8}
    assert pick(w, u) == ("a" if u < 0.2 else "c")


def test_same_key_same_arm_while_weights_stay():
    s = ExperimentState(spec(a=0.5, b=0.5))
    chosen = {k: s.choose(k) for k in (f"user{i}" for i in range(200))}
    assert all(s.choose(k) == arm for k, arm in chosen.items())
    assert set(chosen.values()) == {"a", "b"}
    s.set_weights({"a": 1.0, "b": 0.0}, "api")
    assert {s.choose(k) for k in chosen} == {"a"}


def test_split_without_keys_matches_weights():
    s = ExperimentState(spec(a=0.25, b=0.75))
    n = 8000
    share = sum(s.choose(None) == "a" for _ in range(n)) / n
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)


def test_shadow_never_chosen_and_always_copied():
    s = ExperimentState(spec(a=1.0, b=1.0))
    assert {s.choose(None) for _ in range(500)} <= {"a", "b"}
    assert s.shadows() == ["ghost"]
    assert s.describe()["arms"][2]["weight"] == 0.0


def test_weights_are_validated_and_normalised():
    s = ExperimentState(spec(a=1.0, b=3.0))
    assert s.weights == {"a": 0.25, "b": 0.75}
    with pytest.raises(ValueError, match=r"unknown arms \['ghost'\]"):
        s.set_weights({"ghost": 1.0}, "api")
    with pytest.raises(ValueError, match="weights.a must be a finite number >= 0"):
        s.set_weights({"a": float("nan")}, "api")
    with pytest.raises(ValueError, match="more than 0"):
        s.set_weights({"a": 0, "b": 0}, "api")
    assert s.weights == {"a": 0.25, "b": 0.75}, "a rejected update changes nothing"
    assert s.set_weights({"b": 2}, "user_config") == {"a": 0.0, "b": 1.0}
    assert s.weights_source == "user_config"


def test_stats_and_shadow_agreement():
    s = ExperimentState(spec(a=1.0, b=0.0), clock=lambda: 100.0)
    for ms in range(1, 101):
        s.record("a", ms / 1000, ok=ms != 50)
    row = s.describe()["arms"][0]
    assert row["requests"] == 100 and row["errors"] == 1
    assert row["latency_ms"]["p50"] == pytest.approx(50.5) and row["latency_ms"]["p99"] == pytest.approx(99.01)
    same = {"predictions": [{"symbol": "X", "target_weight": 0.5}]}
    other = {"predictions": [{"symbol": "X", "target_weight": 0.0}]}
    assert s.record_shadow("ghost", "a", same, same)["same_weights"] is True
    entry = s.record_shadow("ghost", "a", other, same)
    assert entry["same_weights"] is False and entry["max_weight_difference"] == 0.5
    assert s.record_shadow("ghost", "a", None, same)["compared"] is False
    assert s.describe()["arms"][2]["agreement"] == {"compared": 2, "same_weights": 1, "rate": 0.5}
    s.drop_shadow("ghost")
    assert s.describe()["arms"][2]["dropped"] == 1 and s.describe()["arms"][0]["dropped"] == 0


def test_compare_arms_detects_a_real_edge():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.01, 2000)
    better = base + 0.002
    out = compare_arms({"control": base, "treatment": better, "noise": base + rng.normal(0, 1e-6, 2000)},
                       252, "control", n_resamples=400)
    tests = {t["arm"]: t for t in out["tests"]}
    assert tests["treatment"]["significant"] is True and tests["treatment"]["p_value"] < 0.01
    assert tests["treatment"]["difference"] > 0
    assert tests["noise"]["significant"] is False


def test_compare_arms_with_too_few_bars():
    out = compare_arms({"control": np.array([0.01]), "treatment": np.array([0.02])}, 252, "control")
    assert out["tests"][0]["p_value"] is None and "fewer than 3 bars" in out["tests"][0]["reason"]


def test_spec_errors_name_the_problem():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least one arm that is not a shadow"):
        ExperimentSpec.model_validate({"name": "e", "arms": [{"name": "a", "model": "m", "shadow": True},
                                                             {"name": "b", "model": "m", "shadow": True}]})
    with pytest.raises(ValidationError, match="arm names must be unique"):
        ExperimentSpec.model_validate({"name": "e", "arms": [{"name": "a", "model": "m", "weight": 1},
                                                             {"name": "a", "model": "m", "weight": 1}]})
