"""Learned models in a real arena on local Ray: fitted on the warm-up or loaded from the registry,
every trade explained, and `titan-ray why` printing the explanation."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import ray

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


BIG = {"n_estimators": 300, "cv_folds": 0, "num_leaves": 31, "min_child_samples": 5, "entry": 0.8}


def test_a_model_from_the_registry_comes_back_from_a_crash(ray_session, tmp_path):
    """A registered model reaches its actor as a constructor argument; this one (a 1 MB booster) is too
    large for Ray to pass inline, so it goes through the object store, and Ray reads it again to
    restart the actor. Killed mid-run, the actor comes back from the same model and trades on exactly
    as in a run without the crash."""
    def raw(**replay) -> dict:
        return {
            "seed": 5,
            "data": {"provider": "synthetic", "n_symbols": 5, "bars": 700, "frequency": "15min",
                     "synthetic": {"signal": 0.2}},
            "replay": {"chunk_size": 32, "warmup_bars": WARM, "decision_timeout_s": 600, **replay},
            "registry": {"path": str(tmp_path / "registry")},
            "models": [{"name": "champ", "kind": "lightgbm", "artifact": "big"}, {"name": "hold", "kind": "buy_and_hold"}],
        }

    config = parse_config(raw())
    bars = SyntheticProvider(config.data, config.seed).load().bars
    model = LightGBMModel("big", BIG, bars.symbols, seed=config.seed)
    model.fit(bars.slice(0, WARM))
    assert len(ray.cloudpickle.dumps(model)) > 500_000  # far above what Ray passes inline (100 KB)
    ModelRegistry(tmp_path / "registry").register_model(model, bars.slice(0, WARM), name="big")
    reference = tmp_path / "reference"
    run_arena(config, reference)

    killed: dict = {}

    def on_actors(actors):
        champ = actors["models"]["champ"]

        def kill() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                beat = ray.get(champ.heartbeat.remote())
                if beat["seen"] >= WARM + 3 * 32:
                    killed.update(beat)
                    os.kill(beat["pid"], signal.SIGKILL)
                time.sleep(0.02)

        threading.Thread(target=kill, daemon=True).start()

    chaos = tmp_path / "chaos"
    run = run_arena(parse_config(raw(pace={"speed": 500_000})), chaos, on_actors=on_actors)
    assert killed, "the model's actor was never killed"
    assert any(a["actor"] == "champ" and a["kind"] == "RESTARTED" for a in run.run_info["alerts"])
    assert not run.run_info["skipped_chunks"]
    assert (chaos / "leaderboard.json").read_bytes() == (reference / "leaderboard.json").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(chaos / "decisions.parquet"),
                                  pd.read_parquet(reference / "decisions.parquet"))
