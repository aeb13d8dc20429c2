"""Real servers for tests: a redis-server on a free loopback port, Ray nodes started with `ray start`,
and a two-node Ray cluster on loopback made of them (``two_node_cluster``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis

from titan_ray.net import free_port


@contextmanager
def redis_server(workdir: Path, *, password: str | None = None) -> Iterator[str]:
    """Start Debian's redis-server (no persistence) and yield its URL; stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; `.ci/run` installs it (apt-get install redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir)]
    if password is not None:
        args += ["--requirepass", password]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    auth = f":{password}@" if password is not None else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


RAY = Path(sys.executable).with_name("ray")
START_TIMEOUT = 90.0


def ray_env(**extra: str) -> dict[str, str]:
    """The environment of a `ray start` node and its clients: the test session's Ray address and
    Serve settings left out, token authentication off unless ``extra`` says otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_SERVE_", "RAY_AUTH_"))}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # no 30 s drain on SIGTERM: nothing to drain
    )
    env.update(extra)
    return env


def _stop_ray_node(proc: subprocess.Popen, marker: str) -> None:
    """Stops one `ray start --block` and everything it started: by its process group, then by pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its raylet, GCS, agents
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session (start_new_session): only what it started
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    # Ray's workers can leave the group; they carry this node's private temp folder on their
    # command line, so each straggler is found by that and killed by its pid.
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass  # gone meanwhile


@contextmanager
def ray_node(args: list[str], temp_dir: Path, log: Path, env: dict[str, str] | None = None
             ) -> Iterator[subprocess.Popen]:
    """One `ray start --block` node in its own temporary folder, output to ``log``; stopped on exit
    with everything it started."""
    temp_dir.mkdir(parents=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(RAY), "start", "--block", f"--temp-dir={temp_dir}", "--disable-usage-stats", *args],
            env=env if env is not None else ray_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        _stop_ray_node(proc, str(temp_dir))


def wait_ray(what: str, ready: Callable[[], bool], procs: list[subprocess.Popen], logs: list[Path]) -> None:
    """Until ``ready()``; fails the test with the node's log when a `ray start` exits or it times out."""
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                pytest.fail(f"{what}: `ray start` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready after {START_TIMEOUT:.0f} s:\n{logs[-1].read_text()[-3000:]}")
        time.sleep(0.2)


def _alive_nodes(gcs_address: str) -> int:
    from ray._raylet import GcsClient  # a plain GCS client: no driver, the test's Ray session is untouched

    try:
        infos = GcsClient(address=gcs_address).get_all_node_info(timeout=5)
    except Exception:  # noqa: BLE001 - the GCS is still starting
        return 0
    return sum(1 for info in infos.values() if info.state == 0)  # GcsNodeState.ALIVE


@contextmanager
def two_node_cluster(root: Path, *, cpus: int = 1, env: dict[str, str] | None = None) -> Iterator[dict[str, object]]:
    """A head and a worker on this machine (``cpus`` CPUs each, their own temporary folder, free ports
    and raylet: to Ray, two nodes); yields the GCS ``address`` and the head's ``metrics_port``.

    ``root`` must be short (Unix socket paths are), e.g. a ``tempfile.mkdtemp(dir="/tmp")``.
    """
    gcs, metrics = free_port(), free_port()
    head_dir, worker_dir = root / "head", root / "worker"
    logs = [root / "head.log", root / "worker.log"]
    with ExitStack() as stack:
        # Ports with a fixed default (GCS, client server, agent HTTP, metrics) are chosen free here,
        # so that this cluster never collides with another Ray on the machine; Ray picks the rest. Both
        # nodes advertise 127.0.0.1: the cluster's traffic stays on loopback.
        head = stack.enter_context(ray_node(
            ["--head", f"--port={gcs}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
             "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
             f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={metrics}"],
            head_dir, logs[0], env))
        # The worker starts at once and waits for the head's GCS itself: both come up together.
        worker = stack.enter_context(ray_node(
            [f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
             f"--dashboard-agent-listen-port={free_port()}",
             f"--metrics-export-port={free_port()}"],
            worker_dir, logs[1], env))
        wait_ray("the head node", lambda: (head_dir / "ray_current_cluster").exists(), [head], logs[:1])
        address = (head_dir / "ray_current_cluster").read_text().strip()
        wait_ray("the worker node", lambda: _alive_nodes(address) >= 2, [head, worker], logs)
        yield {"address": address, "metrics_port": metrics}


@contextmanager
def mlflow_server(workdir: Path) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port with a SQLite store (workdir/mlflow.db) and artifacts
    under workdir/artifacts; yields its http URL; stopped (process group) after. RuntimeError naming the
    log file when it does not answer GET /health within 90 s."""
    import urllib.request

    binary = Path(sys.executable).with_name("mlflow")
    found = str(binary) if binary.exists() else shutil.which("mlflow")
    if found is None:
        raise RuntimeError("the `mlflow` command is not installed; `pip install -e '.[test]'` installs it")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "mlflow-server.log"
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no huey job workers: nothing here runs server jobs
        "MLFLOW_DISABLE_TELEMETRY": "true",  # no usage reports to the network
        "DO_NOT_TRACK": "true",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [found, "server", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
             "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"`mlflow server` exited with {proc.returncode}; its log is {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"`mlflow server` did not answer GET {url}/health in {START_TIMEOUT:.0f} s; "
                                   f"its log is {log}")
            time.sleep(0.2)
        yield url
    finally:
        # The CLI, its uvicorn and any worker run in a session of their own (start_new_session): the
        # group is exactly what this server started. SIGTERM first, then SIGKILL for what lingers.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        proc.wait(timeout=10)
