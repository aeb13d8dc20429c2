"""views.py: the HTTP payloads from a finished run folder and from live ledger state agree."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from titan_ray.arena import views
from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.arena.runner import write_results
from titan_ray.config import parse_config
from titan_ray.data.providers import make_provider
from titan_ray.domain.calendar import parse_frequency, periods_per_year
from titan_ray.ledger.engine import Ledger
from titan_ray.metrics.sample import WITHHELD_FIELDS
from titan_ray.models.kinds import build_model
from titan_ray.serve.arena_service import ArenaState

CONFIG = {
    "seed": 3,
    "data": {"provider": "synthetic", "n_symbols": 3, "bars": 400, "frequency": "15min"},
    "ledger": {"initial_cash": 100000, "commission_bps": 5},
    "significance": {"n_resamples": 200},
    "models": [
        {"name": "sma", "kind": "sma_crossover", "params": {"fast": 3, "slow": 8}},
        {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 5, "low": 40, "high": 60}},
        {"name": "hold", "kind": "buy_and_hold"},
    ],
}


def _run_in_process(chunk: int = 64, bars: int = 400):
    """The arena without Ray: models and one Ledger driven chunk by chunk."""
    cfg = parse_config({**CONFIG, "data": {**CONFIG["data"], "bars": bars}})
    market = make_provider(cfg.data, cfg.seed).load()
    bars = market.bars
    models = [build_model(m.name, m.kind, m.params, bars.symbols, seed=cfg.seed) for m in cfg.models]
    ledger = Ledger(ledger=cfg.ledger, risk=cfg.risk, symbols=bars.symbols, calendar=market.calendar,
                    models={m.name: m.long_only for m in models})
    for seq, part in enumerate(bars.chunks(chunk)):
        ledger.apply(seq, part, [m.decide(part) for m in models])
    periods = periods_per_year(market.frequency, market.calendar.value)
    results = ledger.results()
    return cfg, results, build_leaderboard(cfg, results, periods), len(bars)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    _cfg, results, board, n = _run_in_process()
    folder = tmp_path_factory.mktemp("run")
    info = {"run_id": "r1", "config": json.loads(json.dumps({"ledger": {"initial_cash": "100000"}})),
            "n_timestamps": n, "warmup_bars": 0, "n_symbols": 3, "frequency": "15min", "seed": 3}
    write_results(folder, board, results, info)
    finished = views.load_run(folder)
    live = views.live_run(results, board, run_id="r1", status="finished", benchmark="hold", bars_done=n,
                          bars_total=n, initial_cash=100000.0)
    return finished, live, results


def test_folder_and_live_payloads_are_identical(both):
    finished, live, results = both
    assert views.leaderboard(finished) == views.leaderboard(live)
    assert views.equity(finished, 50) == views.equity(live, 50)
    for model in results:
        assert views.portfolio(finished, model) == views.portfolio(live, model)
        assert views.trades(finished, model, 30) == views.trades(live, model, 30)
    ids = [f.decision_id for r in results.values() for f in r.fills][:20]
    assert ids, "the test arena must trade"
    for did in ids:
        assert views.why(finished, did) == views.why(live, did)


def test_leaderboard_shape(both):
    body = views.leaderboard(both[0])
    assert body["status"] == "finished" and body["run_id"] == "r1" and body["benchmark"] == "hold"
    assert body["progress"] == {"bars_done": 400, "bars_total": 400}
    rows = {r["model"]: r for r in body["rows"]}
    assert set(rows) == {"sma", "rsi", "hold"}
    assert rows["hold"]["p_value"] is None and rows["hold"]["beats_benchmark"] is False
    assert 0 < rows["sma"]["p_value"] <= 1 and isinstance(rows["sma"]["beats_benchmark"], bool)
    json.dumps(body, allow_nan=False)


def test_equity_is_downsampled_and_keeps_the_last_bar(both):
    finished, _live, results = both
    body = views.equity(finished, points=10)
    assert len(body["timestamps"]) == 10
    assert body["timestamps"] == sorted(body["timestamps"])
    last_ts = int(results["hold"].timestamps[-1]) // 10**9
    assert body["timestamps"][-1] == last_ts
    hold = body["models"]["hold"]
    assert hold["equity"][-1] == pytest.approx(float(results["hold"].equity[-1]))
    assert all(d <= 0 for d in hold["drawdown"])
    full = views.equity(finished, points=100_000)
    assert len(full["timestamps"]) == 400
    with pytest.raises(ValueError, match="points"):
        views.equity(finished, points=1)


def test_portfolio_values_positions_at_the_last_close(both):
    _finished, live, results = both
    body = views.portfolio(live, "hold")
    r = results["hold"]
    assert body["equity"] == pytest.approx(float(r.equity[-1]), rel=1e-12)
    assert body["cash"] == r.cash_micro / 1e6
    assert {p["symbol"] for p in body["positions"]} == set(r.positions)
    for p in body["positions"]:
        assert p["market_value"] == pytest.approx(p["quantity"] * p["mark"])
        assert p["unrealized_pnl"] == pytest.approx((p["mark"] - p["avg_cost"]) * p["quantity"])
    assert sum(p["weight"] for p in body["positions"]) == pytest.approx(
        (body["equity"] - body["cash"]) / body["equity"])


def test_trades_limit_and_fields(both):
    finished, _live, results = both
    body = views.trades(finished, "sma", limit=5)
    assert len(body["fills"]) == min(5, len(results["sma"].fills))
    last = results["sma"].fills[-1]
    assert body["fills"][-1]["decision_id"] == last.decision_id
    assert body["fills"][-1]["timestamp"].endswith("+00:00")
    assert set(body["orders"][0]) >= {"decision_id", "timestamp", "symbol", "side", "quantity", "status", "reason",
                                      "detail"}
    if body["round_trips"]:
        assert set(body["round_trips"][0]) >= {"symbol", "entry_time", "exit_time", "quantity", "entry_price",
                                               "exit_price", "pnl"}
    with pytest.raises(ValueError, match="limit"):
        views.trades(finished, "sma", limit=0)


def test_why_names_the_features(both):
    finished, _live, results = both
    fill = results["rsi"].fills[0]
    body = views.why(finished, fill.decision_id)
    assert body["model"] == "rsi" and body["symbol"] == fill.symbol and body["method"] == "rule"
    assert [f["name"] for f in body["features"]] == ["rsi_5", "low", "high"]
    assert "RSI(5)" in body["sentence"]
    assert not math.isnan(body["price"])


@pytest.mark.parametrize("bad", ["nope", "sma:ZZZ:3", "sma:AAA", "ghost:AAA:1", "sma:AAA:999999"])
def test_unknown_decision_is_not_found(both, bad):
    for run in both[:2]:
        with pytest.raises(views.NotFound, match="no decision"):
            views.why(run, bad)


def test_unknown_model_is_not_found(both):
    for run in both[:2]:
        with pytest.raises(views.NotFound, match="unknown model 'ghost'; models in this run: "):
            views.portfolio(run, "ghost")
        with pytest.raises(views.NotFound):
            views.trades(run, "ghost")


def test_idle_run_is_empty():
    idle = views.idle_run()
    assert views.leaderboard(idle)["status"] == "idle"
    assert views.equity(idle) == {"timestamps": [], "models": {}}
    with pytest.raises(views.NotFound):
        views.portfolio(idle, "sma")


def test_load_run_explains_a_wrong_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="leaderboard.json is missing"):
        views.load_run(tmp_path)


def test_drawdown_starts_from_initial_cash():
    eq = np.array([90.0, 95.0, 100.0, 80.0])
    from titan_ray.arena import results as out

    class R:  # the fields equity_frame reads
        timestamps = np.arange(4, dtype=np.int64) * 10**9
        equity = eq
        cash = eq
        gross_exposure = np.zeros(4)

    run = views.RunData(run_id="x", status="running", benchmark=None, bars_done=4, bars_total=None,
                        initial_cash=100.0, models=("m",), leaderboard=[], equity=out.equity_frame({"m": R()}),
                        trades=out.trades_frame({}), orders=out.orders_frame({}), portfolios={})
    assert views.equity(run)["models"]["m"]["drawdown"] == pytest.approx([-0.1, -0.05, 0.0, -0.2])


# --- a sample too short to annualise (15-minute bars on equities: at least 30 returns) -------------


@pytest.fixture(scope="module")
def short_runs():
    return {n: _run_in_process(bars=n) for n in (29, 30)}


def test_one_return_short_of_the_minimum_withholds_the_annualised_figures(short_runs):
    _cfg, results, board, n = short_runs[29]
    assert n == 29 and {r["model"] for r in board} == {"sma", "rsi", "hold"}
    for row in board:
        assert row["sample_too_small"] is True, row
        assert row["sample_note"] == ("29 returns; annualised figures need at least 30 (30 returns and one trading "
                                      "day of 26 bars)")
        assert {k: row[k] for k in WITHHELD_FIELDS} == dict.fromkeys(WITHHELD_FIELDS)
        # what needs no annualising stays
        r = results[row["model"]]
        assert row["total_return"] == pytest.approx(float(r.equity[-1]) / 100000 - 1, rel=1e-12)
        assert row["final_equity"] == float(r.equity[-1]) and row["max_drawdown"] < 0
        assert row["n_orders"] == len(r.orders) and row["n_trades"] == len(r.round_trips)
    assert list(board[0])[-2:] == ["sample_too_small", "sample_note"]
    # no Sharpe to rank by yet: best total return first
    returns = [row["total_return"] for row in board]
    assert returns == sorted(returns, reverse=True)


def test_exactly_the_minimum_shows_every_figure(short_runs):
    board = short_runs[30][2]
    for row in board:
        assert row["sample_too_small"] is False and row["sample_note"] is None
        for key in ("cagr", "sharpe", "sortino", "turnover"):
            assert math.isfinite(row[key]), (row["model"], key)
        if row["model"] != "hold":
            assert 0 < row["sharpe_vs_benchmark_p"] <= 1 and isinstance(row["beats_benchmark"], bool)
    sharpes = [row["sharpe"] for row in board]
    assert sharpes == sorted(sharpes, reverse=True)


def test_v1_leaderboard_payload_of_a_short_live_run_has_nulls_the_flag_and_the_reason(short_runs, tmp_path):
    """What GET /v1/leaderboard answers (the arena service's state through views.leaderboard), live and
    from the run folder."""
    cfg, results, board, n = short_runs[29]
    state = ArenaState(cfg, refresh_s=0.0, leaderboard_refresh_s=0.0)
    state.periods = periods_per_year(parse_frequency("15min"), "equities")
    state.run_id, state.bars_done, state.bars_total = "short", n, 400
    body = json.loads(json.dumps(views.leaderboard(state.rebuild(results)), allow_nan=False))
    assert body["status"] == "running" and len(body["rows"]) == 3
    for row in body["rows"]:
        assert row["sample_too_small"] is True and row["sample_note"].startswith("29 returns; ")
        assert [row[k] for k in ("cagr", "sharpe", "sortino", "calmar", "turnover", "p_value")] == [None] * 6
        assert row["beats_benchmark"] is False and row["total_return"] is not None
    write_results(tmp_path, board, results, {"run_id": "short", "n_timestamps": n, "warmup_bars": 0, "n_symbols": 3,
                                                 "frequency": "15min", "seed": 3})
    assert views.leaderboard(views.load_run(tmp_path))["rows"] == body["rows"]

    state.rebuild(short_runs[30][1], finished=True)
    assert not any(r["sample_too_small"] or r["sample_note"] for r in views.leaderboard(state.data)["rows"])


def test_rows_of_a_folder_without_the_flag_say_false():
    run = views.live_run({}, [{"model": "m", "sharpe": 1.0}], run_id="old", status="finished", benchmark=None,
                         bars_done=0, bars_total=0, initial_cash=1.0)
    row = views.leaderboard(run)["rows"][0]
    assert row["sample_too_small"] is False and row["sample_note"] is None and row["sharpe"] == 1.0
