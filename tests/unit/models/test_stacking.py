"""The stacking competitor: meta-model on out-of-fold signals, exact per-base contributions."""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.config import DataConfig, SyntheticConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.decisions import ExplanationBatch
from titan_ray.models.stacking import StackingModel

WARM = 400


def market(signal: float, seed: int = 8):
    syn = SyntheticConfig(signal=signal, random_walk=signal == 0, market_correlation=0.3)
    return SyntheticProvider(DataConfig(n_symbols=4, bars=650, synthetic=syn), seed).load().bars


def run(bars, params=None, size=128):
    m = StackingModel("stack", {"lgb_rounds": 40, **(params or {})}, bars.symbols, seed=2)
    m.observe(bars.slice(0, WARM))
    ds = [m.decide(c) for c in bars.slice(WARM, len(bars)).chunks(size)]
    return m, np.vstack([d.weights for d in ds]), ExplanationBatch.concat([d.explanations for d in ds])


def test_contributions_of_the_bases_add_up_to_the_score():
    m, _, ex = run(market(0.2), {"entry": 0.5})
    assert ex.feature_names == ("lightgbm", "ridge", "momentum", "reversion")
    assert ex.method == "stacking.contributions" and len(ex) > 5
    assert np.nanmax(ex.gap) < 1e-9
    # base value = the meta-model's intercept; each contribution = weight x standardised signal
    z = (ex.values - m.meta["mu"]) / m.meta["sd"]
    np.testing.assert_allclose(ex.attributions, z * m.meta["coef"], rtol=1e-12, atol=1e-15)
    assert np.allclose(ex.base_value, m.meta["intercept"])
    assert all("pushed the stacked score" in s and "signal at" in s for s in ex.sentences)
    # on the planted (momentum) market the momentum signal is found out of fold
    assert m.metrics["oof_ic_momentum"] > 0.05 and m.metrics["weight_momentum"] > 0


def test_meta_model_sees_out_of_fold_signals_not_in_sample_ones():
    bars = market(0.0, seed=9)
    m, _, _ = run(bars)
    # in sample, the trees fit the noise they were trained on ...
    X = m.features.transform(bars.slice(0, WARM))
    y = m.labels(bars.slice(0, WARM).close)
    ok = np.isfinite(X).all(axis=2) & np.isfinite(y)
    insample = np.corrcoef(m._booster.predict(X[ok]), y[ok])[0, 1]
    assert insample > 0.2
    # ... out of fold they predict nothing, and that is what the meta-model was given
    assert abs(m.metrics["oof_ic_lightgbm"]) < 0.1
    assert abs(m.meta["coef"][0]) < insample * np.std(y[ok])


def test_chunk_invariance_and_save_load(tmp_path):
    bars = market(0.2)
    m, w1, e1 = run(bars, size=200)
    _, w2, _ = run(bars, size=23)
    assert np.array_equal(w1, w2)
    m.save_artifacts(tmp_path)
    fresh = StackingModel("stack", {"lgb_rounds": 40}, bars.symbols, seed=2)
    fresh.load_artifacts(tmp_path)
    fresh.observe(bars.slice(0, WARM))
    d = fresh.decide(bars.slice(WARM, len(bars)))
    assert np.array_equal(d.weights, w1) and np.array_equal(d.explanations.attributions, e1.attributions)


def test_rule_bases_need_their_features():
    with pytest.raises(ValueError, match="momentum needs feature ret_20"):
        StackingModel("s", {"features": ["ret_1", "rsi_14"]}, ("A",), seed=0)
    m = StackingModel("s", {"bases": ["ridge", "reversion"], "features": ["ret_1", "rsi_14"]}, ("A",), seed=0)
    assert m.bases == ("ridge", "reversion")
