"""The model lifecycle end to end, on the shared local Ray and the session's Serve app, over real HTTP.

A LightGBM champion trained on a trending market is served as ``lc@champion`` with a lifecycle:
the live feed (Parquet files) turns mean-reverting at twice the volatility at ``DRIFT_BAR``. The
controller must raise no alert before the drift and one after it (webhook), retrain on the new
market (a Ray task, logged to a real MLflow server), register the result as the challenger, which
Serve's model app shadows on live requests, promote it by the rule with its evidence, and Serve
must switch versions without a failed request; a rollback over HTTP then switches back.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import ray
import requests
from drift_feed import feed_config, write_drift_feed
from prom import samples

from titan_ray.config import DataConfig, LedgerConfig, RiskConfig
from titan_ray.data.providers import make_provider
from titan_ray.domain.calendar import periods_per_year
from titan_ray.lifecycle.controller import find_controller
from titan_ray.lifecycle.retrain import fit_and_validate
from titan_ray.registry import ModelRegistry
from titan_ray.serve.settings import ARENA_NAMESPACE

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NAME = "lc"
START_BAR, DRIFT_BAR, BARS = 1500, 2000, 6000
PARAMS = {"horizon": 1, "entry": 0.5, "allow_short": True, "n_estimators": 100, "cv_folds": 0}
LEDGER = {"initial_cash": 1_000_000, "commission_bps": 1}


class Hook(ThreadingHTTPServer):
    """An alert webhook on loopback: keeps the JSON bodies it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"


class Traffic(threading.Thread):
    """Live requests to /v1/predict/lc, one after another, until stopped: (status, version) each."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.answers: list[tuple[int, int | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with requests.Session() as http:
            while not self.stop.is_set():
                try:
                    r = http.post(self.url, json=self.body, timeout=30)
                    self.answers.append((r.status_code, r.json().get("version") if r.status_code == 200 else None))
                except requests.RequestException:
                    self.answers.append((0, None))
                time.sleep(0.02)


def wait_for(what: str, check: Any, timeout: float, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def test_drift_retrain_shadow_promote_switch_and_roll_back(serve_app, serve_token, mlflow_url, tmp_path):
    feed = write_drift_feed(tmp_path / "feed", bars=BARS, drift_bar=DRIFT_BAR)
    market = make_provider(DataConfig.model_validate(feed_config(feed)), 7).load()
    history = market.bars.slice(0, START_BAR)
    periods = periods_per_year(market.frequency, market.calendar)
    champion = fit_and_validate(NAME, "lightgbm", PARAMS, history, validation_bars=300,
                                ledger=LedgerConfig.model_validate(LEDGER), risk=RiskConfig(),
                                calendar=market.calendar.value, periods_per_year=periods, seed=7)
    registry = ModelRegistry()  # the session's ($TITAN_RAY_REGISTRY): the one the apps read
    v1 = registry.register_model(champion, history, name=NAME, extra={"symbols": list(history.symbols)})
    registry.set_alias(NAME, "champion", v1.version, who="test", why="the first champion")
    assert (v1.path / "drift_profile.json").exists()  # the drift reference, written at registration

    hook = Hook()
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    app = {"name": NAME, "artifact": f"{NAME}@champion", "follow_s": 0.5, "lifecycle": {
        "feed": feed_config(feed), "start_bar": START_BAR, "speed": 50, "chunk_bars": 10, "num_cpus": 0,
        "drift": {"window_bars": 300, "check_every_bars": 50, "perf_window_bars": 300, "cooldown_bars": 5000},
        "alerts": {"webhook_url": hook.url},
        "retrain": {"wait_bars": 150, "window_bars": 300, "validation_bars": 100, "num_cpus": 0},
        "promotion": {"mode": "auto", "min_bars": 400, "max_looks": 3, "n_resamples": 300},
        "ledger": LEDGER, "tracking": {"mlflow_uri": mlflow_url}}}
    base, auth = serve_app.url, {"Authorization": f"Bearer {serve_token}"}
    window = market.bars.slice(START_BAR - 80, START_BAR)
    body = {"bars": {"symbols": list(window.symbols), "close": window.close.tolist(), "open": window.open.tolist(),
                     "high": window.high.tolist(), "low": window.low.tolist(), "volume": window.volume.tolist()}}
    traffic = Traffic(f"{base}/v1/predict/{NAME}", body)
    try:
        serve_app.redeploy(extra_models=[app])
        model = wait_for("the champion served with its lifecycle", lambda: _served(base, 1), 120)
        assert model["alias"] == "champion" and model["artifact"] == f"{NAME}@1"
        traffic.start()

        # drift -> alert (after the drift, never before) -> retraining -> challenger, shadowing
        shadowing = wait_for("the challenger shadowing live requests", lambda: _shadowing(base), 150, every=0.2)
        assert shadowing["shadow"]["version"] == 2 and shadowing["shadow"]["artifact"] == f"{NAME}@2"
        assert shadowing["shadow"]["requests"] > 0 and shadowing["shadow"]["errors"] == 0

        # the rule promotes it; Serve follows without a failed request
        wait_for("the promotion", lambda: any(e["action"] == "promote" for e in registry.history(NAME)), 120)
        served = wait_for("version 2 served", lambda: _served(base, 2), 30)
        state = served["lifecycle"]
        assert state["alerts_total"] >= 1 and state["alerts"][0]["bar"] > DRIFT_BAR  # none before the drift
        assert state["retraining"]["status"] == "done" and state["retraining"]["version"] == 2
        assert state["retraining"]["window"][0] >= DRIFT_BAR - 150  # fitted on the new market, mostly
        assert state["retraining"]["mlflow_run"].startswith(mlflow_url)
        assert state["promotions"] == 1 and state["champion"]["version"] == 2
        assert state["drift"]["features"] and state["drift"]["prediction"]["psi"] is not None
        assert hook.bodies and hook.bodies[0]["event"] == "titan-ray.drift" and hook.bodies[0]["bar"] > DRIFT_BAR
        assert hook.bodies[0]["reasons"]
        wait_for("traffic answered by version 2", lambda: any(v == 2 for _, v in traffic.answers), 30)

        # a rollback over HTTP (authenticated), recorded, followed
        assert requests.post(f"{base}/v1/registry/{NAME}/rollback", json={"why": "x"}, timeout=30).status_code == 401
        r = requests.post(f"{base}/v1/registry/{NAME}/rollback", headers=auth, timeout=30,
                          json={"why": "the desk wants the old model back", "who": "risk-desk"})
        assert r.status_code == 200, r.text
        assert r.json()["event"]["version"] == 1 and r.json()["aliases"]["champion"] == 1
        wait_for("version 1 served again", lambda: _served(base, 1), 30)
        n = len(traffic.answers)
        wait_for("traffic answered by version 1 again", lambda: any(v == 1 for _, v in traffic.answers[n:]), 30)

        # an approval over HTTP: version 2 promoted by a person, followed again
        assert requests.get(f"{base}/v1/registry/nope/history", timeout=30).status_code == 404
        r = requests.post(f"{base}/v1/registry/{NAME}/promote", headers=auth, timeout=30,
                          json={"why": "reviewed the evidence again", "who": "pm", "version": 2})
        assert r.status_code == 200, r.text
        assert r.json()["event"]["action"] == "promote" and r.json()["aliases"]["champion"] == 2
        wait_for("version 2 served again", lambda: _served(base, 2), 30)
        n = len(traffic.answers)
        wait_for("traffic answered by version 2 again", lambda: any(v == 2 for _, v in traffic.answers[n:]), 30)

        # the lifecycle's gauges through the main ingress's /metrics
        metrics = samples(requests.get(f"{base}/metrics", timeout=30).text)
        assert metrics[("titan_ray_drift_alerts_total", (("model", NAME),))] >= 1
        assert metrics[("titan_ray_model_version", (("alias", "champion"), ("model", NAME)))] == 2
        psi = {k[1]: v for k, v in metrics.items() if k[0] == "titan_ray_drift_psi" and ("model", NAME) in k[1]}
        assert len(psi) >= 10 and all(np.isfinite(v) and v >= 0 for v in psi.values())
        assert ("titan_ray_prediction_psi", (("model", NAME),)) in metrics
    finally:
        traffic.stop.set()
        if traffic.is_alive():
            traffic.join(timeout=60)
        controller = find_controller(NAME, ARENA_NAMESPACE)
        if controller is not None:
            ray.kill(controller, no_restart=True)
        serve_app.redeploy()  # the session's apps, as the other tests expect them
        hook.shutdown()

    statuses = [s for s, _ in traffic.answers]
    assert len(statuses) > 50 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    versions = [v for _, v in traffic.answers]
    switches = [b for a, b in itertools.pairwise(versions) if a != b]
    assert switches == [2, 1, 2], switches  # promoted, rolled back, approved: each switch once, no flapping

    events = requests.get(f"{base}/v1/registry/{NAME}/history", timeout=30).json()["events"]
    actions = [(e["action"], e["alias"], e["version"]) for e in events]
    assert actions[:5] == [("assign", "champion", 1), ("assign", "challenger", 2), ("promote", "champion", 2),
                           ("rollback", "champion", 1), ("promote", "champion", 2)], actions
    assigned, promoted, rolled = events[1], events[2], events[3]
    assert assigned["who"] == "titan-ray lifecycle retraining" and assigned["evidence"]["alert"]["reasons"]
    assert promoted["who"] == "titan-ray lifecycle controller" and promoted["archived"] == 1
    ev = promoted["evidence"]
    assert all(ev["checks"].values()) and ev["p_value"] < ev["level"] and ev["n_bars"] >= 400
    assert ev["sharpe_challenger"] > ev["sharpe_champion"] and ev["challenger"] == 2 and ev["champion"] == 1
    assert rolled["who"] == "api:api-token for risk-desk" and rolled["why"] == "the desk wants the old model back"
    assert rolled["archived"] == 2
    assert events[4]["who"] == "api:api-token for pm" and events[4]["previous"] == 1 and events[4]["archived"] == 1
    view = requests.get(f"{base}/v1/registry/{NAME}", timeout=30).json()
    assert view["aliases"]["champion"] == 2 and {v["version"]: v["stage"] for v in view["versions"]}[1] == "archived"

    # the retraining job's run in MLflow: its params and validation metrics
    search = requests.post(f"{mlflow_url}/api/2.0/mlflow/runs/search", timeout=30, json={
        "experiment_ids": [_experiment(mlflow_url, "titan-ray-retraining")], "max_results": 10}).json()
    runs = [r for r in search.get("runs", []) if _params(r).get("model") == NAME]
    assert runs, search
    params, metrics = _params(runs[0]), {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]}
    assert params["kind"] == "lightgbm" and params["registered"] == f"{NAME}@2" and params["window_bars"] == "300"
    assert np.isfinite(metrics["val_sharpe"]) and metrics["validation_bars"] == 100


def _served(base: str, version: int) -> dict[str, Any] | None:
    r = requests.get(f"{base}/v1/models/{NAME}", timeout=30)
    if r.status_code != 200:
        return None
    model = r.json()
    ok = model["version"] == version and (model.get("lifecycle") or {}).get("status") in ("running", "feed ended")
    return model if ok else None


def _shadowing(base: str) -> dict[str, Any] | None:
    r = requests.get(f"{base}/v1/models/{NAME}", timeout=30)
    model = r.json() if r.status_code == 200 else {}
    shadow = model.get("shadow")
    return model if shadow and shadow["requests"] > 0 else None


def _experiment(url: str, name: str) -> str:
    r = requests.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}, timeout=30)
    r.raise_for_status()
    return r.json()["experiment"]["experiment_id"]


def _params(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}
