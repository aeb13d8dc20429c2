"""The `llm` model against a real OpenAI-compatible HTTP server on loopback (tests/openai_stub.py):
decisions, the structured output and its validation, malformed and refused answers, a 429 storm, a
slow answer past the deadline, a committee of two, the cache (offline rerun, cache-only misses) and
the leakage guards. No mocks: the model's own client talks HTTP to the stub."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from openai_stub import OpenAIStub

import titan_ray
from titan_ray.config import DataConfig, load_config
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.models.kinds import build_model
from titan_ray.models.llm_client import CACHE_ONLY_ENV, LlmCacheMiss, LlmEndpointError, LlmKeyMissing
from titan_ray.models.llm_prompt import shown_time
from titan_ray.models.params import LlmParams

CONFIGS = Path(titan_ray.__file__).parent / "configs"
KEY_ENV = "TITAN_TEST_LLM_UNIT_KEY"
KEY = "sk-unit-secret-0123456789"
EVERY = 10


@pytest.fixture(scope="module")
def market() -> BarBatch:
    return SyntheticProvider(DataConfig(n_symbols=3, bars=80), seed=5).load().bars


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv(CACHE_ONLY_ENV, raising=False)
    with OpenAIStub(key=KEY) as s:
        yield s


def _params(stub, tmp_path, **extra):
    return {"base_url": stub.base_url, "model": "stub-1", "api_key_env": KEY_ENV, "every": EVERY,
            "cache_dir": str(tmp_path / "cache"), "timeout_s": 5, "backoff_s": 0.05, **extra}


def _run(params, bars, chunk=None, name="llm"):
    model = build_model(name, "llm", params, bars.symbols, seed=1)
    parts = [model.decide(c) for c in bars.chunks(chunk or len(bars))]
    weights = np.vstack([p.weights for p in parts])
    records = [e for p in parts if p.explanations is not None for e in p.explanations.records(bars.symbols)]
    return model, weights, records


def _decision_rows(bars):
    return [t for t in range(len(bars)) if t % EVERY == 0]


def test_decisions_follow_the_validated_answers(stub, tmp_path, market):
    model, weights, records = _run(_params(stub, tmp_path), market, chunk=32)
    rows = _decision_rows(market)
    assert len(stub.requests) == len(rows)  # one request per decision bar (all symbols in one prompt)
    assert {r["auth"] for r in stub.requests} == {f"Bearer {KEY}"}
    body = json.loads(stub.requests[0]["raw"])
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["weights"]["required"] == list(market.symbols)
    # weights change only on decision bars, and hold in between
    changed = np.flatnonzero((np.diff(np.vstack([np.zeros(3), weights]), axis=0) != 0).any(axis=1))
    assert set(changed) <= set(rows) and len(changed) > 0
    # the stub goes long (1/3) where ret_5 > 0 as shown in the prompt
    calls = model.account()["calls"]
    for t, call in zip(rows, calls, strict=True):
        assert call["status"] == "ok" and call["bar"] == t
        np.testing.assert_array_equal(weights[t], [call["weights"][s] for s in market.symbols])
    board = model.account()["leaderboard"]
    assert board["llm_calls"] == len(rows) and board["llm_failures"] == 0
    assert board["llm_tokens"] == sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls) > 0
    assert board["llm_latency_s"] > 0 and board["llm_cost"] == 0.0
    # the why: method llm, the rationale as the sentence, the numbers shown as the features
    assert records and all(r.method == "llm" for r in records)
    assert all("positive 5-bar momentum" in r.sentence for r in records)
    names = [f.name for f in records[0].features]
    assert names[:7] == ["ret_1", "ret_5", "ret_20", "vol_20", "rsi_14", "bb_pos_20", "close"]
    assert names[7:] == ["confidence", "vote:stub-1"]
    r = records[-1]
    payloads = [json.loads(json.loads(q["raw"])["messages"][-1]["content"]) for q in stub.requests]
    shown = next(p for p in payloads if p["decision_time"] == shown_time(r.timestamp, 0))  # arrival order varies
    sym = next(s for s in shown["symbols"] if s["symbol"] == r.symbol)
    assert [f.value for f in r.features][:6] == pytest.approx([sym["features"][n] for n in names[:6]], nan_ok=True)
    assert r.features[6].value == sym["recent_closes"][-1]


def test_results_do_not_depend_on_the_chunk_size(stub, tmp_path, market):
    _, whole, rec_whole = _run(_params(stub, tmp_path), market)
    _, chunked, rec_chunked = _run(_params(stub, tmp_path), market, chunk=7)
    assert whole.tobytes() == chunked.tobytes()
    assert repr(rec_whole) == repr(rec_chunked)


def test_the_prompt_holds_nothing_after_the_decision_bar(stub, tmp_path, market):
    """The request at bar t is the same whether or not the bars after t exist: no look-ahead."""
    _run(_params(stub, tmp_path / "a"), market)
    full = sorted(r["raw"] for r in stub.requests)  # in time order: the shown dates sort first
    stub.requests.clear()
    cut = 41  # bars 0..40: decisions at 0, 10, 20, 30, 40
    _run(_params(stub, tmp_path / "b"), market.slice(0, cut))
    assert sorted(r["raw"] for r in stub.requests) == full[:5]


def test_a_malformed_or_invalid_answer_keeps_the_previous_target(stub, tmp_path, market):
    stub.script.extend([{}, {"content": "{not json"},
                        {"content": json.dumps({"weights": {s: 2.0 for s in market.symbols}, "confidence": 1,
                                                "rationale": "all in"})},
                        {"refusal": "I cannot give financial advice."}, {"malformed_body": True}])
    model, weights, _ = _run(_params(stub, tmp_path, max_concurrency=1), market)  # the script in bar order
    calls = model.account()["calls"]
    assert [c["status"] for c in calls[:5]] == ["ok", "invalid", "invalid", "failed", "failed"]
    assert "not JSON" in calls[1]["error"] and "weights.AAA" in calls[2]["error"].replace(market.symbols[0], "AAA")
    assert calls[3]["error"].startswith("refused:") and calls[4]["error"].startswith("bad response")
    for t in (10, 20, 30, 40):  # nothing valid: the target of bar 0 is kept
        np.testing.assert_array_equal(weights[t], weights[0])
    assert model.account()["leaderboard"]["llm_failures"] == 4


def test_a_429_storm_is_waited_out_honouring_retry_after(stub, tmp_path, market):
    stub.script.extend([{"status": 429, "retry_after": 0.3}] * 3 + [{"status": 503}])
    began = time.monotonic()
    model, _weights, _ = _run(_params(stub, tmp_path), market.slice(0, 5))
    call = model.account()["calls"][0]
    assert call["status"] == "ok" and call["attempts"] == 5
    gaps = np.diff([r["time"] for r in stub.requests])
    assert (gaps[:3] >= 0.29).all()  # Retry-After honoured
    assert time.monotonic() - began >= 0.9


def test_a_storm_that_outlasts_the_deadline_keeps_the_target(stub, tmp_path, market):
    stub.script.extend([{"status": 429, "retry_after": 0.4}] * 10)
    model, weights, _ = _run(_params(stub, tmp_path, timeout_s=1.0), market.slice(0, 5))
    call = model.account()["calls"][0]
    assert call["status"] == "failed" and call["error"].startswith("timeout") and call["latency_s"] < 1.5
    assert (weights == 0).all()


def test_a_slow_answer_past_the_deadline_is_dropped_in_time(stub, tmp_path, market):
    stub.script.extend([{}, {"delay": 3.0}])
    began = time.monotonic()
    model, weights, _ = _run(_params(stub, tmp_path, timeout_s=0.5, max_concurrency=1), market.slice(0, 15))
    assert time.monotonic() - began < 2.5
    calls = model.account()["calls"]
    assert calls[0]["status"] == "ok" and calls[1]["status"] == "failed" and "timeout" in calls[1]["error"]
    np.testing.assert_array_equal(weights[10], weights[0])  # kept


def test_a_committee_of_two_votes_by_the_mean_of_weights(monkeypatch, tmp_path, market):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv(CACHE_ONLY_ENV, raising=False)
    monkeypatch.setenv("TITAN_TEST_LLM_OTHER_KEY", "sk-other")

    def answer(body):
        names = body["response_format"]["json_schema"]["schema"]["properties"]["weights"]["required"]
        w = 0.3 if body["model"] == "alpha" else 0.1
        return json.dumps({"weights": dict.fromkeys(names, w), "confidence": 0.5,
                           "rationale": f"{body['model']} says {w}"})

    with OpenAIStub(key=KEY, answer=answer) as a, OpenAIStub(key="sk-other", answer=answer) as b:
        params = {"members": [{"model": "alpha"}, {"model": "beta", "base_url": b.base_url,
                                                   "api_key_env": "TITAN_TEST_LLM_OTHER_KEY"}],
                  "base_url": a.base_url, "api_key_env": KEY_ENV, "every": EVERY,
                  "cache_dir": str(tmp_path / "cache"), "max_concurrency": 4}
        model, weights, records = _run(params, market.slice(0, 30))
        assert len(a.requests) == 3 and len(b.requests) == 3  # each member asked at bars 0, 10, 20
    np.testing.assert_allclose(weights[0], [0.2, 0.2, 0.2])
    calls = model.account()["calls"]
    assert [c["member"] for c in calls] == ["alpha", "beta"] * 3  # each member's answer kept
    r = records[0]
    assert [f.name for f in r.features][-2:] == ["vote:alpha", "vote:beta"]
    assert [f.value for f in r.features][-2:] == [0.3, 0.1]
    assert sum(f.attribution for f in r.features) == pytest.approx(0.2)
    assert "alpha (0.3): alpha says 0.3" in r.sentence and "beta (0.1): beta says 0.1" in r.sentence


def test_a_committee_member_that_fails_is_left_out_of_the_vote(monkeypatch, tmp_path, market):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv(CACHE_ONLY_ENV, raising=False)
    with OpenAIStub(key=KEY) as a:
        a.script.extend([{"content": "nonsense"}])  # the first request of bar 0 (one of the two members)
        params = {"members": [{"model": "m"}, {"model": "m"}], "base_url": a.base_url, "api_key_env": KEY_ENV,
                  "every": EVERY, "cache_dir": str(tmp_path / "c"), "max_concurrency": 1}
        model, weights, _records = _run(params, market.slice(0, 5))
        bodies = [r["raw"] for r in a.requests]
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # the same request twice: two samples, cached apart
    calls = model.account()["calls"]
    assert calls[0]["request"] != calls[1]["request"]
    assert [c["member"] for c in calls] == ["m", "m#2"] and sorted(c["status"] for c in calls) == ["invalid", "ok"]
    good = next(c for c in calls if c["status"] == "ok")
    np.testing.assert_array_equal(weights[0], [good["weights"][s] for s in market.symbols])


def test_a_rerun_from_the_cache_is_identical_and_offline(stub, tmp_path, market, monkeypatch):
    params = _params(stub, tmp_path, cost_per_1k_prompt=0.5, cost_per_1k_completion=1.5)
    first, w1, rec1 = _run(params, market, chunk=16)
    stub.stop()  # nobody answers now
    monkeypatch.setenv(CACHE_ONLY_ENV, "1")
    again, w2, rec2 = _run(params, market, chunk=50)
    assert w1.tobytes() == w2.tobytes() and repr(rec1) == repr(rec2)
    assert json.dumps(first.account(), sort_keys=True) == json.dumps(again.account(), sort_keys=True)
    assert first.account()["leaderboard"]["llm_cost"] > 0
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == len(_decision_rows(market))
    assert not any(KEY in f.read_text() for f in files)  # the key is never cached
    assert KEY not in json.dumps(first.account())
    # cache-only and a request the cache does not hold: a loud error naming the cache folder
    with pytest.raises(LlmCacheMiss, match=str(tmp_path / "cache")):
        _run({**params, "temperature": 0.7}, market)


def test_leakage_guards_anonymise_shift_and_flag_contamination(stub, tmp_path, market):
    ts = market.timestamps
    cutoff = datetime.fromtimestamp(int(ts[35]) // 10**9, tz=UTC).date().isoformat()
    cutoff_ns = int(datetime.fromisoformat(cutoff).replace(tzinfo=UTC).timestamp()) * 10**9
    model, _, records = _run(_params(stub, tmp_path, anonymise_symbols=True, shift_days=400,
                                     knowledge_cutoff=cutoff), market)
    payloads = [json.loads(json.loads(r["raw"])["messages"][-1]["content"]) for r in stub.requests]
    assert [s["symbol"] for s in payloads[0]["symbols"]] == ["SYM1", "SYM2", "SYM3"]
    raw = b"".join(r["raw"] for r in stub.requests).decode()
    assert not any(sym in raw for sym in market.symbols)
    shown = datetime.fromisoformat(min(p["decision_time"] for p in payloads))  # bar 0's (requests run at once)
    assert (datetime.fromtimestamp(int(ts[0]) // 10**9, tz=UTC) - shown).days == 400
    expected = [t for t in _decision_rows(market) if ts[t] < cutoff_ns]
    board = model.account()["leaderboard"]
    assert 0 < len(expected) < len(_decision_rows(market))
    assert board["contaminated"] is True and board["contaminated_bars"] == len(expected)
    assert model.account()["contaminated_bars"] == expected
    assert all(("knowledge cutoff" in r.sentence) == (r.bar in expected) for r in records)


def test_params_are_strict_and_say_how_to_fix_them():
    with pytest.raises(ValueError, match="either `model`"):
        LlmParams.model_validate({"model": "x", "members": [{"model": "y"}]})
    assert [v.model for v in LlmParams.model_validate({}).voters()] == ["llama3.1:8b"]  # Ollama by default
    with pytest.raises(ValueError, match="unknown feature"):
        LlmParams.model_validate({"model": "x", "features": ["nope"]})
    with pytest.raises(ValueError):
        LlmParams.model_validate({"model": "x", "knowledge_cutoff": "2024-02-30"})
    with pytest.raises(ValueError):
        LlmParams.model_validate({"model": "x", "api_key": "sk-inline"})  # keys come from the environment only


def test_the_packaged_llm_config_and_its_committee_validate():
    config = load_config(CONFIGS / "llm.yaml")
    llm = next(m for m in config.models if m.kind == "llm")
    params = LlmParams.model_validate(llm.params)
    assert params.base_url == "http://localhost:11434/v1" and params.api_key_env is None
    committee = {**llm.params, "model": None, "members": [{"model": "a"}, {"model": "b", "api_key_env": "K"}]}
    assert [v.api_key_env for v in LlmParams.model_validate(committee).voters()] == [None, "K"]


def test_symbol_batches_are_asked_apart_and_joined(stub, tmp_path, market):
    model, weights, records = _run(_params(stub, tmp_path, symbols_per_request=2), market.slice(0, 25))
    shown = [[s["symbol"] for s in json.loads(json.loads(r["raw"])["messages"][-1]["content"])["symbols"]]
             for r in stub.requests]
    assert sorted(shown) == sorted([list(market.symbols[:2]), [market.symbols[2]]] * 3)
    calls = model.account()["calls"]
    assert [c["batch"] for c in calls] == [0, 1] * 3
    for t, (a, b) in zip((0, 10, 20), zip(calls[::2], calls[1::2], strict=True), strict=True):
        joined = np.array([*a["weights"].values(), *b["weights"].values()])
        np.testing.assert_array_equal(weights[t], joined / max(1.0, joined.sum()))  # scaled to a gross of 1
    assert all(r.features[7].name == "confidence" and r.features[7].value == 0.6 for r in records)


def test_every_parameter_is_in_the_docs_table():
    doc = (Path(titan_ray.__file__).parents[1] / "docs" / "llm.md").read_text()
    table = doc.split("## Every parameter", 1)[1].split("\n## ", 1)[0]
    missing = [k for k in LlmParams.model_fields if f"`{k}`" not in table]
    assert not missing, f"docs/llm.md's parameter table lacks {missing}"


def test_a_refused_key_needs_a_person_and_is_never_cached(stub, tmp_path, market, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with pytest.raises(LlmEndpointError, match="http 401"):
        _run(_params(stub, tmp_path), market.slice(0, 5))
    assert not list((tmp_path / "cache").rglob("*.json"))
    assert all(r["auth"] == "Bearer sk-wrong" for r in stub.requests)


def test_an_unreachable_server_is_a_failure_that_is_not_cached(stub, tmp_path, market):
    stub.stop()  # nothing listens on its port now
    model, weights, _ = _run(_params(stub, tmp_path, max_retries=2), market.slice(0, 15))
    calls = model.account()["calls"]
    assert [c["status"] for c in calls] == ["failed", "failed"]
    assert all("connection" in c["error"] and c["attempts"] == 3 for c in calls)
    assert (weights == 0).all() and not list((tmp_path / "cache").rglob("*.json"))


def test_a_key_variable_that_is_not_set_is_named(stub, tmp_path, market, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    model = build_model("llm", "llm", _params(stub, tmp_path), market.symbols, seed=1)
    with pytest.raises(LlmKeyMissing, match=KEY_ENV):
        model.decide(market.slice(0, 5))
    assert KEY_ENV in model.account()["error"] and not stub.requests
