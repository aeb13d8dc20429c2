"""A fund of the arena's models on a real local Ray: the allocator is handed its members' live decisions,
trades their HRP-weighted mix, explains each change by its allocation, and its equity is the same whatever
the chunk size, and the same as in one process."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from titan_ray.arena.runner import run_arena
from titan_ray.config import parse_config
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.ml.backtest import backtest
from titan_ray.models.kinds import build_model

WARM, BARS = 50, 600
MEMBERS = ["sma", "rsi", "hold"]


def raw(chunk: int) -> dict:
    return {
        "seed": 9,
        "data": {"provider": "synthetic", "n_symbols": 3, "bars": BARS, "frequency": "30min"},
        # correctness, not deadlines: a chunk skipped for lateness on a loaded machine would change the results
        "replay": {"chunk_size": chunk, "warmup_bars": WARM, "decision_timeout_s": 600},
        "ledger": {"commission_bps": 5},
        "models": [
            {"name": "fund", "kind": "allocator",
             "params": {"inputs": MEMBERS, "method": "hrp", "lookback": 60, "rebalance_every": 20}},
            {"name": "sma", "kind": "sma_crossover", "params": {"fast": 5, "slow": 20}},
            {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 7}},
            {"name": "hold", "kind": "buy_and_hold"},
        ],
    }


def test_a_fund_of_the_arenas_models(ray_session, tmp_path):
    config = parse_config(raw(64))
    assert config.decision_order == [*MEMBERS, "fund"]  # listed first, it decides last
    run = run_arena(config, tmp_path / "a")
    assert not run.run_info["skipped_chunks"]
    board = {row["model"]: row for row in json.loads((tmp_path / "a" / "leaderboard.json").read_text())}
    assert set(board) == {"fund", *MEMBERS}
    fund = run.results["fund"]
    initial = fund.initial_cash_micro / 1e6
    assert isinstance(board["fund"]["final_equity"], float) and np.isfinite(fund.equity).all()
    assert board["fund"]["final_equity"] != initial and board["fund"]["n_orders"] > 0 and len(fund.fills) > 0

    decisions = pd.read_parquet(tmp_path / "a" / "decisions.parquet")
    ours = decisions[decisions["model"] == "fund"]
    assert len(ours) > 10 and (ours["method"] == "allocation").all() and ours["gap"].max() < 1e-12
    features = [json.loads(f) for f in ours["features"]]
    assert all([f["name"] for f in row] == MEMBERS for row in features)
    assert all(abs(sum(f["value"] for f in row) - 1) < 1e-12 for row in features)  # the allocation
    shares = np.array([[f["value"] for f in row] for row in features])
    assert (np.abs(shares - 1 / 3).max(axis=1) > 1e-9).any()  # HRP moved it off equal weight
    assert ours["sentence"].str.contains(": hrp allocation sma ").all()

    again = run_arena(parse_config(raw(500)), tmp_path / "b")
    np.testing.assert_array_equal(again.results["fund"].equity, fund.equity)
    assert (tmp_path / "b" / "leaderboard.json").read_bytes() == (tmp_path / "a" / "leaderboard.json").read_bytes()

    # the same models in one process, the fund reading its members' signals as a restarted actor does
    bars = SyntheticProvider(config.data, config.seed).load().bars
    models = {m.name: build_model(m.name, m.kind, m.params, bars.symbols, seed=config.seed) for m in config.models}
    for n in MEMBERS:
        models[n].record_signals()
    models["fund"].attach(lambda start, stop, oof: {n: models[n].signals(start, stop, oof) for n in MEMBERS})
    local = backtest([models[n] for n in config.decision_order], bars, warmup=WARM, ledger=config.ledger,
                     risk=config.risk, chunk_size=64)
    np.testing.assert_array_equal(local.results["fund"].equity, fund.equity)
