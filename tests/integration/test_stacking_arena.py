"""A stack over the arena's models on a real local Ray: its inputs are the named models' live decisions,
handed to it by Ray, it decides as the same models do in one process, and a killed actor, the meta-model's
or one of its inputs', changes nothing."""

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
from titan_ray.config import parse_config
from titan_ray.data.actor import MarketDataActor
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.ml.backtest import backtest
from titan_ray.models.actor import ModelActor
from titan_ray.models.kinds import build_model
from titan_ray.models.stacking import stack_in_process

WARM, BARS, CHUNK = 300, 800, 50
INPUTS = ["sma", "rsi", "lgbm"]


def raw(**replay) -> dict:
    return {
        "seed": 5,
        "data": {"provider": "synthetic", "n_symbols": 5, "bars": BARS, "frequency": "15min",
                 "synthetic": {"signal": 0.2}},
        # correctness, not deadlines: on a loaded machine the first fits (the stack's reads its inputs'
        # out-of-fold signals) may take minutes, and a chunk skipped for lateness would change the results
        "replay": {"chunk_size": CHUNK, "warmup_bars": WARM, "decision_timeout_s": 900, **replay},
        "ledger": {"commission_bps": 5},
        "models": [
            {"name": "stack", "kind": "stacking", "params": {"inputs": INPUTS, "cv_folds": 3, "entry": 0.5}},
            {"name": "sma", "kind": "sma_crossover", "params": {"fast": 5, "slow": 20}},
            {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 7}},
            {"name": "lgbm", "kind": "lightgbm", "params": {"n_estimators": 40, "cv_folds": 2, "entry": 0.5}},
        ],
    }


def held(decisions: pd.DataFrame, model: str, n_symbols: int) -> np.ndarray:
    """A model's target weights (bars, symbols) after the warm-up, rebuilt from its changes of weight."""
    w = np.full((BARS - WARM, n_symbols), np.nan)
    w[0] = 0.0
    rows = decisions[decisions["model"] == model]
    w[rows["bar"].to_numpy() - WARM, rows["symbol_index"].to_numpy()] = rows["new_weight"].to_numpy()
    return pd.DataFrame(w).ffill().to_numpy()


def test_the_stack_reads_the_arenas_models_and_survives_their_restarts(ray_session, tmp_path):
    config = parse_config(raw())
    assert config.decision_order == ["sma", "rsi", "lgbm", "stack"]  # listed first, it decides last
    out = tmp_path / "reference"
    run = run_arena(config, out)
    assert not run.run_info["skipped_chunks"]
    bars = SyntheticProvider(config.data, config.seed).load().bars
    decisions = pd.read_parquet(out / "decisions.parquet")
    decisions["symbol_index"] = decisions["symbol"].map({s: i for i, s in enumerate(bars.symbols)})
    stack = decisions[decisions["model"] == "stack"]
    assert len(stack) > 10 and (stack["method"] == "stacking.contributions").all() and stack["gap"].max() < 1e-9
    features = [json.loads(f) for f in stack["features"]]
    assert all([f["name"] for f in row] == INPUTS for row in features)
    # the value of each input is the weight that model held at the bar the stack decided
    for i, name in enumerate(INPUTS):
        weights = held(decisions, name, len(bars.symbols))
        shown = np.array([row[i]["value"] for row in features])
        np.testing.assert_array_equal(shown, weights[stack["bar"].to_numpy() - WARM, stack["symbol_index"]])
    assert stack["sentence"].str.contains("pushed the stacked score to").all()

    # the same models in one process (the meta-model reading its inputs' signals) trade the same
    models = [build_model(m.name, m.kind, m.params, bars.symbols, seed=config.seed) for m in config.models]
    by_name = {m.name: m for m in models}
    stack_in_process(by_name["stack"], [by_name[n] for n in INPUTS])
    local = backtest([by_name[n] for n in config.decision_order], bars, warmup=WARM, ledger=config.ledger,
                     risk=config.risk, chunk_size=CHUNK)
    for name in by_name:
        assert local.results[name].fills == run.results[name].fills, name

    # kill the meta-model's actor, then one of its inputs': each rebuilds (the stack from its inputs'
    # signals), and since no chunk was skipped, every result is the reference's
    chaos = tmp_path / "chaos"
    record: dict = {}

    def on_actors(actors):
        models = actors["models"]
        threading.Thread(target=kill_when, args=(models["stack"], WARM + 3 * CHUNK, record, "stack"), daemon=True,
                         ).start()
        threading.Thread(target=kill_when, args=(models["lgbm"], WARM + 6 * CHUNK, record, "lgbm"), daemon=True,
                         ).start()

    again = run_arena(parse_config(raw(pace={"speed": 400_000})), chaos, on_actors=on_actors)
    assert set(record) == {"stack", "lgbm"}, "an actor was never killed"
    assert any(a["actor"] == "stack" and a["kind"] == "RESTARTED" for a in again.run_info["alerts"])
    assert not again.run_info["skipped_chunks"]
    assert (chaos / "leaderboard.json").read_bytes() == (out / "leaderboard.json").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(chaos / "decisions.parquet"),
                                  pd.read_parquet(out / "decisions.parquet"))


def kill_when(actor, seen: int, record: dict, name: str) -> None:
    """SIGKILL ``actor``'s worker process once its model has seen ``seen`` bars."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        beat = ray.get(actor.heartbeat.remote())
        if beat["seen"] >= seen:
            record[name] = beat
            os.kill(beat["pid"], signal.SIGKILL)
            return
        time.sleep(0.02)


def test_a_restarted_input_asked_first_for_its_warmup_signals_answers_as_the_one_that_decided(ray_session):
    """A meta-model restarted while one of its inputs restarts asks that input, fresh, for its out-of-fold
    signals over the warm-up before the arena's next chunk has reached it: the input catches up through
    the warm-up and fits as its first decision would, so the meta-model refits on the same rows."""
    config = parse_config(raw())
    spec = next(m for m in config.models if m.name == "lgbm")
    stack = build_model("stack", "stacking", next(m for m in config.models if m.name == "stack").params,
                        ("S",), seed=config.seed)
    market = MarketDataActor.remote(config.data, config.seed, config.replay)
    ray.get([market.next_chunk.remote(k) for k in range(WARM // CHUNK + 1)])  # the arena is at its first decision
    bars = SyntheticProvider(config.data, config.seed).load().bars
    fresh = ModelActor.remote(spec, bars.symbols, config.seed, market, WARM, record=True)
    early = ray.get(fresh.signals.remote(0, WARM, stack.oof))  # its first call: nothing seen, nothing fitted

    local = build_model(spec.name, spec.kind, spec.params, bars.symbols, seed=config.seed)
    local.record_signals()
    local.observe(bars.slice(0, WARM))
    local.decide(bars.slice(WARM, WARM + CHUNK))
    assert np.isfinite(early).mean() > 0.5
    np.testing.assert_array_equal(early, local.signals(0, WARM, stack.oof))
    ray.kill(fresh)
    ray.kill(market)
