"""Learned models in a real arena on local Ray: fitted on the warm-up or loaded from the registry,
every trade explained, and `titan-ray why` printing the explanation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from titan_ray.arena.runner import run_arena
from titan_ray.cli import main
from titan_ray.config import parse_config
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.models.lightgbm_model import LightGBMModel
from titan_ray.registry import ModelRegistry

WARM = 300
LGBM = {"n_estimators": 40, "cv_folds": 2, "entry": 0.8}


def test_learned_models_in_the_arena_and_why(ray_session, tmp_path, capsys):
    raw = {
        "seed": 5,
        "data": {"provider": "synthetic", "n_symbols": 5, "bars": 700, "frequency": "15min",
                 "synthetic": {"signal": 0.2}},
        "replay": {"chunk_size": 128, "warmup_bars": WARM},
        "registry": {"path": str(tmp_path / "registry")},
        "models": [
            {"name": "lgbm", "kind": "lightgbm", "params": LGBM},
            {"name": "champ", "kind": "lightgbm", "artifact": "lgbm-champ"},
            {"name": "stack", "kind": "stacking", "params": {"lgb_rounds": 30}},
            {"name": "hold", "kind": "buy_and_hold"},
        ],
    }
    config = parse_config(raw)
    # register the model `lgbm` will fit at its first decision: trained on the same warm-up bars
    bars = SyntheticProvider(config.data, config.seed).load().bars
    model = LightGBMModel("lgbm", LGBM, bars.symbols, seed=config.seed)
    model.fit(bars.slice(0, WARM))
    ModelRegistry(tmp_path / "registry").register_model(model, bars.slice(0, WARM), name="lgbm-champ")

    out = tmp_path / "run"
    run_arena(config, out)
    decisions = pd.read_parquet(out / "decisions.parquet")
    trades = pd.read_parquet(out / "trades.parquet")
    fills = trades[trades["record"] == "fill"]

    for name in ("lgbm", "champ", "stack"):
        assert len(fills[fills["model"] == name]), f"{name} never traded"
    assert set(fills["decision_id"]) <= set(decisions["decision_id"])  # every trade has its explanation
    lgbm = decisions[decisions["model"] == "lgbm"]
    assert (lgbm["method"] == "shap.TreeExplainer").all() and lgbm["gap"].max() < 1e-6
    assert decisions.loc[decisions["model"] == "stack", "gap"].max() < 1e-9
    traded = lgbm[lgbm["filled_quantity"] > 0]
    assert traded["sentence"].str.match(r"^(Bought|Sold) \d+ [A-Z]{3} \(weight ").all()
    assert traded["sentence"].str.contains("pushed the LightGBM score to").all()
    # the registered model trades exactly like the one fitted in the arena on the same bars
    champ = decisions[decisions["model"] == "champ"]
    cols = ["bar", "symbol", "old_weight", "new_weight", "filled_quantity", "base_value", "features"]
    assert lgbm[cols].reset_index(drop=True).equals(champ[cols].reset_index(drop=True))
    board = {row["model"]: row for row in json.loads((out / "leaderboard.json").read_text())}
    assert board["champ"]["final_equity"] == board["lgbm"]["final_equity"]

    capsys.readouterr()
    did = traded["decision_id"].iloc[0]
    assert main(["why", did, "--run", str(out), "--top", "4"]) == 0
    text = capsys.readouterr().out
    assert did in text and "shap.TreeExplainer" in text and traded["sentence"].iloc[0] in text
    assert "|sum + base - output|" in text and "█" in text and "... 12 more inputs" in text
    assert "order FILLED, filled" in text and "rejected" not in text
    assert main(["why", did, "--run", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    contributions = sum(f["attribution"] for f in payload["features"]) + payload["base_value"]
    assert np.isfinite(contributions) and payload["filled_quantity"] > 0
    assert main(["why", did[:-1] + "x", "--run", str(out)]) == 2
    assert "did you mean" in capsys.readouterr().err
