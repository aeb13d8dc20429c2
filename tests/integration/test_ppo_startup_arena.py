"""The default arena's `ppo`: trained at start-up on the warm-up bars, registered, reused.

The default config's `ppo` (no `artifact`) runs in a real arena on Ray, on the default market cut
short (1,000 warm-up bars, 600 traded) with a smaller training budget (train_steps) next to `hold`:
the first run finds no policy in an empty registry, trains one in the model's actor on the warm-up
bars only and registers it; the policy trades and explains its trades; a second run on the same
registry trains nothing and trades the same fills; a run on a fresh registry trains again and gets
the same fills (the training is seeded and repeatable).
"""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.arena.runner import run_arena
from titan_ray.config import config_to_dict, default_config_path, load_config, parse_config
from titan_ray.registry import ModelRegistry

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TRADED = 600
STEPS = 8192  # two iterations: enough to trade, and the test stays short


def _config(registry):
    default = load_config(default_config_path())
    [ppo] = [m for m in default.models if m.kind == "ppo"]
    assert ppo.artifact is None  # the default arena trains its PPO at start-up
    raw = config_to_dict(default)
    spec = next(m for m in raw["models"] if m["name"] == ppo.name)
    spec["params"] = {**spec.get("params", {}), "train_steps": STEPS}
    raw["models"] = [spec, {"name": "hold", "kind": "buy_and_hold"}]
    raw["data"]["bars"] = default.replay.warmup_bars + TRADED
    raw["registry"] = {"path": str(registry)}
    return parse_config(raw)


def _fills(run):
    return [(f.bar, f.symbol, f.side, f.quantity, f.price, f.commission_micro) for f in run.results["ppo"].fills]


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppo-startup")
    config = _config(tmp / "registry")
    first = run_arena(config, tmp / "first")
    versions_after_first = ModelRegistry(tmp / "registry").versions("ppo-startup")
    second = run_arena(config, tmp / "second")
    again = run_arena(_config(tmp / "fresh"), tmp / "again")
    return config, tmp, first, versions_after_first, second, again


def test_the_first_run_trains_on_the_warm_up_bars_and_registers_the_policy(runs):
    config, _, first, versions, *_ = runs
    [version] = versions
    assert version.ref == "ppo-startup@1" and version.kind == "ppo"
    window = version.meta["training_window"]
    warmup = config.replay.warmup_bars
    assert (window["start_bar"], window["stop_bar"]) == (0, warmup)  # the warm-up bars, and no later one
    assert window["last_timestamp"] < int(first.results["ppo"].timestamps[0])  # before the first traded bar
    assert version.meta["metrics"]["env_steps"] == STEPS
    assert version.meta["extra"]["recipe"]["ppo"]["train_batch_size"] * 2 == STEPS


def test_the_policy_trades_and_explains_its_trades(runs):
    _, _, first, *_ = runs
    results = first.results["ppo"]
    assert len(results.equity) == TRADED and not results.skipped_chunks
    assert len(results.fills) > 20
    board = {row["model"]: row for row in first.leaderboard}
    assert board["ppo"]["n_orders"] > 20
    records = results.explanation_records()
    assert records and all(r.method == "captum.IntegratedGradients" for r in records)
    first_record = records[0]
    assert [f.name for f in first_record.features] == ["ret_20", "vol_20", "rank_ret_20", "held_weight",
                                                       "other_symbols"]
    assert "the PPO policy chose it" in first_record.sentence and first_record.gap < 1e-3
    assert results.positions and all(q >= 0 for q in results.positions.values())  # a long-only book


def test_a_second_run_reuses_the_registered_policy_and_trades_the_same(runs):
    _, tmp, first, _, second, _ = runs
    assert [v.ref for v in ModelRegistry(tmp / "registry").versions("ppo-startup")] == ["ppo-startup@1"]
    assert _fills(second) == _fills(first)
    np.testing.assert_array_equal(second.results["ppo"].equity, first.results["ppo"].equity)


def test_training_again_from_scratch_gives_the_same_policy(runs):
    _, tmp, first, _, _, again = runs
    assert [v.ref for v in ModelRegistry(tmp / "fresh").versions("ppo-startup")] == ["ppo-startup@1"]
    assert _fills(again) == _fills(first)
