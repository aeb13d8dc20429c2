"""The arena end to end on a real local Ray: the CLI's default run, determinism, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import titan_ray
from titan_ray.arena.runner import run_arena
from titan_ray.cli import main
from titan_ray.config import parse_config
from titan_ray.data.market import DataError

LEADERBOARD_FIELDS = {
    "model", "final_equity", "total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_duration", "profit_factor", "win_rate", "n_trades", "n_orders", "n_rejected", "turnover",
    "exposure", "benchmark", "sharpe_vs_benchmark_p", "beats_benchmark",
}
RUN_FIELDS = {"config", "seed", "code_version", "n_symbols", "n_timestamps", "n_bars", "replay_seconds",
              "wall_seconds", "bars_per_second"}


def test_default_arena_from_the_cli_writes_every_file(ray_session, tmp_path, capsys):
    # the packaged baselines-only arena: the default market without the learned models, which
    # have their own end-to-end test (tests/integration/test_ml_arena.py)
    out = tmp_path / "run"
    config = Path(titan_ray.__file__).parent / "configs" / "baselines.yaml"
    assert main(["arena", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    board = json.loads((out / "leaderboard.json").read_text())
    assert {row["model"] for row in board} == {"sma", "rsi", "hold", "random"}
    for row in board:
        assert LEADERBOARD_FIELDS <= set(row)
        for key in ("final_equity", "total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown"):
            assert isinstance(row[key], float), (row["model"], key)
        assert row["max_drawdown"] <= 0
        assert row["model"] in printed
    run = json.loads((out / "run.json").read_text())
    assert RUN_FIELDS <= set(run) and run["n_symbols"] >= 10 and run["n_bars"] == 12 * 5000

    equity = pd.read_parquet(out / "equity.parquet")
    assert list(equity.columns) == ["timestamp", "model", "equity", "cash", "gross_exposure"]
    assert len(equity) == 4 * 5000 and str(equity["timestamp"].dt.tz) == "UTC"
    final = equity.groupby("model")["equity"].last()
    for row in board:
        assert final[row["model"]] == row["final_equity"]

    trades = pd.read_parquet(out / "trades.parquet")
    decisions = pd.read_parquet(out / "decisions.parquet")
    fills = trades[trades["record"] == "fill"]
    assert set(trades["record"]) == {"fill", "round_trip"}
    assert set(fills["decision_id"]) <= set(decisions["decision_id"])  # every trade can answer "why?"
    assert decisions["sentence"].str.len().min() > 20
    traded = decisions[decisions["filled_quantity"] > 0]
    assert len(traded) and (traded["order_status"] != "NO_ORDER").all()
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "orders.parquet").exists()


def _small_config(chunk: int) -> dict:
    return {
        "seed": 11,
        "data": {"provider": "synthetic", "n_symbols": 6, "bars": 400, "frequency": "30min"},
        "replay": {"chunk_size": chunk, "warmup_bars": 40},
        "ledger": {"commission_bps": 5, "slippage": {"model": "sqrt_impact", "coefficient": 0.02, "bps": 1},
                   "max_participation": 0.2},
        "risk": {"max_position_pct": 0.3, "daily_loss_limit_pct": 0.01, "max_drawdown_pct": 0.05},
        "models": [
            {"name": "sma", "kind": "sma_crossover", "params": {"fast": 5, "slow": 20}},
            {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 7}},
            {"name": "hold", "kind": "buy_and_hold"},
            {"name": "random", "kind": "random", "params": {"every": 13, "allow_short": True}},
        ],
    }


def test_leaderboard_is_bit_identical_across_reruns_and_chunk_sizes(ray_session, tmp_path):
    files = {}
    for label, chunk in [("a", 512), ("b", 512), ("c", 7), ("d", 1)]:
        run_arena(parse_config(_small_config(chunk)), tmp_path / label)
        files[label] = (tmp_path / label / "leaderboard.json").read_bytes()
    assert files["a"] == files["b"] == files["c"] == files["d"]
    board = json.loads(files["a"])
    assert sum(r["n_trades"] for r in board) > 10  # the comparison is about real trading
    eq = [pd.read_parquet(tmp_path / x / "equity.parquet") for x in "ad"]
    pd.testing.assert_frame_equal(*eq)
    trades = [pd.read_parquet(tmp_path / x / "trades.parquet") for x in "ad"]
    pd.testing.assert_frame_equal(*trades)


def test_warmup_bars_are_seen_but_not_traded(ray_session):
    run = run_arena(parse_config(_small_config(64)))
    for res in run.results.values():
        assert len(res.equity) == 400 - 40
        assert all(f.bar >= 40 for f in res.fills)


def _bad_csv(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = pd.DataFrame({
        "Date": pd.date_range("2020-01-01", periods=n, freq="B").strftime("%Y-%m-%d"),
        "Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close, "Volume": 1e6,
    })
    frame.loc[10, "Close"] = np.nan
    frame.loc[20, "Open"] = -5.0
    frame = pd.concat([frame.iloc[:30], frame.iloc[[29]], frame.iloc[30:]], ignore_index=True)  # a duplicate
    frame.to_csv(path, index=False)
    return path


def test_bad_rows_are_counted_and_the_run_goes_on(ray_session, tmp_path):
    path = _bad_csv(tmp_path / "XYZ.csv")
    cfg = parse_config({"data": {"provider": "csv", "path": str(path)},
                        "models": [{"name": "sma", "kind": "sma_crossover"}, {"name": "hold", "kind": "buy_and_hold"}]})
    run = run_arena(cfg, tmp_path / "out")
    info = run.run_info
    assert info["rejected_bars"] == 3 and info["n_timestamps"] == 298  # 300 rows + 1 duplicate - 3 rejected
    assert info["rejected_bars_by_rule"] == {"MISSING_VALUE": 1, "NON_POSITIVE_PRICE": 1, "DUPLICATE_TIMESTAMP": 1}
    assert any("row 11" in s and "close" in s.lower() for s in info["rejected_bars_sample"])
    assert json.loads((tmp_path / "out" / "run.json").read_text())["rejected_bars"] == 3


def test_nothing_usable_is_a_clear_error(ray_session, tmp_path):
    path = tmp_path / "EMPTY.csv"
    path.write_text("date,open,high,low,close,volume\n2020-01-02,nan,1,1,1,1\n2020-01-03,-1,1,1,1,1\n")
    cfg = parse_config({"data": {"provider": "csv", "path": str(path)}, "models": [{"name": "h", "kind": "buy_and_hold"}]})
    with pytest.raises(DataError, match="EMPTY.csv"):
        run_arena(cfg)


def test_cli_errors_name_the_problem_and_the_fix(tmp_path, capsys):
    cfg = tmp_path / "arena.yaml"
    cfg.write_text("ledger: {comission_bps: 5}\nmodels: [{name: a, kind: buy_and_hold}]\n")
    assert main(["arena", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ledger.comission_bps: unknown key; did you mean 'commission_bps'?" in err
    assert not (tmp_path / "o").exists()


def test_arena_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["arena", "--help"])
    text = capsys.readouterr().out
    for option in ("--config", "--out", "--address", "--seed", "--chunk-size", "--quiet"):
        assert option in text
