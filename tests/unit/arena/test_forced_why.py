"""Every fill has a "why", forced or not: in a run where the circuit breaker trips (and the daily
loss limit and a kill switch flatten too), each fill's decision id has its row in decisions.parquet,
the live views and the results folder answer "why" for it alike, and `titan-ray why` prints it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from titan_ray.arena import views
from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.arena.runner import write_results
from titan_ray.cli import main
from titan_ray.config import parse_config
from titan_ray.data.providers import make_provider
from titan_ray.domain.calendar import periods_per_year
from titan_ray.ledger.engine import Ledger
from titan_ray.models.kinds import build_model

CONFIG = {
    "seed": 3,
    "data": {"provider": "synthetic", "n_symbols": 3, "bars": 400, "frequency": "15min"},
    "ledger": {"initial_cash": 100000, "commission_bps": 5},
    "risk": {"max_drawdown_pct": 0.015, "daily_loss_limit_pct": 0.003},
    "significance": {"n_resamples": 200},
    "models": [
        {"name": "sma", "kind": "sma_crossover", "params": {"fast": 3, "slow": 8}},
        {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 5, "low": 40, "high": 60}},
        {"name": "hold", "kind": "buy_and_hold"},
    ],
}
KILLED = "rsi"  # it holds a position when its kill switch goes on


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The arena without Ray (models and one Ledger, chunk by chunk); ``rsi``'s kill switch is
    turned on after the second chunk and off after the fourth. Returns the folder and both views."""
    cfg = parse_config(CONFIG)
    market = make_provider(cfg.data, cfg.seed).load()
    bars = market.bars
    models = [build_model(m.name, m.kind, m.params, bars.symbols, seed=cfg.seed) for m in cfg.models]
    ledger = Ledger(ledger=cfg.ledger, risk=cfg.risk, symbols=bars.symbols, calendar=market.calendar,
                    models={m.name: m.long_only for m in models})
    for seq, part in enumerate(bars.chunks(64)):
        ledger.apply(seq, part, [m.decide(part) for m in models])
        if seq in (1, 3):
            ledger.kill_switch(KILLED, on=seq == 1)
    results = ledger.results()
    board = build_leaderboard(cfg, results, periods_per_year(market.frequency, market.calendar.value))
    folder = tmp_path_factory.mktemp("run")
    info = {"run_id": "r1", "config": {"ledger": {"initial_cash": "100000"}}, "n_timestamps": len(bars),
            "warmup_bars": 0, "n_symbols": 3, "frequency": "15min", "seed": 3}
    write_results(folder, board, results, info)
    live = views.live_run(results, board, run_id="r1", status="finished", benchmark="hold", bars_done=len(bars),
                          bars_total=len(bars), initial_cash=100000.0)
    return folder, views.load_run(folder), live


def test_every_fill_of_the_results_folder_has_its_explanation(run):
    folder, _, _ = run
    trades = pd.read_parquet(folder / "trades.parquet")
    decisions = pd.read_parquet(folder / "decisions.parquet").set_index("decision_id")
    fills = trades[trades["record"] == "fill"]
    forced = fills[fills["decision_id"].str.startswith("risk:")]
    rules = set(forced["decision_id"].str.split(":").str[1])
    assert rules == {"circuit_breaker", "daily_loss_limit", "kill_switch"}, "the run must trip every rule"
    assert set(fills["decision_id"]) <= set(decisions.index)  # forced or not, every fill is explained
    rows = decisions.loc[sorted(set(forced["decision_id"]))]
    assert (rows["method"] == "risk").all() and (rows["new_weight"] == 0).all() and (rows["old_weight"] != 0).all()
    assert (rows["order_status"] == "FILLED").all()
    # the sentence leads with the trade, then the rule: its threshold, the value that crossed it
    assert rows["sentence"].str.match(r"^(Sold|Bought) [\d.]+ [A-Z]{3} \(weight -?[\d.e-]+ → 0\): ").all()
    breaker = rows[rows.index.str.startswith("risk:circuit_breaker:")]
    assert breaker["sentence"].str.contains(r"risk rule max_drawdown_pct 1.5% fired at bar \d+: drawdown 1\.\d+%").all()
    for _, row in breaker.iterrows():
        features = {f["name"]: f["value"] for f in json.loads(row["features"])}
        assert features["max_drawdown_pct"] == 0.015 and features["drawdown"] > 0.015
        assert features["equity"] < features["peak_equity"] * (1 - 0.015)
    killed = rows[rows.index.str.startswith("risk:kill_switch:")]
    assert set(killed["model"]) == {KILLED} and killed["sentence"].str.contains("kill switch was turned on").all()


def test_the_live_and_finished_views_answer_why_for_every_fill(run):
    _, finished, live = run
    ids = list(dict.fromkeys(finished.trades.loc[finished.trades["record"] == "fill", "decision_id"]))
    forced = [i for i in ids if i.startswith("risk:")]
    assert forced and len(forced) < len(ids)
    for did in ids:
        body = views.why(live, did)
        assert body == views.why(finished, did) and body["decision_id"] == did
    body = views.why(live, forced[0])
    assert body["method"] == "risk" and body["base_value"] is None and "risk rule" in body["sentence"]
    with pytest.raises(views.NotFound, match="risk:RULE:MODEL:SYMBOL:BAR"):
        views.why(live, forced[0].replace("risk:", "risk:x", 1))


def test_titan_ray_why_prints_a_forced_flattening(run, capsys):
    folder, finished, _ = run
    trades = finished.trades
    did = next(i for i in trades["decision_id"].dropna() if i.startswith("risk:circuit_breaker:"))
    capsys.readouterr()
    assert main(["why", did, "--run", str(folder)]) == 0
    text = capsys.readouterr().out
    assert did in text and "method risk" in text and "risk rule max_drawdown_pct 1.5% fired" in text
    assert "max_drawdown_pct" in text and "peak_equity" in text and "order FILLED, filled" in text
    assert main(["why", did, "--run", str(folder), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["method"] == "risk" and payload["new_weight"] == 0 and payload["filled_quantity"] > 0
    assert main(["why", did[:-1] + "x", "--run", str(folder)]) == 2
    assert "risk:RULE:MODEL:SYMBOL:BAR" in capsys.readouterr().err
