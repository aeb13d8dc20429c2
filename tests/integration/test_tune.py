"""Ray Tune sweeps on the shared local Ray: ASHA stops poor trials, the best validated config is registered.

The shipped YAMLs run here with tiny budgets (the overrides below); their real budgets stay in the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from titan_ray.cli import main
from titan_ray.data.providers import make_provider
from titan_ray.registry import ModelRegistry, fingerprint
from titan_ray.train.space import merge
from titan_ray.train.sweeps import (
    Backtest,
    folds,
    load_sweep_config,
    run_sweep,
    training_period,
    walk_forward,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY_LIGHTGBM = {
    "data": {"n_symbols": 3, "bars": 2000, "synthetic": {"signal": 0.3}},
    "train_bars": 1500,
    "risk": {"max_position_pct": 1.0},
    "params": {"n_estimators": 25, "cv_folds": 0, "horizon": 3},
    "validation": {"n_splits": 3, "test_bars": 200},
    "tune": {"num_samples": 6},
}


def test_lightgbm_asha_sweep_registers_the_best_validated_model(ray_session, mlflow_url, tmp_path):
    over = merge(TINY_LIGHTGBM, {"registry": {"path": str(tmp_path / "registry")},
                                 "tracking": {"mlflow_uri": mlflow_url}})
    cfg = load_sweep_config(ROOT / "tune_configs" / "lightgbm.yaml", over)
    lines: list[str] = []
    result = run_sweep(cfg, tmp_path / "run", print_fn=lines.append)

    n_folds = 3
    rows = result.rows
    assert len(rows) == 6 and not any(r["error"] for r in rows)
    assert all(r["fills"] > 0 for r in rows)  # every trial traded its folds: the scores are not empty
    complete = [r for r in rows if r["folds"] == n_folds]
    stopped = [r for r in rows if r["folds"] < n_folds]
    assert stopped, "ASHA stopped no trial early"
    assert all(r["status"].startswith("stopped after fold") for r in stopped)
    assert any("stopped early by the scheduler" in line for line in lines)  # progress on the terminal
    # A stopped trial was below the rung it stopped at: worse than the best trial's score there.
    best = max(complete, key=lambda r: r["val_sharpe"])
    assert result.best_params == {**cfg.params, **best["config"]}
    assert result.best_score == best["val_sharpe"]

    # The registry holds that config, with the score it was chosen by, trained on the training period only.
    registry = ModelRegistry(tmp_path / "registry")
    version = registry.resolve(result.registered)
    assert version.kind == "lightgbm" and version.ref == "lightgbm_sweep@1"
    assert version.meta["metrics"]["val_sharpe"] == best["val_sharpe"]
    assert {k: version.meta["params"][k] for k in best["config"]} == best["config"]
    bars, calendar, periods = training_period(cfg)
    assert len(bars) == 1500 and version.meta["data_fingerprint"] == fingerprint(bars)
    assert version.meta["training_window"]["last_timestamp"] == int(bars.timestamps[-1])

    # The reported score is real: the winner's walk-forward, recomputed here, gives the same number.
    fold_list = folds(len(bars), cfg.validation, min_train=100, horizon=3)
    again = walk_forward(bars, fold_list, result.best_params, Backtest("lightgbm", cfg.ledger, cfg.risk, calendar,
                                                                     periods, cfg.seed))
    assert again["val_sharpe"] == pytest.approx(best["val_sharpe"], rel=1e-12)
    assert best["val_sharpe"] == max(r["val_sharpe"] for r in complete)

    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert len(summary) == 6 and summary.iloc[0]["status"] == "best"
    assert "stopped after fold" in (tmp_path / "run" / "summary.txt").read_text()
    assert (tmp_path / "run" / "trials").is_dir() and (tmp_path / "run" / "best.json").exists()

    # The registered model trades bars after the training period without fitting again.
    full = make_provider(cfg.data, cfg.seed).load().bars
    model = registry.load_model(version, name="gbm", symbols=full.symbols, seed=cfg.seed)
    model.observe(full.slice(0, 1500))
    decisions = model.decide(full.slice(1500, 1700))
    assert decisions.weights.shape == (200, 3) and np.isfinite(decisions.weights).all()

    # The sweep is one MLflow run: its config and winner as params, the winner's scores as metrics.
    tracked = next(line for line in lines if line.startswith("tracked in MLflow: "))
    run_id = tracked.rsplit("/", 1)[-1]
    run = requests.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30).json()["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert run["info"]["status"] == "FINISHED" and params["kind"] == "lightgbm"
    assert params["registered"] == "lightgbm_sweep@1" and params["tune.num_samples"] == "6"
    assert all(params[f"best.{k}"] == str(v) for k, v in best["config"].items())
    assert metrics["val_sharpe"] == pytest.approx(best["val_sharpe"]) and metrics["trials"] == 6


def _tiny_yaml(tmp_path: Path, name: str, over: dict) -> Path:
    raw = merge(yaml.safe_load((ROOT / "tune_configs" / name).read_text()), over)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_lstm_attention_yaml_smoke_runs_through_the_cli(ray_session, tmp_path, capsys):
    path = _tiny_yaml(tmp_path, "lstm_attention.yaml", {
        "data": {"n_symbols": 2, "bars": 1000},
        "train_bars": 900,
        "params": {"epochs": 1, "max_train_windows": 300, "patience": 1},
        "search": {"window": {"choice": [8, 16]}, "hidden": {"logint": [8, 16]}},
        "validation": {"n_splits": 1, "test_bars": 100},
        "tune": {"num_samples": 2},
        "registry": {"path": str(tmp_path / "registry")},
    })
    assert main(["tune", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "registered: lstm_attention_sweep@1" in out and "val_sharpe" in out
    version = ModelRegistry(tmp_path / "registry").resolve("lstm_attention_sweep")
    assert version.kind == "lstm_attention" and "val_sharpe" in version.meta["metrics"]
    assert len(pd.read_csv(tmp_path / "run" / "summary.csv")) == 2
