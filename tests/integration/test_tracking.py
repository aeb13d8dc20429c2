"""MLflow tracking against a real `mlflow server` (SQLite store, artifact proxy), checked through the
server's own REST API; failures after a run started against a small HTTP server that answers like
MLflow and then breaks (HTTP 500, then gone)."""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from titan_ray.net import free_port
from titan_ray.tracking import ENV_VAR, Tracker, TrackingError, tracking_uri

AUTH_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch) -> None:
    for name in (*AUTH_VARS, ENV_VAR):
        monkeypatch.delenv(name, raising=False)


def api(url: str, endpoint: str, **query: str) -> dict[str, Any]:
    response = requests.get(f"{url}/api/2.0/mlflow/{endpoint}", params=query, timeout=10)
    response.raise_for_status()
    return response.json()


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_a_run_logs_params_metrics_tags_and_artifacts(mlflow_url: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_bytes(b'{"sharpe": 1.25}\n')
    folder = tmp_path / "checkpoint"
    (folder / "sub").mkdir(parents=True)
    weights = bytes(range(256)) * 40
    (folder / "sub" / "weights.bin").write_bytes(weights)
    (folder / "notes a.txt").write_text("a file name with a space\n")

    tracker = Tracker(mlflow_url)
    with tracker.run(fresh("tune"), "trial-1", tags={"titan_ray.kind": "tune"}) as run:
        run.log_params({"model": {"kind": "ppo", "params": {"horizon": 64, "layers": [64, 64]}}, "seed": 7})
        for step in range(3):
            run.log_metrics({"reward": 0.5 * step, "loss": 1.0 / (step + 1)}, step=step)
        run.set_tags({"stage": "done"})
        run.log_artifact(report)
        run.log_artifact(folder, "policies")

    got = api(mlflow_url, "runs/get", run_id=run.run_id)["run"]
    info, data = got["info"], got["data"]
    assert info["status"] == "FINISHED"
    assert info["end_time"] >= info["start_time"] > 0
    assert info["experiment_id"] == run.experiment_id
    assert run.url == f"{mlflow_url}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    assert {p["key"]: p["value"] for p in data["params"]} == {
        "model.kind": "ppo", "model.params.horizon": "64", "model.params.layers": "[64, 64]", "seed": "7",
    }
    latest = {m["key"]: (m["value"], m["step"]) for m in data["metrics"]}
    assert latest == {"reward": (1.0, 2), "loss": (pytest.approx(1 / 3), 2)}
    tags = {t["key"]: t["value"] for t in data["tags"]}
    assert tags["titan_ray.kind"] == "tune" and tags["stage"] == "done"
    assert tags["mlflow.runName"] == "trial-1" and tags["mlflow.source.name"] == "titan-ray"

    history = api(mlflow_url, "metrics/get-history", run_id=run.run_id, metric_key="reward")["metrics"]
    assert sorted((m["step"], m["value"]) for m in history) == [(0, 0.0), (1, 0.5), (2, 1.0)]

    def listed(path: str = "") -> dict[str, bool]:
        files = api(mlflow_url, "artifacts/list", run_id=run.run_id, path=path).get("files", [])
        return {f["path"]: f["is_dir"] for f in files}

    assert listed() == {"report.json": False, "policies": True}
    assert listed("policies/checkpoint") == {"policies/checkpoint/notes a.txt": False,
                                             "policies/checkpoint/sub": True}
    assert listed("policies/checkpoint/sub") == {"policies/checkpoint/sub/weights.bin": False}
    for path, content in [("policies/checkpoint/sub/weights.bin", weights), ("report.json", report.read_bytes())]:
        response = requests.get(f"{mlflow_url}/get-artifact", params={"run_id": run.run_id, "path": path},
                                timeout=10)
        assert response.status_code == 200 and response.content == content


def test_a_body_that_raises_marks_the_run_failed_and_goes_on(mlflow_url: str) -> None:
    with pytest.raises(ValueError, match="boom"), Tracker(mlflow_url).run(fresh("fail"), "r") as run:
        run.log_metrics({"x": 1.0})
        raise ValueError("boom")
    info = api(mlflow_url, "runs/get", run_id=run.run_id)["run"]["info"]
    assert info["status"] == "FAILED"
    assert info["end_time"] >= info["start_time"]


def test_non_finite_metrics_are_skipped_and_params_may_repeat(mlflow_url: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="titan_ray.tracking")
    with Tracker(mlflow_url).run(fresh("skip"), "r") as run:
        run.log_metrics({"ok": 2.5, "nan": math.nan, "none": None, "inf": math.inf, "ninf": -math.inf}, step=1)
        run.log_metrics({"nan": float("nan")})  # nothing left to send: no call, no error
        run.log_params({"lr": 0.001, "window": 20})
        run.log_params({"lr": 0.001})  # the same value again: skipped, no refusal
        assert not caplog.records
        run.log_params({"lr": 0.5, "batch": 32})  # a change MLflow would refuse: warned, the rest is logged
    assert "'lr' was logged as '0.001'" in caplog.text
    data = api(mlflow_url, "runs/get", run_id=run.run_id)["run"]["data"]
    assert {m["key"]: m["value"] for m in data["metrics"]} == {"ok": 2.5}
    assert {p["key"]: p["value"] for p in data["params"]} == {"lr": "0.001", "window": "20", "batch": "32"}
    assert api(mlflow_url, "runs/get", run_id=run.run_id)["run"]["info"]["status"] == "FINISHED"


def test_runs_share_one_experiment_even_when_created_at_once(mlflow_url: str) -> None:
    name = fresh("shared")
    tracker = Tracker(mlflow_url)
    ids: list[str] = []
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            with tracker.run(name, f"racer-{index}") as run:
                ids.append(run.experiment_id)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    with tracker.run(name, "later") as run:
        ids.append(run.experiment_id)
    experiment = api(mlflow_url, "experiments/get-by-name", experiment_name=name)["experiment"]
    assert set(ids) == {experiment["experiment_id"]} and len(ids) == 5
    found = requests.post(f"{mlflow_url}/api/2.0/mlflow/runs/search", timeout=10,
                          json={"experiment_ids": [experiment["experiment_id"]]}).json()["runs"]
    assert len(found) == 5


def test_a_deleted_experiment_is_an_error_that_says_how_to_restore_it(mlflow_url: str) -> None:
    name = fresh("deleted")
    with Tracker(mlflow_url).run(name, "first") as run:
        pass
    requests.post(f"{mlflow_url}/api/2.0/mlflow/experiments/delete", timeout=10,
                  json={"experiment_id": run.experiment_id}).raise_for_status()
    with pytest.raises(TrackingError, match=f"experiments restore --experiment-id {run.experiment_id}"), \
            Tracker(mlflow_url).run(name, "second"):
        pass


def test_an_unreachable_or_unsupported_uri_is_an_error_up_front(monkeypatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    worked = []
    with pytest.raises(TrackingError, match="mlflow server") as caught, Tracker(uri).run("e", "r"):
        worked.append(True)
    assert uri in str(caught.value) and not worked

    with pytest.raises(TrackingError, match="file:///x"):
        tracking_uri("file:///x")
    with pytest.raises(TrackingError, match=r"\$MLFLOW_TRACKING_URI='databricks'"):
        monkeypatch.setenv(ENV_VAR, "databricks")
        tracking_uri(None)
    monkeypatch.delenv(ENV_VAR)
    assert tracking_uri(None) is None and tracking_uri("") is None
    assert Tracker.from_config(None) is None
    monkeypatch.setenv(ENV_VAR, uri)
    assert tracking_uri(None) == uri
    assert tracking_uri("https://mlflow.example.com") == "https://mlflow.example.com"


def test_a_password_in_the_uri_is_never_shown(caplog) -> None:
    uri = f"http://trader:secret@127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError) as caught, Tracker(uri).run("e", "r"):
        pass
    assert "secret" not in str(caught.value) and "trader:***@127.0.0.1" in str(caught.value)
    with pytest.raises(TrackingError) as caught:
        tracking_uri("ftp://trader:secret@host/x")
    assert "secret" not in str(caught.value) and "trader:***@" in str(caught.value)


class FakeMlflow(ThreadingHTTPServer):
    """Answers the calls that start a run like `mlflow server` does; ``fail`` makes every later call an
    HTTP 500. ``seen`` holds (method, path, Authorization header) of each request."""

    def __init__(self, artifact_uri: str) -> None:
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.artifact_uri = artifact_uri
        self.fail = False
        self.seen: list[tuple[str, str, str | None]] = []


class _FakeHandler(BaseHTTPRequestHandler):
    server: FakeMlflow

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.path.endswith("/experiments/create"):
            status, body = 200, {"experiment_id": "7"}
        elif self.path.endswith("/runs/create"):
            status, body = 200, {"run": {"info": {"run_id": "r1", "experiment_id": "7",
                                                  "artifact_uri": self.server.artifact_uri}}}
        elif self.server.fail:
            status, body = 500, {"error_code": "INTERNAL_ERROR", "message": "database is locked"}
        else:
            status, body = 200, {}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = _answer


@pytest.fixture
def fake_mlflow() -> Iterator[FakeMlflow]:
    server = FakeMlflow("file:///srv/mlruns/7/r1/artifacts")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_failures_after_the_start_are_warnings_and_the_work_goes_on(fake_mlflow: FakeMlflow, tmp_path: Path,
                                                                     caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="titan_ray.tracking")
    port = fake_mlflow.server_address[1]
    artifact = tmp_path / "a.txt"
    artifact.write_text("x")
    done = []
    with Tracker(f"http://trader:secret@127.0.0.1:{port}", timeout_s=2).run("e", "r") as run:
        # Credentials go in the header (basic auth), never in the URL.
        assert fake_mlflow.seen[0][2] == "Basic " + base64.b64encode(b"trader:secret").decode()
        fake_mlflow.fail = True
        run.log_metrics({"reward": 1.0}, step=1)
        run.log_params({"a": 1})
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, caplog.text  # one warning per run; the second failure is at DEBUG
        assert f"trader:***@127.0.0.1:{port}" in warnings[0].getMessage()
        assert "HTTP 500" in warnings[0].getMessage() and "database is locked" in warnings[0].getMessage()

        fake_mlflow.fail = False
        run.log_params({"a": 1})  # tried again, not remembered as logged by the failed call
        assert fake_mlflow.seen[-1][:2] == ("POST", "/api/2.0/mlflow/runs/log-batch")

        # A plain file/s3 artifact root is not written to: warned once, nothing uploaded.
        calls = len(fake_mlflow.seen)
        run.log_artifact(artifact)
        run.log_artifact(artifact)
        assert len(fake_mlflow.seen) == calls
        assert caplog.text.count("artifacts are not uploaded") == 1

        fake_mlflow.shutdown()  # the server goes away mid-run
        fake_mlflow.server_close()
        run.log_metrics({"reward": 2.0}, step=2)
        run.set_tags({"k": "v"})
        done.append(True)
    assert done  # the exit's runs/update failed too, quietly
    assert "secret" not in caplog.text
    assert "Connection refused" in caplog.text or "ConnectionRefusedError" in caplog.text


@pytest.mark.ray
def test_an_arena_run_is_one_mlflow_run_with_its_config_and_leaderboard(ray_session, mlflow_url, tmp_path):
    from titan_ray.arena.runner import run_arena
    from titan_ray.config import load_config

    config = load_config(None, {"data": {"n_symbols": 4, "bars": 600}, "replay": {"warmup_bars": 0},
                                "tracking": {"mlflow_uri": mlflow_url},
                                "models": [{"name": "sma", "kind": "sma_crossover", "params": {"fast": 5, "slow": 20}},
                                           {"name": "hold", "kind": "buy_and_hold"}]})
    run = run_arena(config, tmp_path / "out")
    assert run.tracked is not None and run.tracked.startswith(mlflow_url)
    got = api(mlflow_url, "runs/get", run_id=run.tracked.rsplit("/", 1)[-1])["run"]
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    metrics = {m["key"]: m["value"] for m in got["data"]["metrics"]}
    assert got["info"]["status"] == "FINISHED" and got["info"]["run_name"] == run.run_info["run_id"]
    assert params["data.n_symbols"] == "4" and params["seed"] == str(config.seed)
    assert all(f"{row['model']}.sharpe" in metrics for row in run.leaderboard), (sorted(metrics), run.leaderboard)
    for row in run.leaderboard:
        assert metrics[f"{row['model']}.sharpe"] == pytest.approx(row["sharpe"]), (sorted(metrics), row)
        assert metrics[f"{row['model']}.max_drawdown"] == pytest.approx(row["max_drawdown"])
    files = {f["path"] for f in api(mlflow_url, "artifacts/list", run_id=got["info"]["run_id"])["files"]}
    assert {"leaderboard.json", "run.json", "equity.png"} <= files


def test_a_bad_tracking_setting_fails_before_the_work(tmp_path):
    from titan_ray.arena.runner import run_arena
    from titan_ray.config import ConfigError, load_config

    config = load_config(None, {"tracking": {"mlflow_uri": "file:///tmp/mlruns"},
                                "models": [{"name": "hold", "kind": "buy_and_hold"}]})
    with pytest.raises(ConfigError, match="tracking.mlflow_uri"):
        run_arena(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
