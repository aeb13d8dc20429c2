"""`titan-ray serve` as a user runs it: its own private Ray (HAProxy mode), real HTTP, Ctrl-C."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
    # a session of its own, as a shell gives a command: Ctrl-C goes to its whole process group
    return subprocess.Popen([sys.executable, "-m", "titan_ray.cli", "serve", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


class Console:
    """The command's output, read as it comes (by a thread), each line with when it came."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))

    def text(self, since: float = -1e18) -> str:
        return "".join(line for at, line in list(self.lines) if at >= since)

    def until_up(self, timeout: float = 300.0) -> str:
        """The output until the command is up: its ``ready:`` line and the one that says how to stop it."""
        deadline = time.monotonic() + timeout
        while "Ctrl-C (or SIGTERM) stops it." not in self.text():
            assert self.proc.poll() is None or self._reader.is_alive(), self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.1)
        return self.text()

    def stop(self, sig: int, bound: float) -> tuple[str, float]:
        """Send ``sig`` once the output has been quiet for 3 s (Ray's start-up warnings can reach the
        driver seconds late on a busy machine: they are not what stopping prints) (SIGINT as a terminal's Ctrl-C does,
        to the command's process group, which Ray's own processes partly share; SIGTERM to the command,
        as a service manager does); what the command printed after it, and how long it took to exit
        (within ``bound``)."""
        settle = time.monotonic() + 30
        while self.lines and time.monotonic() - self.lines[-1][0] < 3.0 and time.monotonic() < settle:
            time.sleep(0.2)
        start = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"`titan-ray serve` did not exit within {bound:.0f} s of the signal: {self.text(start)}")
        took = time.monotonic() - start
        self._reader.join(timeout=30)
        return self.text(start), took


NOISE = ("Traceback", "failed", "Failed", "Error", "error", "infinite retries", "WARNING", "Exception")


def _assert_quiet_stop(rest: str, stopped: str) -> None:
    """Stopping prints what it stopped and nothing else: no traceback, no Ray noise."""
    noise = [line for line in rest.splitlines() if any(word in line for word in NOISE)]
    assert not noise, rest
    lines = [line for line in rest.splitlines() if line.strip()]
    assert lines == ["stopping ...", stopped], rest


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_command_starts_answers_and_stops(tmp_path, stop):
    port = free_port()
    proc = _cli("--config", str(_config(tmp_path)), "--port", str(port), "--timeout", "240")
    console = Console(proc)
    try:
        out = console.until_up()
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
        haproxy = [Path(f"/proc/{pid}/cmdline").read_bytes().decode() for pid in spawned
                   if b"haproxy" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert haproxy, "HAProxy mode"
        # the command's own HAProxy files (other Serves on this machine have theirs)
        files = {Path(m) for c in haproxy for m in re.findall(rf"/tmp/{PRIVATE_FILES_PREFIX}[^/\x00]+", c)}
        assert files, haproxy
    finally:
        rest, _ = console.stop(stop, 120)
    assert proc.returncode == 0, console.text()
    _assert_quiet_stop(rest, "stopped: the applications titan-ray, model-sma, model-hold; Serve; the private Ray")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    deadline = time.monotonic() + 30
    while (alive := [pid for pid in spawned if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.5)
    names = [Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in alive if Path(f"/proc/{pid}").exists()]
    assert not names, f"the private Ray (raylet, GCS, workers, HAProxy) must stop with the command: {names}"
    assert not [f for f in files if f.exists()], "HAProxy's files must go with the command"


def _shipped(tmp_path: Path) -> Path:
    """serve_configs/arena.yaml as shipped, with a smaller live arena of the same models (3 symbols,
    3000 bars, 200 warm-up bars for lgbm's fit) so that it trades within seconds."""
    raw = yaml.safe_load((ROOT / "serve_configs" / "arena.yaml").read_text())
    main = next(a for a in raw["applications"] if a["name"] == "titan-ray")
    arena = main["args"]["arena"]["config"]
    arena["data"].update(n_symbols=3, bars=3000)
    arena["replay"]["warmup_bars"] = 200
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _keys(experiment: str, weights: dict[str, float]) -> dict[str, str]:
    """An X-Client-Key per live arm that the experiment's router sends to that arm (its sticky choice)."""
    from titan_ray.serve.experiments import pick, sticky_point

    keys: dict[str, str] = {}
    i = 0
    while len(keys) < sum(w > 0 for w in weights.values()):
        keys.setdefault(pick(weights, sticky_point(experiment, f"client-{i}")), f"client-{i}")
        i += 1
    return keys


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_shipped_experiment_answers_its_example_on_every_arm_and_stops_quietly(tmp_path):
    """serve_configs/arena.yaml through `titan-ray serve`: lgbm (the treatment) needs a longer window
    than sma (the control); the experiment's example is as long as lgbm needs, and through the
    experiment's route every arm answers it 200, the rsi shadow too. The live arena runs below the
    replicas. Ctrl-C prints what it stopped and nothing else, and the command exits within a bound."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_SERVE_", "RAY_worker_niceness"))}
    env["TITAN_RAY_REGISTRY"] = str(tmp_path / "registry")  # lgbm is trained into it at start-up
    proc = _cli("--config", str(_shipped(tmp_path)), "--port", str(port), "--timeout", "280", env=env)
    console = Console(proc)
    try:
        console.until_up()
        base = f"http://127.0.0.1:{port}"
        models = {m["name"]: m for m in requests.get(f"{base}/v1/models", timeout=30).json()["models"]}
        for name in models:  # every model answers its own example
            example = requests.get(f"{base}/v1/models/{name}", timeout=30).json()["example_request"]
            assert len(example["bars"]["close"]) == models[name]["min_rows"]
            r = requests.post(f"{base}/v1/predict/{name}", json=example, timeout=30)
            assert r.status_code == 200, (name, r.text)

        report = requests.get(f"{base}/v1/experiments/lgbm-vs-sma", timeout=60).json()
        arms = {a["name"]: a for a in report["arms"]}
        need = {name: models[a["model"]]["min_rows"] for name, a in arms.items()}
        example = report["example_request"]
        assert len(example["bars"]["close"]) == max(need.values()) == need["treatment"] > need["control"], need
        before = arms["shadow"]["agreement"]["compared"]
        sent = 0
        for arm, key in _keys("lgbm-vs-sma", {n: a["weight"] for n, a in arms.items() if not a["shadow"]}).items():
            for _ in range(3):
                r = requests.post(f"{base}/v1/experiments/lgbm-vs-sma/predict", json=example, timeout=30,
                                  headers={"X-Client-Key": key})
                assert r.status_code == 200, (arm, r.text)
                assert r.json()["arm"] == arm and r.json()["model"] == arms[arm]["model"]
                sent += 1
        assert sent == 6
        deadline = time.monotonic() + 30
        while True:  # the shadow's copies are answered after the answers, in batches
            shadow = {a["name"]: a for a in requests.get(f"{base}/v1/experiments/lgbm-vs-sma", timeout=30)
                      .json()["arms"]}["shadow"]
            if shadow["agreement"]["compared"] >= before + sent or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert shadow["agreement"]["compared"] == before + sent and shadow["errors"] == 0, shadow

        deadline = time.monotonic() + 120
        while len(nice := requests.get(f"{base}/healthz", timeout=30).json()["arena"]["nice"]) < 9:
            assert time.monotonic() < deadline, nice  # service, market, ledger, watchdog and 5 models
            time.sleep(1)
        assert set(nice.values()) == {19}, nice
        replica = int(models["lgbm"]["replica"].split("-")[0])
        assert _nice(replica) == os.nice(0), "the replicas run at this process's niceness, not Ray's 15"
    finally:
        rest, took = console.stop(signal.SIGINT, 90)
    assert proc.returncode == 0, console.text()
    _assert_quiet_stop(rest, "stopped: the applications titan-ray, model-lgbm, model-sma, model-rsi, model-hold, "
                             "experiment-lgbm-vs-sma; Serve; the live arena 'titan-ray-arena' and the private Ray")
    assert took < 60, f"stopping took {took:.0f} s"


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
