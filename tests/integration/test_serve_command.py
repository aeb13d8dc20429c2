"""`titan-ray serve` as a user runs it: its own private Ray (HAProxy mode), real HTTP, Ctrl-C."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from servers import free_port, ray_env, ray_node, wait_ray

from titan_ray.serve.settings import PRIVATE_FILES_PREFIX

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path) -> Path:
    """arena.yaml's layout, small: the main app (no arena) and two rule models."""
    apps = [{"name": "titan-ray", "route_prefix": "/", "import_path": "titan_ray.serve.app:build_app",
             "args": {"models": ["sma", "hold"], "arena": {"start": False, "actor": "titan-ray-cli-test"}},
             "deployments": [{"name": "Ingress", "ray_actor_options": {"num_cpus": 0}}]}]
    for name, kind in (("sma", "sma_crossover"), ("hold", "buy_and_hold")):
        apps.append({"name": f"model-{name}", "route_prefix": f"/v1/predict/{name}",
                     "import_path": "titan_ray.serve.app:build_model_app", "args": {"name": name, "kind": kind},
                     "deployments": [{"name": f"model-{name}", "ray_actor_options": {"num_cpus": 0}}]})
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"http_options": {"host": "127.0.0.1", "port": 8000}, "applications": apps}))
    return path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}  # the command's own defaults
    return subprocess.Popen([sys.executable, "-m", "titan_ray.cli", "serve", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_command_starts_answers_and_stops(tmp_path, stop):
    port = free_port()
    haproxy_files = set(Path("/tmp").glob(f"{PRIVATE_FILES_PREFIX}*"))  # the test session's own
    proc = _cli("--config", str(_config(tmp_path)), "--port", str(port), "--timeout", "240")
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("ready:") for line in lines):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)
        out = "".join(lines)
        assert "haproxy proxy" in out and f"http://127.0.0.1:{port}/" in out, out
        base = f"http://127.0.0.1:{port}"
        models = requests.get(f"{base}/v1/models", timeout=30).json()["models"]
        assert [m["name"] for m in models] == ["sma", "hold"]
        example = requests.get(f"{base}/v1/models/hold", timeout=30).json()["example_request"]
        answer = requests.post(f"{base}/v1/predict/hold", json=example, timeout=30)
        assert answer.status_code == 200 and answer.json()["model"] == "hold", answer.text
        assert all(p["target_weight"] > 0 for p in answer.json()["predictions"])
        assert requests.post(f"{base}/v1/predict/ghost", json=example, timeout=30).status_code == 404
        spawned = _descendants(proc.pid)
        assert any(b"haproxy" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in spawned), "HAProxy mode"
    finally:
        proc.send_signal(stop)
        try:
            rest, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
    assert proc.returncode == 0, "".join(lines) + rest
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    deadline = time.monotonic() + 30
    while (alive := [pid for pid in spawned if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.5)
    names = [Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in alive if Path(f"/proc/{pid}").exists()]
    assert not names, f"the private Ray (raylet, GCS, workers, HAProxy) must stop with the command: {names}"
    assert set(Path("/tmp").glob(f"{PRIVATE_FILES_PREFIX}*")) == haproxy_files, "HAProxy's files must go with the command"


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: the private Ray's raylet, GCS, workers, HAProxy)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_serve_command_names_what_does_not_fit_before_starting(tmp_path):
    path = _config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["applications"][1]["route_prefix"] = "/v1/predict/other"
    path.write_text(yaml.safe_dump(raw))
    proc = _cli("--config", str(path))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "route_prefix: the model 'sma' is served at '/v1/predict/sma'" in out, out


def test_serve_command_deploys_to_a_cluster_with_token_authentication(tmp_path):
    """Ray 2.60's token authentication on, as `ray up` and the Helm chart run it: without the token
    the command stops with what to export; with it the apps deploy (--detach) and answer HTTP. The
    token itself is never printed."""
    from titan_ray.serve.settings import private_serve_env

    token = secrets.token_hex(16)
    home = tmp_path / "home"  # no ~/.ray/auth_token of this machine's user
    home.mkdir()
    root = Path(tempfile.mkdtemp(prefix="trtok-", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    cluster = ray_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, HOME=str(home),
                      **private_serve_env(root / "haproxy"))
    try:
        _deploy_with_token(tmp_path, root, token, cluster)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _deploy_with_token(tmp_path: Path, root: Path, token: str, cluster: dict[str, str]) -> None:
    gcs, port = free_port(), free_port()
    head_dir, log = root / "head", tmp_path / "head.log"
    with ray_node(["--head", f"--port={gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                   "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
                   f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"],
                  head_dir, log, env=cluster) as head:
        wait_ray("the head node", lambda: (head_dir / "ray_current_cluster").exists(), [head], [log])
        address = (head_dir / "ray_current_cluster").read_text().strip()
        args = ("--config", str(_config(tmp_path)), "--address", address, "--port", str(port), "--detach",
                "--timeout", "240")

        for left_out in (["RAY_AUTH_TOKEN"], ["RAY_AUTH_TOKEN", "RAY_AUTH_MODE"]):
            refused = _cli(*args, env={k: v for k, v in cluster.items() if k not in left_out})
            out, _ = refused.communicate(timeout=180)
            assert refused.returncode == 2, (left_out, out)
            assert "RAY_AUTH_TOKEN" in out and address in out and "Traceback" not in out, (left_out, out)

        deploy = _cli(*args, env=cluster)
        out, _ = deploy.communicate(timeout=300)
        assert deploy.returncode == 0, out
        assert "ready:" in out and token not in out, out
        base = f"http://127.0.0.1:{port}"
        example = requests.get(f"{base}/v1/models/sma", timeout=30).json()["example_request"]
        answer = requests.post(f"{base}/v1/predict/sma", json=example, timeout=30)
        assert answer.status_code == 200 and answer.json()["model"] == "sma", answer.text
        assert token not in log.read_text()
