"""Rule models sharing an actor (``replay.models_per_actor``) trade exactly as models in actors of their own.

Four models at three per actor: sma, rsi and hold in one ``ModelGroupActor``, random alone in a
``ModelActor`` (a group of one is never made). The results folder must be byte for byte the one of
the same arena with an actor per model, and a group whose process is killed mid-run must come back
with all its models and change nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray

from titan_ray.arena.runner import run_arena
from titan_ray.config import parse_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MODELS = [
    {"name": "sma", "kind": "sma_crossover", "params": {"fast": 5, "slow": 20}},
    {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 7}},
    {"name": "hold", "kind": "buy_and_hold"},
    {"name": "random", "kind": "random", "params": {"every": 10}},
]
FILES = ("leaderboard.json", "equity.parquet", "trades.parquet", "orders.parquet", "decisions.parquet")


def _raw(per_actor: int, **replay) -> dict:
    return {
        "seed": 5,
        "data": {"provider": "synthetic", "n_symbols": 6, "bars": 600, "frequency": "15min"},
        "replay": {"chunk_size": 8, "models_per_actor": per_actor, **replay},
        "ledger": {"commission_bps": 5},
        "models": MODELS,
    }


@pytest.fixture(scope="module")
def alone(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("alone")
    run_arena(parse_config(_raw(1)), out)
    return out


def test_models_sharing_an_actor_give_the_same_results(ray_session, alone, tmp_path):
    pids = {}

    def on_actors(actors):
        pids.update({n: ray.get(m.heartbeat.remote())["pid"] for n, m in actors["models"].items()})

    run = run_arena(parse_config(_raw(3)), tmp_path / "grouped", on_actors=on_actors)
    for name in FILES:
        assert (tmp_path / "grouped" / name).read_bytes() == (alone / name).read_bytes(), name
    assert pids["sma"] == pids["rsi"] == pids["hold"] != pids["random"], pids
    assert run.run_info["skipped_chunks"] == {}


def test_a_killed_group_comes_back_with_all_its_models(ray_session, alone, tmp_path):
    record: dict = {}

    def kill(member) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            beat = ray.get(member.heartbeat.remote())
            if beat["seen"] >= 200:
                record["before"] = beat
                os.kill(beat["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    def on_actors(actors):
        threading.Thread(target=kill, args=(actors["models"]["rsi"],), daemon=True).start()

    out = tmp_path / "killed"
    run = run_arena(parse_config(_raw(3, pace={"speed": 500_000})), out, on_actors=on_actors)
    assert "before" in record, "the group was never killed"
    restarted = {a["actor"] for a in run.run_info["alerts"] if a["kind"] == "RESTARTED"}
    assert {"sma", "rsi", "hold"} <= restarted and "random" not in restarted, run.run_info["alerts"]
    for name in FILES:
        assert (out / name).read_bytes() == (alone / name).read_bytes(), name
