"""The torch competitors (lstm_attention, tft) as TradingModels on a small synthetic market."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from titan_ray.config import DataConfig, SyntheticConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.decisions import ExplanationBatch
from titan_ray.models.kinds import build_model
from titan_ray.registry import ModelRegistry

WARM = 400
KINDS = ("lstm_attention", "tft")
TINY = {
    "lstm_attention": {"window": 6, "hidden": 8, "epochs": 3, "batch_size": 128, "max_train_windows": 1500,
                       "ig_steps": 16, "entry": 0.5},
    "tft": {"window": 6, "hidden": 8, "heads": 2, "epochs": 3, "batch_size": 128, "max_train_windows": 1500,
            "entry": 0.5},
}


@pytest.fixture(scope="module")
def bars():
    syn = SyntheticConfig(signal=0.2, market_correlation=0.3)
    return SyntheticProvider(DataConfig(n_symbols=4, bars=700, synthetic=syn), 5).load().bars


def make(kind, params=None, seed=3):
    return build_model("m", kind, {**TINY[kind], **(params or {})}, ("AAA", "BBB", "CCC", "DDD"), seed=seed)


def run(model, bars, size):
    for chunk in bars.slice(0, WARM).chunks(size):
        model.observe(chunk)
    decisions = [model.decide(c) for c in bars.slice(WARM, len(bars)).chunks(size)]
    return np.vstack([d.weights for d in decisions]), ExplanationBatch.concat([d.explanations for d in decisions])


@pytest.fixture(scope="module")
def fitted(bars):
    """Each kind fitted once on the warm-up and run over the rest in one chunk."""
    out = {}
    for kind in KINDS:
        model = make(kind)
        weights, ex = run(model, bars, len(bars))
        out[kind] = (model, weights, ex)
    return out


def _scores(model, bars):
    """The model's score of every (bar, symbol) of the market, NaN before its first full window."""
    pred = model.score(model.features.transform(bars))
    return np.vstack([np.full((model.params.window - 1, len(bars.symbols)), np.nan), pred])


@pytest.mark.parametrize("kind", KINDS)
def test_every_changed_weight_has_an_explanation(fitted, bars, kind):
    model, weights, ex = fitted[kind]
    assert model.fitted and model.metrics["train_rows"] > 500 and "val_ic" in model.metrics
    assert set(np.unique(weights)) <= {0.0, 0.25}
    prev = np.vstack([np.zeros((1, 4)), weights[:-1]])
    changes = {(WARM + int(t), int(s)) for t, s in zip(*np.nonzero(weights != prev), strict=True)}
    assert len(changes) > 10
    assert {(int(b), int(s)) for b, s in zip(ex.bar, ex.symbol, strict=True)} == changes
    w = model.params.window
    names = model.features.names
    assert ex.feature_names == (*names, *(f"attention@t-{k}" for k in range(w)))
    attention = ex.values[:, len(names):]
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-6)
    assert (ex.attributions[:, len(names):] == 0).all()
    # the values shown are the features of the decision bar
    feats = model.features.transform(bars)
    np.testing.assert_array_equal(ex.values[:, : len(names)], feats[ex.bar, ex.symbol])
    for s, sym in zip(ex.sentences, ex.symbol, strict=True):
        assert ("ABCD"[sym] * 3) in s and "forecast" in s and "attention peaked on" in s
    records = ex.records(bars.symbols)
    assert records[0].method == model.method and records[0].decision_id.startswith("m:")


def test_lstm_integrated_gradients_add_up_to_the_decision_score(fitted, bars):
    model, _, ex = fitted["lstm_attention"]
    assert ex.method == "captum.IntegratedGradients"
    n = len(model.features.names)
    score = _scores(model, bars)[ex.bar, ex.symbol]
    total = ex.base_value + ex.attributions[:, :n].sum(axis=1)
    assert np.all(np.isfinite(ex.gap)) and np.all(ex.gap >= 0)
    spread = np.abs(score - ex.base_value)
    assert np.all(ex.gap <= 1e-3 * spread + 1e-6), (ex.gap.max(), spread.min())
    # base + attributions = the score the decision used, up to the gap and float32 rounding
    assert np.all(np.abs(total - score) <= ex.gap + 1e-5)
    assert "pushed the LSTM's 5-bar return forecast" in ex.sentences[0]


def test_tft_explains_with_variable_selection_weights(fitted):
    model, _, ex = fitted["tft"]
    assert ex.method == "variable-selection weights"
    n = len(model.features.names)
    importance = ex.attributions[:, :n]
    assert (importance >= 0).all()
    np.testing.assert_allclose(importance.sum(axis=1), 1.0, atol=1e-6)
    assert np.isnan(ex.base_value).all() and np.isnan(ex.gap).all()
    assert "variable selection weighted" in ex.sentences[0]


@pytest.mark.parametrize("kind", KINDS)
def test_saved_model_decides_identically_whatever_the_chunk_size(fitted, bars, kind, tmp_path):
    model, weights, ex = fitted[kind]
    model.save_artifacts(tmp_path)
    assert {"learned.json", "net.pt", "net.json"} <= {p.name for p in tmp_path.iterdir()}
    for size in (1, 29):
        loaded = make(kind)
        loaded.load_artifacts(tmp_path)
        w2, ex2 = run(loaded, bars, size)
        assert w2.tobytes() == weights.tobytes(), size
        assert ex2.attributions.tobytes() == ex.attributions.tobytes()
        assert ex2.values.tobytes() == ex.values.tobytes()
        assert ex2.sentences == ex.sentences
        if kind == "lstm_attention":
            assert ex2.gap.tobytes() == ex.gap.tobytes()


@pytest.mark.parametrize("kind", KINDS)
def test_a_score_does_not_depend_on_the_rows_scored_with_it(fitted, bars, kind):
    model = fitted[kind][0]
    X = model.features.transform(bars)
    w = model.params.window
    whole = model.score(X)
    # the net is pooled over symbols, so any subset of them can be scored; odd batch sizes (1, 3,
    # 33 windows, ...) are the ones where torch's CPU kernels change their arithmetic
    for cols in (slice(0, 1), slice(0, 3)):
        i, parts = WARM, []
        for n in (1, 2, 1, 5, 11, 1, 40):  # n bars at a time
            parts.append(model.score(X[i : i + w - 1 + n, cols]))
            i += n
        scored = np.vstack(parts)
        assert np.isfinite(scored).all()
        assert scored.tobytes() == whole[WARM:i, cols].tobytes()


def test_registry_round_trip_loads_a_ready_model(fitted, bars, tmp_path):
    model, weights, _ = fitted["tft"]
    registry = ModelRegistry(tmp_path)
    ref = registry.register_model(model, bars.slice(0, WARM))
    assert ref.kind == "tft" and ref.meta["metrics"]["train_rows"] == model.metrics["train_rows"]
    loaded = registry.load_model(registry.get("m"), name="served", symbols=bars.symbols, seed=99)
    assert loaded.fitted
    w2, _ = run(loaded, bars, 64)
    assert w2.tobytes() == weights.tobytes()  # a different seed: nothing is refitted


@pytest.mark.parametrize("kind", KINDS)
def test_refitting_with_the_same_seed_gives_the_same_model(fitted, bars, kind):
    model, weights, _ = fitted[kind]
    again = make(kind)
    w2, _ = run(again, bars, 113)
    assert w2.tobytes() == weights.tobytes()
    for a, b in zip(model.net.parameters(), again.net.parameters(), strict=True):
        assert torch.equal(a, b)
    other = make(kind, seed=4)
    run(other, bars.slice(0, WARM + 1), WARM + 1)
    assert not all(torch.equal(a, b) for a, b in zip(model.net.parameters(), other.net.parameters(), strict=True))


def test_rolling_refits_do_not_depend_on_the_chunk_size(bars):
    params = {"refit_every": 120, "train_window": 300, "epochs": 2}
    m1 = make("lstm_attention", params)
    w1, e1 = run(m1, bars, 300)
    w2, e2 = run(make("lstm_attention", params), bars, 41)
    assert m1.training_window["stop_bar"] == WARM + 240 and m1.training_window["rows"] == 300
    assert w1.tobytes() == w2.tobytes()
    assert e1.attributions.tobytes() == e2.attributions.tobytes()


def test_quantile_head_trades_on_the_median(bars):
    model = make("tft", {"quantiles": [0.1, 0.5, 0.9]})
    weights, ex = run(model, bars, 350)
    assert model.net.config.n_outputs == 3 and model._score_column == 1
    assert ex is not None and len(ex) > 0 and weights.shape == (300, 4)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("lstm_attention", {"widnow": 8}, "widnow"),
        ("lstm_attention", {"attention": "cosine"}, "attention"),
        ("tft", {"quantiles": [0.1, 0.9]}, "must include 0.5"),
        ("tft", {"quantiles": [0.5, 0.1]}, "increasing"),
        ("tft", {"hidden": 10, "heads": 3}, "multiple of heads"),
        ("tft", {"ig_steps": 8}, "ig_steps"),
    ],
)
def test_params_are_strict_and_name_the_field(kind, params, message):
    with pytest.raises(ValidationError, match=message):
        build_model("m", kind, params, ("AAA",), seed=0)


def test_loading_with_other_params_names_the_mismatch(fitted, tmp_path):
    fitted["lstm_attention"][0].save_artifacts(tmp_path)
    with pytest.raises(ValueError, match="load it with the params it was registered with"):
        make("lstm_attention", {"hidden": 12}).load_artifacts(tmp_path)
    with pytest.raises(ValueError, match="not 'tft'"):
        make("tft").load_artifacts(tmp_path)


def test_too_little_warm_up_says_what_to_raise(bars):
    model = make("tft", {"window": 40})
    model.observe(bars.slice(0, 60))
    with pytest.raises(ValueError, match="warmup_bars"):
        model.decide(bars.slice(60, 70))
