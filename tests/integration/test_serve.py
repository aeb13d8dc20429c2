"""The Serve app against a real local Ray, over real HTTP (the session's ``serve_app``)."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from serve_app import ARENA_BARS

pytestmark = pytest.mark.ray


def _get(url: str, path: str, **kw) -> dict:
    r = requests.get(url + path, timeout=30, **kw)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def example(serve_url) -> dict:
    return _get(serve_url, "/v1/models/sma")["example_request"]


def _post_many(url: str, path: str, bodies: list[tuple[dict, dict]], workers: int = 8) -> list[dict]:
    """POST every (body, headers) from ``workers`` threads; the answers in the order of ``bodies``."""
    answers: list[dict | None] = [None] * len(bodies)

    def run(indices: list[int]) -> None:
        with requests.Session() as s:
            for i in indices:
                body, headers = bodies[i]
                r = s.post(url + path, json=body, headers=headers, timeout=30)
                assert r.status_code == 200, r.text
                answers[i] = r.json()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, [list(range(len(bodies)))[w::workers] for w in range(workers)]))
    return answers  # type: ignore[return-value]


# --- predictions -----------------------------------------------------------------------------------


def test_predict_answers_weight_score_version_and_explanation(serve_url, example):
    from titan_ray.serve.predictor import ModelInfo, Predictor, PredictRequest

    r = requests.post(f"{serve_url}/v1/predict/sma", json=example, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "sma" and body["kind"] == "sma_crossover" and body["version"] is None
    assert [p["symbol"] for p in body["predictions"]] == example["bars"]["symbols"]
    for p in body["predictions"]:
        assert p["target_weight"] in (0.0, 0.5)
        assert [f["name"] for f in p["explanation"]["features"]] == ["sma_3", "sma_8", "gap_pct"]
        assert math.isfinite(p["score"]) and p["explanation"]["sentence"]
    # the same answer as the model run in this process over the same bars
    from titan_ray.models.kinds import build_model

    info = ModelInfo("sma", "sma_crossover", "rule", None, None, {"fast": 3, "slow": 8}, None, ("bars",))
    local = Predictor(info, lambda s: build_model("sma", "sma_crossover", {"fast": 3, "slow": 8}, s, seed=7))
    assert local.predict(PredictRequest.model_validate(example)) == body


def test_predict_crossing_goes_long(serve_url):
    closes = [100.0] * 8 + [99.0, 98.0, 97.0, 99.0, 103.0]  # fast average crosses above the slow one at the end
    body = {"bars": {"symbols": ["XYZ"], "close": [[c] for c in closes]}}
    out = requests.post(f"{serve_url}/v1/predict/sma_fast", json=body, timeout=30).json()
    p = out["predictions"][0]
    assert p["previous_weight"] == 0.0 and p["target_weight"] == 1.0
    assert p["explanation"]["sentence"].startswith("Went long XYZ")


def test_models_list_and_openapi(serve_url):
    models = {m["name"]: m for m in _get(serve_url, "/v1/models")["models"]}
    assert set(models) == {"sma", "sma_fast", "rsi", "hold"}
    assert models["rsi"]["params"] == {"period": 5, "low": 40, "high": 60, "weight": None}
    spec = _get(serve_url, "/openapi.json")
    assert "/v1/predict/{model}" in spec["paths"] and "/v1/experiments/{name}/weights" in spec["paths"]
    assert _get(serve_url, "/healthz")["status"] == "ok"


# --- errors: 401 / 403 / 404 / 422, never 500 --------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({}, "body"),
    ({"bars": {"symbols": ["A"], "close": [[1.0, 2.0]]}}, "bars.close[0] has 2 values"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]], "high": [[1.0], [2.0]]}}, "bars.high has 2 rows"),
    ({"bars": {"symbols": ["A"], "close": [[-1.0]]}}, "bars.close: prices must be finite and > 0"),
    ({"bars": {"symbols": ["A"], "close": [["x"]]}}, "body.bars.close.0.0"),
    ({"bars": {"symbols": ["A", "A"], "close": [[1.0, 1.0]]}}, "symbols must be unique"),
    ({"bars": {"symbols": ["A"], "close": [[1.0], [2.0]], "timestamps": [5, 4]}}, "strictly increasing"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]], "timestamps": ["not a date"]}}, "is not ISO 8601"),
    ({"bars": {"symbols": ["A"], "close": [[1.0]]}, "extra": 1}, "body.extra"),
    ({"features": {"A": {"x": 1.0}}}, "decides from bars"),
    ({"bars": {"symbols": ["A"], "close": [[1.0], [1.1]]}}, "too few for model 'sma'"),
])
def test_bad_predict_bodies_are_422_naming_the_field(serve_url, body, field):
    r = requests.post(f"{serve_url}/v1/predict/sma", json=body, timeout=30)
    assert r.status_code == 422, r.text
    text = json.dumps(r.json())
    assert field in text, text


def test_malformed_json_is_422(serve_url):
    r = requests.post(f"{serve_url}/v1/predict/sma", data=b"{not json", timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 422


@pytest.mark.parametrize("path", ["/v1/predict/nope", "/v1/experiments/nope/predict"])
def test_unknown_model_or_experiment_is_404(serve_url, example, path):
    r = requests.post(serve_url + path, json=example, timeout=30)
    assert r.status_code == 404 and "nope" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/portfolios/nope", "/v1/trades/nope", "/v1/decisions/nope:AAA:1/why",
                                  "/v1/experiments/nope", "/v1/models/nope", "/v1/nothing-here"])
def test_unknown_things_are_404(serve_url, path):
    assert requests.get(serve_url + path, timeout=30).status_code == 404


@pytest.mark.parametrize(("path", "param"), [("/v1/equity?points=1", "points"), ("/v1/trades/sma?limit=0", "limit"),
                                             ("/v1/equity?points=abc", "points")])
def test_bad_query_is_422(serve_url, path, param):
    r = requests.get(serve_url + path, timeout=30)
    assert r.status_code == 422 and param in r.json()["message"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("put", "/v1/experiments/ab/weights", {"weights": {"control": 0.7, "treatment": 0.3}}),
    ("post", "/v1/models/hold/kill-switch", {"on": False}),
])
def test_mutations_need_the_bearer_token(serve_url, serve_token, method, path, body):
    call = getattr(requests, method)
    none = call(serve_url + path, json=body, timeout=30)
    assert none.status_code == 401 and none.headers["www-authenticate"] == 'Bearer realm="titan-ray"'
    wrong = call(serve_url + path, json=body, headers={"Authorization": "Bearer not-the-token"}, timeout=30)
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert serve_token not in wrong.text and "not-the-token" not in wrong.text
    basic = call(serve_url + path, json=body, headers={"Authorization": f"Basic {serve_token}"}, timeout=30)
    assert basic.status_code == 401
    right = call(serve_url + path, json=body, headers={"Authorization": f"Bearer {serve_token}"}, timeout=30)
    assert right.status_code == 200, right.text


def test_bad_weights_are_422(serve_url, serve_token):
    auth = {"Authorization": f"Bearer {serve_token}"}
    for weights, text in [({"ghost": 1.0}, "unknown arms ['ghost']"), ({"control": -1.0}, "weights.control"),
                          ({"control": 0.0, "treatment": 0.0}, "more than 0"), ({"shadow": 1.0}, "unknown arms")]:
        r = requests.put(f"{serve_url}/v1/experiments/ab/weights", json={"weights": weights}, headers=auth, timeout=30)
        assert r.status_code == 422 and text in r.json()["detail"], r.text


# --- experiments ------------------------------------------------------------------------------------


def test_split_ratio_sticky_keys_and_shadow(serve_url, example):
    before = {a["name"]: a for a in _get(serve_url, "/v1/experiments/ab")["arms"]}
    n = 2000
    answers = _post_many(serve_url, "/v1/experiments/ab/predict", [(example, {})] * n)
    arms = [a["arm"] for a in answers]
    assert set(arms) <= {"control", "treatment"}, "the shadow arm must never answer"
    share = arms.count("control") / n
    assert abs(share - 0.7) < 4 * math.sqrt(0.7 * 0.3 / n), share  # four standard errors
    models = {a["arm"]: a["model"] for a in answers}
    assert models == {"control": "sma_fast", "treatment": "sma"}

    keys = [f"client-{i}" for i in range(60)]
    requests_ = [(example, {"X-Client-Key": k}) for k in keys * 3]
    keyed = _post_many(serve_url, "/v1/experiments/ab/predict", requests_)
    by_key: dict[str, set[str]] = {}
    for a, (_, h) in zip(keyed, requests_, strict=True):
        by_key.setdefault(h["X-Client-Key"], set()).add(a["arm"])
    from titan_ray.serve.experiments import pick, sticky_point

    for k, got in by_key.items():
        assert got == {pick({"control": 0.7, "treatment": 0.3}, sticky_point("ab", k))}, k
    assert {a for s in by_key.values() for a in s} == {"control", "treatment"}

    total = n + len(keyed)
    deadline = time.monotonic() + 30
    while True:  # shadow copies are sent after the answer: let them land
        after = {a["name"]: a for a in _get(serve_url, "/v1/experiments/ab")["arms"]}
        shadow = after["shadow"]["requests"] - before["shadow"]["requests"]
        if shadow >= total or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert shadow == total, "every request is copied to the shadow arm (mirror 1.0)"
    answered = sum(after[a]["requests"] - before[a]["requests"] for a in ("control", "treatment"))
    assert answered == total
    assert after["shadow"]["agreement"]["compared"] >= total
    assert after["shadow"]["latency_ms"]["p50"] > 0 and after["control"]["errors"] == 0


def test_experiment_report(serve_url):
    body = _get(serve_url, "/v1/experiments/ab")
    arms = {a["name"]: a for a in body["arms"]}
    assert set(arms) == {"control", "treatment", "shadow"} and arms["shadow"]["shadow"] is True
    for a in arms.values():
        assert {"requests", "errors", "latency_ms", "metrics", "model", "version", "weight"} <= set(a)
        assert a["metrics"]["in_arena"] is True and "sharpe" in a["metrics"]
    comparison = body["comparison"]
    assert comparison["control"] == "control"
    tests = {t["arm"]: t for t in comparison["tests"]}
    assert set(tests) == {"treatment", "shadow"}
    assert 0 < tests["treatment"]["p_value"] <= 1 and tests["treatment"]["n_bars"] > 10
    # the example request is accepted by the experiment's predict route
    r = requests.post(f"{serve_url}/v1/experiments/ab/predict", json=body["example_request"], timeout=30)
    assert r.status_code == 200 and r.json()["arm"] in ("control", "treatment")
    listed = _get(serve_url, "/v1/experiments")["experiments"]
    assert listed[0]["name"] == "ab" and {a["name"] for a in listed[0]["arms"]} == set(arms)


def _arm_keys(weights: dict[str, float]) -> dict[str, str]:
    """An X-Client-Key per live arm of ``ab`` that the router sends to that arm (its sticky choice)."""
    from titan_ray.serve.experiments import pick, sticky_point

    keys: dict[str, str] = {}
    i = 0
    while len(keys) < sum(w > 0 for w in weights.values()):
        keys.setdefault(pick(weights, sticky_point("ab", f"client-{i}")), f"client-{i}")
        i += 1
    return keys


def _shadow_row(url: str) -> dict:
    return {a["name"]: a for a in _get(url, "/v1/experiments/ab")["arms"]}["shadow"]


def _settled_shadow_row(serve_url: str, timeout_s: float = 30.0) -> dict:
    """The shadow arm's row once the copies queued before are all compared (two looks 1 s apart agree)."""
    def counts(row: dict) -> tuple:  # not its arena metrics, which move with every bar
        return row["requests"], row["errors"], row["dropped"], row["agreement"]["compared"]

    deadline, last = time.monotonic() + timeout_s, _shadow_row(serve_url)
    while True:
        time.sleep(1.0)
        row = _shadow_row(serve_url)
        if counts(row) == counts(last):
            return row
        assert time.monotonic() < deadline, ("the shadow's counts kept moving", counts(last), counts(row))
        last = row


def test_the_experiment_example_is_answered_by_every_arm_and_the_shadow(serve_url):
    """The control's model needs the shortest window (5 bars), the treatment's the longest (8): the
    experiment's example is as long as the longest need, and posted through the experiment's own
    route (HAProxy -> its app) every live arm answers it 200, and so does the shadow."""
    models = {m["name"]: m for m in _get(serve_url, "/v1/models")["models"]}
    report = _get(serve_url, "/v1/experiments/ab")
    arms = {a["name"]: a for a in report["arms"]}
    need = {name: models[a["model"]]["min_rows"] for name, a in arms.items()}
    example = report["example_request"]
    assert len(example["bars"]["close"]) == max(need.values()) == need["treatment"] > need["control"], need
    before = _settled_shadow_row(serve_url)  # the earlier tests' copies compared: only this test's count
    keys = _arm_keys({name: a["weight"] for name, a in arms.items() if not a["shadow"]})
    assert set(keys) == {"control", "treatment"}
    sent = 0
    for arm, key in keys.items():
        for _ in range(3):
            r = requests.post(f"{serve_url}/v1/experiments/ab/predict", json=example, timeout=30,
                              headers={"X-Client-Key": key})
            assert r.status_code == 200, (arm, r.text)
            assert r.json()["arm"] == arm and r.json()["model"] == arms[arm]["model"]
            sent += 1
    deadline = time.monotonic() + 30
    while (after := _shadow_row(serve_url))["agreement"]["compared"] < before["agreement"]["compared"] + sent:
        assert time.monotonic() < deadline, (before, after)
        time.sleep(0.3)
    # compared: the shadow answered 200 (a refusal is an answer that is never compared)
    assert after["agreement"]["compared"] - before["agreement"]["compared"] == sent
    assert after["requests"] - before["requests"] == sent and after["errors"] == before["errors"]
    assert after["dropped"] == 0


def test_every_model_answers_its_own_example_and_no_shorter_window(serve_url):
    for m in _get(serve_url, "/v1/models")["models"]:
        detail = _get(serve_url, f"/v1/models/{m['name']}")
        example = detail["example_request"]
        assert len(example["bars"]["close"]) == detail["min_rows"] == m["min_rows"]
        r = requests.post(f"{serve_url}/v1/predict/{m['name']}", json=example, timeout=30)
        assert r.status_code == 200, (m["name"], r.text)
        if detail["min_rows"] > 2:  # a window has two bars at least: hold answers any
            shorter = {"bars": {k: v[1:] if k != "symbols" else v for k, v in example["bars"].items()}}
            r = requests.post(f"{serve_url}/v1/predict/{m['name']}", json=shorter, timeout=30)
            assert r.status_code == 422 and "too few" in r.text, (m["name"], r.text)


def test_the_router_answers_as_the_arms_own_apps(serve_url, example):
    """The live arms' model versions are loaded in the experiment's router, which answers without a
    call to another replica: the same answer as the model's own app gives."""
    deadline = time.monotonic() + 60
    while True:
        arms = {a["name"]: a for a in _get(serve_url, "/v1/experiments/ab")["arms"]}
        if all(a["answered_in"] == "router" for a in arms.values() if not a["shadow"]):
            break
        assert time.monotonic() < deadline, arms
        time.sleep(0.5)
    assert arms["shadow"]["answered_in"] == "model-rsi", "shadow copies go to the shadow's own app"
    for arm, key in _arm_keys({n: a["weight"] for n, a in arms.items() if not a["shadow"]}).items():
        routed = requests.post(f"{serve_url}/v1/experiments/ab/predict", json=example, timeout=30,
                               headers={"X-Client-Key": key}).json()
        own = requests.post(f"{serve_url}/v1/predict/{arms[arm]['model']}", json=example, timeout=30).json()
        assert routed.pop("experiment") == "ab" and routed.pop("arm") == arm
        assert routed == own


def test_weights_change_live_without_restarting_the_router(serve_app, example):
    url, auth = serve_app.url, {"Authorization": f"Bearer {serve_app.token}"}
    first = _get(url, "/v1/experiments/ab")
    replica = first["replica"]
    try:
        r = requests.put(f"{url}/v1/experiments/ab/weights", json={"weights": {"control": 0, "treatment": 1}},
                         headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        arms = [a["arm"] for a in _post_many(url, "/v1/experiments/ab/predict", [(example, {})] * 40, workers=4)]
        assert set(arms) == {"treatment"}
        # a deploy with new weights in user_config: Serve calls reconfigure on the running replica
        serve_app.redeploy({"control": 1, "treatment": 0})
        deadline = time.monotonic() + 60
        while True:
            state = _get(url, "/v1/experiments/ab")
            if state["weights_source"] == "user_config" and state["reconfigures"] > first["reconfigures"]:
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
        arms = [a["arm"] for a in _post_many(url, "/v1/experiments/ab/predict", [(example, {})] * 40, workers=4)]
        assert set(arms) == {"control"}
        assert state["replica"] == replica, "the router replica must not restart"
    finally:
        serve_app.redeploy()  # the session's weights again (0.7 / 0.3)
        deadline = time.monotonic() + 60
        while {a["name"]: a["weight"] for a in _get(url, "/v1/experiments/ab")["arms"]}["control"] != pytest.approx(0.7):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert _get(url, "/v1/experiments/ab")["replica"] == replica


# --- the arena --------------------------------------------------------------------------------------


def test_arena_routes(serve_url):
    board = _get(serve_url, "/v1/leaderboard")
    assert board["status"] in ("running", "finished") and board["benchmark"] == "hold"
    assert {r["model"] for r in board["rows"]} == {"sma", "sma_fast", "rsi", "hold"}
    assert board["progress"]["bars_total"] == ARENA_BARS and board["progress"]["bars_done"] > 0
    eq = _get(serve_url, "/v1/equity?points=50")
    assert 0 < len(eq["timestamps"]) <= 50 and set(eq["models"]) == {"sma", "sma_fast", "rsi", "hold"}
    assert len(eq["models"]["sma"]["equity"]) == len(eq["timestamps"])
    port = _get(serve_url, "/v1/portfolios/hold")
    assert port["model"] == "hold" and port["positions"] and port["equity"] > 0
    deadline = time.monotonic() + 60
    while not (trades := _get(serve_url, "/v1/trades/sma?limit=5"))["fills"]:
        assert time.monotonic() < deadline, "sma never traded"
        time.sleep(1)
    assert len(trades["fills"]) <= 5
    did = trades["fills"][-1]["decision_id"]
    why = _get(serve_url, f"/v1/decisions/{did}/why")
    assert why["decision_id"] == did and why["model"] == "sma" and why["sentence"]
    assert [f["name"] for f in why["features"]] == ["sma_3", "sma_8", "gap_pct"]


def test_events_stream_leaderboard_and_fills(serve_url):
    seen: dict[str, list] = {}
    deadline = time.monotonic() + 60
    with requests.get(f"{serve_url}/v1/events", stream=True, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = None
        for raw in r.iter_lines(decode_unicode=True):
            if raw.startswith("event: "):
                event = raw[7:]
            elif raw.startswith("data: ") and event:
                seen.setdefault(event, []).append(json.loads(raw[6:]))
            if ("fill" in seen and "leaderboard" in seen) or time.monotonic() > deadline:
                break
    assert seen["status"][0]["status"] in ("running", "finished")
    assert seen["leaderboard"][0]["rows"]
    if seen["status"][0]["status"] == "running":
        fill = seen["fill"][0][0]
        assert {"model", "decision_id", "timestamp", "symbol", "side", "quantity", "price", "commission"} <= set(fill)


def test_kill_switch_flattens_a_model(serve_url, serve_token):
    auth = {"Authorization": f"Bearer {serve_token}"}
    r = requests.post(f"{serve_url}/v1/models/rsi/kill-switch", json={"on": True}, headers=auth, timeout=30)
    if r.status_code == 409:
        pytest.fail(f"the test arena finished before the kill-switch test: {r.text}")
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while _get(serve_url, "/v1/portfolios/rsi")["halted"] != "KILL_SWITCH":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    deadline = time.monotonic() + 30
    while _get(serve_url, "/v1/portfolios/rsi")["positions"]:
        assert time.monotonic() < deadline, "the kill switch must flatten the model"
        time.sleep(0.5)
    assert requests.post(f"{serve_url}/v1/models/ghost/kill-switch", headers=auth, timeout=30).status_code == 404


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_arena_runs_below_the_serve_replicas(serve_url):
    """The live arena's processes (its service, market, models, ledger, watchdog) run at niceness 19,
    the model replicas at Ray's: a prediction does not wait while the arena trades."""
    expected = {"service", "market", "ledger", "watchdog"} | {f"model {m}" for m in ("sma", "sma_fast", "rsi", "hold")}
    deadline = time.monotonic() + 60
    while set(nice := _get(serve_url, "/healthz")["arena"]["nice"]) != expected:
        assert time.monotonic() < deadline, nice
        time.sleep(0.5)
    assert set(nice.values()) == {19}, nice
    replica = int(_get(serve_url, "/v1/models/sma")["replica"].split("-")[0])
    assert _nice(replica) < 19


def _predict_count(serve_url: str) -> float:
    text = requests.get(f"{serve_url}/metrics", timeout=30).text
    key = 'titan_ray_requests_total{arm="-",code="200",route="/v1/predict/{model}"} '
    return sum(float(line[len(key):]) for line in text.splitlines() if line.startswith(key))


def test_metrics_count_the_requests_other_apps_answered(serve_url, example):
    """/v1/predict/NAME is answered by the model's own app: its replica's counts reach /metrics."""
    before = _predict_count(serve_url)
    while (settled := (time.sleep(1.5), _predict_count(serve_url))[1]) != before:  # earlier tests' pushes land
        before = settled
    for _ in range(5):
        assert requests.post(f"{serve_url}/v1/predict/hold", json=example, timeout=30).status_code == 200
    deadline = time.monotonic() + 15
    while (after := _predict_count(serve_url)) < before + 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert after == before + 5


def test_a_listed_model_whose_app_is_gone_is_503_naming_it(serve_app, example):
    """Requests for a model reach the main ingress only when the model's app does not run. The
    model's app comes back on its own (a new replica); the main ingress's model info follows within
    its cache's time to live."""
    from ray import serve

    from titan_ray.serve.app import INFO_TTL_S

    def replica() -> str:
        return requests.get(f"{serve_app.url}/v1/models/hold", timeout=30).json()["replica"]

    old = replica()
    serve.delete("model-hold")
    try:
        deadline = time.monotonic() + 30
        while True:
            r = requests.post(f"{serve_app.url}/v1/predict/hold", json=example, timeout=30)
            if r.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert r.status_code == 503 and "model-hold" in r.json()["detail"], r.text
        assert requests.post(f"{serve_app.url}/v1/predict/ghost", json=example, timeout=30).status_code == 404
    finally:
        serve_app.redeploy()  # the whole config again: model-hold comes back
    r = requests.post(f"{serve_app.url}/v1/predict/hold", json=example, timeout=30)
    assert r.status_code == 200 and r.json()["model"] == "hold", r.text
    deadline = time.monotonic() + INFO_TTL_S + 10
    while (new := replica()) == old and time.monotonic() < deadline:
        time.sleep(0.5)
    assert new != old, "the main ingress still shows the replica of the deleted app"


def test_metrics_are_exported(serve_url, example):
    requests.post(f"{serve_url}/v1/predict/sma", json=example, timeout=30)
    text = requests.get(f"{serve_url}/metrics", timeout=30).text
    from titan_ray.observability import METRIC_NAMES

    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text, name
    assert 'titan_ray_requests_total{arm="-",code="200",route="/v1/predict/{model}"}' in text
    assert 'titan_ray_request_latency_seconds_bucket{arm="-",le="0.005",route="/v1/predict/{model}"}' in text
    assert 'titan_ray_equity{model="hold"}' in text
    bars = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("titan_ray_bars_total ")]
    assert bars and bars[0] > 0
    fills = [line for line in text.splitlines() if line.startswith("titan_ray_fills_total{")]
    assert fills and all(np.isfinite(float(x.split()[-1])) for x in fills)
