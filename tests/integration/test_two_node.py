"""The arena on a real two-node Ray cluster: a head and a worker started with `ray start`.

Both nodes run on this machine, each with its own temporary folder, free ports and its own raylet,
which is how Ray's own multi-node tests work: to Ray they are two nodes. `titan-ray arena
--address` runs in a subprocess (the test process already holds the shared test Ray session and
must not join another), with model actors spread over both nodes, the ledger journaling to Redis
and the data read from a relative path. The leaderboard must equal the single-node run's, bit for
bit. The cluster is always torn down, by the ids of the processes this test started.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import yaml
from servers import ray_env, two_node_cluster

from titan_ray.arena.runner import run_arena
from titan_ray.config import load_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

def _write_market(folder: Path, n: int = 700) -> None:
    """Three clean daily CSV files, one per symbol, with trends that make the models trade."""
    folder.mkdir()
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2019-01-02", periods=n).strftime("%Y-%m-%d")
    for symbol in ("AAA", "BBB", "CCC"):
        close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, n)))
        open_ = close * np.exp(rng.normal(0, 0.004, n))
        pd.DataFrame({
            "date": dates, "open": open_, "high": np.maximum(open_, close) * 1.006,
            "low": np.minimum(open_, close) * 0.994, "close": close, "volume": rng.integers(10**5, 10**6, n),
        }).to_csv(folder / f"{symbol}.csv", index=False)


def _config(redis_url: str) -> dict:
    return {
        "seed": 3,
        "data": {"provider": "csv", "path": "market", "calendar": "equities"},  # relative to the driver
        "replay": {"chunk_size": 50, "warmup_bars": 20},
        "ledger": {"commission_bps": 5, "journal": {"backend": "redis", "url": redis_url}},
        "models": [
            {"name": "sma", "kind": "sma_crossover", "params": {"fast": 5, "slow": 20}},
            {"name": "hold", "kind": "buy_and_hold"},
            {"name": "random", "kind": "random", "params": {"every": 9}},
        ],
        "significance": {"n_resamples": 200},
        "watchdog": {"enabled": False},  # one actor less to start; the watchdog has its own tests
    }


def test_arena_on_two_nodes_matches_one_node(ray_session, redis_url, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    _write_market(work / "market")
    (work / "arena.yaml").write_text(yaml.safe_dump(_config(redis_url)))

    # The same config on one node: the shared test session, run from the same working directory.
    monkeypatch.chdir(work)
    single = run_arena(load_config(work / "arena.yaml"), work / "one-node")

    # Unix socket paths must stay short, so the cluster lives in a short folder under /tmp.
    root = Path(tempfile.mkdtemp(prefix="tr2n-", dir="/tmp"))
    try:
        with two_node_cluster(root) as cluster:
            done = subprocess.run(
                [str(Path(sys.executable).with_name("titan-ray")), "arena", "--config", "arena.yaml",
                 "--out", "two-node", "--address", str(cluster["address"]), "--quiet"],
                cwd=work, env=ray_env(), capture_output=True, text=True, timeout=240, check=False,
            )
            assert done.returncode == 0, done.stderr[-4000:]
            metrics = _ray_metrics(int(cluster["metrics_port"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    one = json.loads((work / "one-node" / "leaderboard.json").read_text())
    two = json.loads((work / "two-node" / "leaderboard.json").read_text())
    assert two == one
    assert sum(row["n_trades"] for row in two) > 10  # the comparison is about real trading

    run = json.loads((work / "two-node" / "run.json").read_text())
    placement = run["placement"]
    assert len(set(placement["models"].values())) == 2, placement  # model actors on both nodes
    assert placement["market"] == placement["driver"], placement  # it reads the driver's files
    assert placement["driver"] != single.run_info["placement"]["driver"]  # really another cluster

    # Every traded chunk went through the Redis journal (the ledger may run on either node).
    client = redis.Redis.from_url(redis_url)
    n_chunks = -(-(run["n_timestamps"] - run["warmup_bars"]) // 50)
    assert client.xlen(f"titan-ray:{run['run_id']}:journal") == n_chunks
    assert "\nray_" in metrics  # Ray's own metrics on the head's fixed export port


def _ray_metrics(port: int, timeout: float = 30.0) -> str:
    """The head's Prometheus page once Ray's own ``ray_`` metrics are on it."""
    deadline, text = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            if "\nray_" in text:
                return text
        except OSError:
            pass
        time.sleep(1.0)
    return text
