"""PPO on RLlib through Tune, registered, then trading in the arena next to the baselines.

Acceptance: trained with the shipped tune_configs/ppo_small.yaml (only the registry and run folder
moved to tmp), the policy beats `random` and `buy_and_hold` on the bars after its training period
(fixed seeds); the arena's P&L for the policy is the env's P&L for the same actions, to the bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from titan_ray.arena.runner import run_arena
from titan_ray.cli import main
from titan_ray.config import parse_config
from titan_ray.data.providers import make_provider
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.ml.env import ActionMap, FeatureScaler, MarketWindow
from titan_ray.models.ppo import POLICY_FILE, Policy, load_module
from titan_ray.registry import ModelRegistry
from titan_ray.train.ppo import greedy_run, load_ppo_config, train_ppo
from titan_ray.train.space import merge

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(ray_session, mlflow_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppo")
    cfg = load_ppo_config(ROOT / "tune_configs" / "ppo_small.yaml", {"registry": {"path": str(tmp / "registry")},
                                                                     "tracking": {"mlflow_uri": mlflow_url}})
    lines: list[str] = []
    result = train_ppo(cfg, tmp / "run", print_fn=lines.append)
    return cfg, result, tmp, lines


def test_training_reports_progress_checkpoints_and_registers(trained):
    cfg, result, tmp, lines = trained
    assert any(f"iteration {cfg.training.iterations}/{cfg.training.iterations}" in line for line in lines)
    assert result.registered == "ppo_small@1"
    version = ModelRegistry(tmp / "registry").resolve("ppo_small")
    assert version.kind == "ppo" and (version.path / POLICY_FILE).exists()
    assert version.meta["training_window"]["stop_bar"] == cfg.train_bars
    m = version.meta["metrics"]
    # picked on held-out bars of the training period, where it already beats holding
    assert m["val_return"] > m["val_buy_and_hold_return"]
    assert (result.run_dir / "summary.csv").exists() and (result.run_dir / "best.json").exists()
    assert list((result.run_dir / "trials").glob("*/checkpoint_*"))


def test_training_is_one_mlflow_run_with_its_config_and_metrics(trained, mlflow_url):
    cfg, result, _, lines = trained
    run_id = next(line for line in lines if line.startswith("tracked in MLflow: ")).rsplit("/", 1)[-1]
    run = requests.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30).json()["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    registered = ModelRegistry(result.run_dir.parent / "registry").resolve(result.registered).meta["metrics"]
    assert run["info"]["status"] == "FINISHED" and params["registered"] == result.registered == "ppo_small@1"
    assert params["train_bars"] == str(cfg.train_bars) and params["name"] == cfg.name
    assert metrics["val_return"] == pytest.approx(registered["val_return"])
    assert metrics["val_sharpe"] == pytest.approx(registered["val_sharpe"])


def _arena_config(cfg, registry: Path, seed: int) -> dict:
    return {
        "seed": seed,
        "data": cfg.data.model_dump(mode="json"),
        "replay": {"chunk_size": 97, "warmup_bars": cfg.train_bars},
        "ledger": {**cfg.ledger.model_dump(mode="json"), "journal": {"backend": "memory"}},
        "risk": cfg.risk.model_dump(mode="json"),
        "registry": {"path": str(registry)},
        "models": [
            {"name": "ppo", "kind": "ppo", "artifact": "ppo_small"},
            {"name": "hold", "kind": "buy_and_hold"},
            {"name": "random", "kind": "random", "params": {"every": 5}},
        ],
    }


def test_ppo_beats_random_and_buy_and_hold_out_of_sample_in_the_arena(trained, tmp_path):
    cfg, _, tmp, _ = trained
    run = run_arena(parse_config(_arena_config(cfg, tmp / "registry", cfg.seed)), tmp_path / "arena")
    board = {row["model"]: row for row in run.leaderboard}
    n_out = cfg.data.bars - cfg.train_bars
    assert len(run.results["ppo"].equity) == n_out  # it traded only the bars after training
    for other in ("hold", "random"):
        assert board["ppo"]["total_return"] > board[other]["total_return"] + 0.05, (board["ppo"], board[other])
        assert board["ppo"]["sharpe"] > board[other]["sharpe"]
    assert board["ppo"]["n_trades"] > 20

    # Every trade answers "why?": captum attributions of the chosen action's probability.
    records = run.results["ppo"].explanation_records()
    assert records and all(r.method == "captum.IntegratedGradients" for r in records)
    first = records[0]
    names = [f.name for f in first.features]
    assert names == [*cfg.features, "held_weight", "other_symbols"]
    assert all(np.isfinite(f.attribution) for f in first.features)
    probability = first.base_value + sum(f.attribution for f in first.features)
    assert 0 < probability <= 1 + 1e-3 and first.gap < 1e-3
    assert "PPO policy" in first.sentence

    # The same actions give the same P&L in the env: replay the greedy policy over the arena's bars.
    version = ModelRegistry(tmp / "registry").resolve("ppo_small")
    meta = json.loads((version.path / POLICY_FILE).read_text())
    bars = make_provider(cfg.data, cfg.seed).load().bars
    engine = FeatureEngine(cfg.features)
    window = MarketWindow.build(bars, engine.transform(bars), engine.names, calendar=cfg.data.calendar,
                                scaler=FeatureScaler.from_dict(meta["scaler"]))
    policy = Policy(load_module(version.path / "rl_module"), ActionMap(cfg.env, bars.n_symbols))
    equity = greedy_run(policy, window, cfg, cfg.train_bars, n_out - 1)
    np.testing.assert_array_equal(equity, run.results["ppo"].equity[1:])


def test_forward_train_gives_forward_inference_outputs(trained):
    """The explanation differentiates forward_train; the policy acts on forward_inference: the same numbers."""
    import torch

    _, _, tmp, _ = trained
    module = load_module(ModelRegistry(tmp / "registry").resolve("ppo_small").path / "rl_module")
    obs = torch.randn(16, module.observation_space.shape[0])
    torch.testing.assert_close(module.forward_inference({"obs": obs})["action_dist_inputs"],
                               module.forward_train({"obs": obs})["action_dist_inputs"], rtol=0, atol=0)


def test_ppo_yaml_smoke_runs_through_the_cli(ray_session, tmp_path, capsys):
    raw = merge(yaml.safe_load((ROOT / "tune_configs" / "ppo.yaml").read_text()), {
        "data": {"n_symbols": 2, "bars": 900},
        "train_bars": 800, "validation_bars": 100,
        "env": {"episode_bars": 64},
        "ppo": {"train_batch_size": 256, "minibatch_size": 64, "num_epochs": 1, "fcnet_hiddens": [16]},
        "rollout": {"num_envs_per_env_runner": 2},
        "training": {"iterations": 2, "checkpoint_every": 1},
        "tune": {"num_samples": 1},
        "registry": {"path": str(tmp_path / "registry")},
    })
    path = tmp_path / "ppo.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["train-ppo", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "registered: ppo@1" in out and "val_return" in out and "trial" in out
    assert ModelRegistry(tmp_path / "registry").resolve("ppo").kind == "ppo"


def test_an_arena_ppo_without_a_policy_says_how_to_get_one():
    from titan_ray.models.ppo import PpoModel

    model = PpoModel("ppo", {}, ("AAA",), seed=1)
    with pytest.raises(RuntimeError, match="give it `artifact: NAME`"):
        model.decide(make_provider(parse_config({"models": [{"name": "h", "kind": "buy_and_hold"}]}).data, 1)
                     .load().bars.slice(0, 5))
