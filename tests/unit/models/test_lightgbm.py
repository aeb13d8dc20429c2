"""The lightgbm competitor: fits on the warm-up, SHAP adds up, chunk-invariant, saves and loads."""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.config import ConfigError, DataConfig, SyntheticConfig, parse_config
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.decisions import ExplanationBatch
from titan_ray.models.lightgbm_model import LightGBMModel

WARM = 400


@pytest.fixture(scope="module")
def bars():
    syn = SyntheticConfig(signal=0.2, market_correlation=0.3)
    return SyntheticProvider(DataConfig(n_symbols=4, bars=700, synthetic=syn), 5).load().bars


def run(bars, params, size, seed=3):
    m = LightGBMModel("lgbm", {"n_estimators": 60, **params}, bars.symbols, seed=seed)
    for chunk in bars.slice(0, WARM).chunks(size):
        m.observe(chunk)
    decisions = [m.decide(c) for c in bars.slice(WARM, len(bars)).chunks(size)]
    weights = np.vstack([d.weights for d in decisions])
    return m, weights, ExplanationBatch.concat([d.explanations for d in decisions])


@pytest.mark.parametrize("objective", ["regression", "binary"])
def test_shap_values_plus_base_add_up_to_the_raw_output(bars, objective):
    m, weights, ex = run(bars, {"objective": objective, "entry": 0.5}, 128)
    assert m.fitted and m.metrics["rounds"] >= 1 and "oof_ic" in m.metrics
    assert len(ex) > 10
    assert ex.method == "shap.TreeExplainer" and ex.feature_names == m.features.names
    raw = m.booster.predict(ex.values, raw_score=True)
    total = ex.attributions.sum(axis=1) + ex.base_value
    np.testing.assert_allclose(total, raw, atol=1e-6, rtol=0)
    assert np.nanmax(ex.gap) < 1e-6
    # every changed weight has its row, and the rows are the changes
    prev = np.vstack([np.zeros((1, weights.shape[1])), weights[:-1]])
    assert len(ex) == int((weights != prev).sum())
    assert all(("pushed the LightGBM" in s and "top drivers" in s) for s in ex.sentences)
    if objective == "binary":
        assert "P(up)" in ex.sentences[0]


def test_weights_do_not_depend_on_the_chunk_size_even_with_refits(bars):
    params = {"refit_every": 100, "train_window": 300, "cv_folds": 2}
    _, w1, e1 = run(bars, params, 256)
    _, w2, e2 = run(bars, params, 37)
    assert np.array_equal(w1, w2)
    assert np.array_equal(e1.attributions, e2.attributions) and e1.sentences == e2.sentences


def test_refits_happen_on_schedule_and_change_the_model(bars):
    m, _, _ = run(bars, {"refit_every": 100, "train_window": 300, "cv_folds": 0}, 64)
    # last refit at bar WARM + 200 on the 300 bars before it
    assert m.training_window["stop_bar"] == WARM + 200 and m.training_window["rows"] == 300


def test_saved_model_trades_like_the_original_without_fitting(bars, tmp_path):
    m, weights, ex = run(bars, {}, 128)
    m.save_artifacts(tmp_path / "art")
    fresh = LightGBMModel("lgbm", {"n_estimators": 60}, bars.symbols, seed=3)
    fresh.load_artifacts(tmp_path / "art")
    fresh.observe(bars.slice(0, WARM))
    d = fresh.decide(bars.slice(WARM, len(bars)))
    assert np.array_equal(d.weights, weights)
    assert np.array_equal(d.explanations.attributions, ex.attributions)
    other = LightGBMModel("x", {"features": ["ret_1", "ret_5"]}, bars.symbols, seed=3)
    with pytest.raises(ValueError, match="same `features` param"):
        other.load_artifacts(tmp_path / "art")


def test_shorts_when_allowed(bars):
    m, weights, _ = run(bars, {"allow_short": True, "entry": 0.5}, 128)
    assert not m.long_only and (weights < 0).any() and (weights > 0).any()
    _, long_only, _ = run(bars, {"entry": 0.5}, 128)
    assert (long_only >= 0).all()


def test_params_and_warmup_are_checked_with_the_field_named():
    with pytest.raises(ConfigError, match="params.num_leaves"):
        parse_config({"models": [{"name": "m", "kind": "lightgbm", "params": {"num_leaves": 1}}],
                      "replay": {"warmup_bars": 500}})
    with pytest.raises(ConfigError, match="unknown feature"):
        parse_config({"models": [{"name": "m", "kind": "lightgbm", "params": {"features": ["nope"]}}],
                      "replay": {"warmup_bars": 500}})
    with pytest.raises(ConfigError, match=r"replay.warmup_bars is 10: raise replay.warmup_bars"):
        parse_config({"models": [{"name": "m", "kind": "lightgbm"}], "replay": {"warmup_bars": 10}})
    ok = parse_config({"models": [{"name": "m", "kind": "lightgbm", "artifact": "m@2"}]})
    assert ok.models[0].artifact == "m@2"  # a registered model needs no warm-up fit
    with pytest.raises(ConfigError, match="artifact"):
        parse_config({"models": [{"name": "m", "kind": "lightgbm", "artifact": "m@0"}]})


def test_too_little_history_names_the_setting(bars):
    m = LightGBMModel("lgbm", {}, bars.symbols, seed=1)
    m.observe(bars.slice(0, 60))
    with pytest.raises(ValueError, match="replay.warmup_bars"):
        m.decide(bars.slice(60, 80))
