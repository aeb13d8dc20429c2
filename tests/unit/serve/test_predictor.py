"""Request validation and predictions of one model, without Ray or HTTP."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.models.base import TradingModel
from titan_ray.models.kinds import build_model
from titan_ray.serve.loading import load_predictor
from titan_ray.serve.predictor import (
    BarsIn,
    ModelInfo,
    PredictError,
    Predictor,
    PredictRequest,
    answers,
    example_request,
    shortest_window,
    synthetic_window,
    validation_body,
)
from titan_ray.serve.settings import ServedModel


def predictor(kind: str = "sma_crossover", params: dict | None = None, name: str = "m"):
    spec = {"name": name, "kind": kind, "params": params if params is not None else {"fast": 3, "slow": 8}}
    return load_predictor(ServedModel.model_validate(spec), registry_root=None)


def bars(closes: list[list[float]], symbols=("AAA",), **extra) -> PredictRequest:
    return PredictRequest.model_validate({"bars": {"symbols": list(symbols), "close": closes, **extra}})


def test_answer_matches_the_model_run_over_the_window():
    p = predictor()
    req = PredictRequest.model_validate(example_request(p))
    out = p.predict(req)
    batch = req.bars.batch()
    model = build_model("m", "sma_crossover", {"fast": 3, "slow": 8}, batch.symbols, seed=7)
    weights = model.decide(batch).weights
    assert [x["target_weight"] for x in out["predictions"]] == weights[-1].tolist()
    assert [x["previous_weight"] for x in out["predictions"]] == weights[-2].tolist()
    assert out["model"] == "m" and out["version"] is None and out["as_of"].startswith("2024-01-02T")


def test_crossover_on_the_last_bar_is_explained():
    closes = [[100.0]] * 8 + [[99.0], [98.0], [97.0], [99.0], [103.0]]
    out = predictor("sma_crossover", {"fast": 2, "slow": 5}).predict(bars(closes))
    p = out["predictions"][0]
    assert (p["previous_weight"], p["target_weight"]) == (0.0, 1.0)
    names = [f["name"] for f in p["explanation"]["features"]]
    assert names == ["sma_2", "sma_5", "gap_pct"]
    gap = p["explanation"]["features"][2]["value"]
    assert p["score"] == pytest.approx(gap) and gap > 0
    assert p["explanation"]["sentence"].startswith("Went long AAA (weight 0 → 1)")


def test_holding_sentence_when_nothing_changes():
    out = predictor("buy_and_hold", {}).predict(bars([[10.0], [11.0]]))
    p = out["predictions"][0]
    assert p["previous_weight"] == p["target_weight"] == 1.0
    assert p["explanation"]["sentence"].startswith("Keeps long AAA")


def test_short_window_and_missing_last_bar_are_predict_errors():
    p = predictor()
    with pytest.raises(PredictError, match="2 rows are too few for model 'm'.*sma_8"):
        p.predict(bars([[1.0], [1.1]]))
    closes = [[100.0 + i, 50.0] for i in range(12)] + [[101.0, None]]
    with pytest.raises(PredictError, match="BBB has no close on the last row"):
        p.predict(bars(closes, symbols=("AAA", "BBB")))


def test_rule_models_refuse_feature_rows():
    with pytest.raises(PredictError, match=r"decides from bars: send \{\"bars\""):
        predictor().predict(PredictRequest.model_validate({"features": {"AAA": {"x": 1.0}}}))


@pytest.mark.parametrize(("body", "text"), [
    ({}, "exactly one of `bars`"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]]}, "features": {"A": {"x": 1.0}}}, "exactly one of"),
    ({"bars": {"symbols": [], "close": [[1.0]]}}, "at least 1 item"),
    ({"bars": {"symbols": ["A"], "close": []}}, "at least 1 item"),
    ({"bars": {"symbols": ["A", "B"], "close": [[1.0]]}}, "bars.close[0] has 1 values; give one per symbol (2)"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]], "volume": [[-5.0]]}}, "bars.volume: volumes must be"),
    ({"bars": {"symbols": ["A"], "close": [[float("inf")]]}}, "finite"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]], "timestamps": [1, 2]}}, "bars.timestamps has 2 entries"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]], "timestamps": [10**12]}}, "give unix seconds"),
    ({"features": {"A": {"x": float("nan")}}}, "finite"),
    # past what nanoseconds in an int64 hold: refused by name, not an overflow
    ({"bars": {"symbols": ["A"], "close": [[1.0]], "timestamps": [99_999_999_000]}}, "give unix seconds from 0"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]], "timestamps": ["0001-01-01T00:00:00Z"]}}, "out of range"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]], "timestamps": ["9999-12-10T00:00:00Z"]}}, "out of range"),
])
def test_request_validation_names_the_field(body, text):
    with pytest.raises(ValidationError) as err:
        PredictRequest.model_validate(body)
    assert text in str(err.value)


def test_a_422_quoting_nan_or_infinity_is_strict_json():
    """The input a 422 quotes may hold NaN (a client's raw JSON): the body stays strict JSON."""
    body = {"bars": {"symbols": [float("nan")], "close": [[float("inf")], [-1.0]]}, "features": {"A": {"x": 1e999}}}
    with pytest.raises(ValidationError) as err:
        PredictRequest.model_validate(body)
    answer = validation_body([dict(e) for e in err.value.errors()], prefix=("body",))
    text = json.dumps(answer, allow_nan=False)  # raises on NaN or an infinity
    assert '"input": "nan"' in text and answer["message"].startswith("body.")


def test_optional_fields_default_sensibly():
    b = BarsIn.model_validate({"symbols": ["A"], "close": [[1.0], [None], [2.0]],
                               "timestamps": ["2024-01-02T14:30:00Z", 1704206000, "2024-01-02T14:40:00"]}).batch()
    assert np.array_equal(b.open, b.close, equal_nan=True) and np.isnan(b.volume).all()
    assert np.isnan(b.close[1, 0])
    assert b.timestamps[1] == 1704206000 * 10**9
    plain = BarsIn.model_validate({"symbols": ["A"], "close": [[1.0], [2.0]]}).batch()
    assert (np.diff(plain.timestamps) == 60 * 10**9).all()


def test_example_request_is_the_shortest_answerable_window():
    p = predictor("rsi_reversion", {"period": 14, "low": 30, "high": 70})
    assert shortest_window(p) == 15  # RSI(14) needs 15 bars
    ex = example_request(p)
    assert len(ex["bars"]["close"]) == 15 and answers(p, ex)
    assert not answers(p, synthetic_window(14))
    long_sma = predictor("sma_crossover", {"fast": 10, "slow": 30})
    assert len(example_request(long_sma)["bars"]["close"]) == 30
    assert shortest_window(predictor("buy_and_hold", {})) == 2  # a window has a previous bar


# --- a learned model, trained here on a small synthetic market -----------------------------------------


@pytest.fixture(scope="module")
def lgbm(tmp_path_factory):
    spec = ServedModel.model_validate({
        "name": "lgbm", "artifact": "lgbm",
        "train": {"kind": "lightgbm", "params": {"horizon": 5, "n_estimators": 30, "cv_folds": 0},
                  "data": {"provider": "synthetic", "n_symbols": 4, "bars": 600}, "seed": 3}})
    root = tmp_path_factory.mktemp("registry")
    first = load_predictor(spec, registry_root=str(root))
    again = load_predictor(spec, registry_root=str(root))  # loads lgbm@1, does not train again
    assert (root / "lgbm" / "v0001").is_dir() and not (root / "lgbm" / "v0002").exists()
    assert again.info.version == first.info.version == 1
    return first


def test_learned_model_from_the_registry(lgbm):
    assert lgbm.info.artifact == "lgbm@1" and lgbm.info.kind == "lightgbm"
    assert lgbm.info.accepts == ("bars", "features") and "rsi_14" in lgbm.info.features
    out = lgbm.predict(PredictRequest.model_validate(example_request(lgbm)))
    assert out["method"] == "shap.TreeExplainer" and out["version"] == 1
    for p in out["predictions"]:
        e = p["explanation"]
        total = sum(f["attribution"] for f in e["features"]) + e["base_value"]
        assert total == pytest.approx(p["score"], abs=1e-6), "SHAP values add up to the raw score"


def test_learned_model_takes_feature_rows(lgbm):
    names = lgbm.info.features
    row = {n: 0.0 for n in names} | {"rsi_14": 50.0}
    out = lgbm.predict(PredictRequest.model_validate({"features": {"AAA": row, "BBB": row}}))
    a, b = out["predictions"]
    assert a["score"] == b["score"] and math.isfinite(a["score"]) and out["as_of"] is None
    with pytest.raises(PredictError, match=r"features.AAA: missing \['ret_1'\]"):
        lgbm.predict(PredictRequest.model_validate({"features": {"AAA": {k: v for k, v in row.items()
                                                                         if k != "ret_1"}}}))


def test_learned_window_too_short(lgbm):
    with pytest.raises(PredictError, match="too few|send at least"):
        lgbm.predict(bars([[100.0 + i] for i in range(5)]))
    rows = shortest_window(lgbm)
    assert rows > 30, "the features' lookback: longer than any rule model's window here"
    assert answers(lgbm, synthetic_window(rows)) and not answers(lgbm, synthetic_window(rows - 1))


# --- Serve sees a model through its public contract only -------------------------------------------


class PublicOnly:
    """A model as Serve may see it: public attributes read, nothing written."""

    def __init__(self, model: TradingModel) -> None:
        object.__setattr__(self, "_model", model)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(f"Serve reached into the model's private {name}")
        return getattr(self._model, name)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"Serve wrote the model's {name}")


@pytest.fixture(scope="module")
def window():
    return SyntheticProvider(DataConfig(n_symbols=3, bars=700, frequency="15min"), 11).load().bars


@pytest.fixture(scope="module")
def fitted(window):
    params = {"n_estimators": 20, "cv_folds": 0, "entry": 0.3}
    model = build_model("lgbm", "lightgbm", params, window.symbols, seed=2)
    model.fit(window.slice(0, 500))
    return model


def _request(bars) -> PredictRequest:
    return PredictRequest.model_validate({"bars": {
        "symbols": list(bars.symbols), "timestamps": (bars.timestamps // 10**9).tolist(),
        **{f: getattr(bars, f).tolist() for f in ("open", "high", "low", "close", "volume")}}})


def test_a_rule_model_explains_what_it_decides(window):
    bars = window.slice(500, 700)
    model = build_model("sma", "sma_crossover", {"fast": 3, "slow": 8}, window.symbols, seed=7)
    prediction = model.explain(bars)
    decided = build_model("sma", "sma_crossover", {"fast": 3, "slow": 8}, window.symbols, seed=7).decide(bars)
    assert np.array_equal(prediction.weights, decided.weights)


def test_a_learned_model_explains_what_it_decides(window, fitted):
    bars = window.slice(500, 700)
    prediction = fitted.explain(bars)  # from flat, leaving the fitted model's trading state alone
    assert np.array_equal(prediction.weights, fitted.decide(bars).weights)
    assert prediction.previous.shape == prediction.target.shape == (3,)


@pytest.mark.parametrize("kind", ["sma_crossover", "lightgbm"])
def test_the_predictor_uses_the_public_contract_only(window, fitted, kind):
    def factory(symbols):
        if kind == "lightgbm":
            return fitted
        return build_model("m", kind, {"fast": 3, "slow": 8}, symbols, seed=7)

    info = ModelInfo("m", kind, "rule", None, None, {}, None, ("bars",))
    request = _request(window.slice(520, 700))
    plain = Predictor(info, factory).predict(request)
    public = Predictor(info, lambda symbols: PublicOnly(factory(symbols)))  # type: ignore[return-value]
    assert public.predict(request) == plain
    target = factory(window.symbols).explain(request.bars.batch()).target  # type: ignore[union-attr]
    assert [p["target_weight"] for p in plain["predictions"]] == target.tolist()
