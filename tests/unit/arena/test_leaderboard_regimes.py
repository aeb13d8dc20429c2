"""The leaderboard's metrics per market regime: each return under the regime known when it was earned."""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.arena.terminal import regime_table
from titan_ray.config import parse_config
from titan_ray.data.providers import make_provider
from titan_ray.domain.calendar import periods_per_year
from titan_ray.ledger.engine import Ledger
from titan_ray.metrics.performance import returns_from_equity, sharpe
from titan_ray.metrics.regimes import REGIMES, UNKNOWN, classify, held_labels, market_index
from titan_ray.models.kinds import build_model

CONFIG = {
    "seed": 4,
    "data": {"provider": "synthetic", "n_symbols": 3, "bars": 2400, "synthetic": {"scenario": "trending"}},
    "replay": {"warmup_bars": 600},
    "significance": {"n_resamples": 100},
    "models": [{"name": "sma", "kind": "sma_crossover"}, {"name": "hold", "kind": "buy_and_hold"}],
}


def test_held_labels_take_the_bar_before_each_return():
    market = np.array([10, 20, 30, 40, 50])
    labels = np.array([UNKNOWN, 0, 1, 2, 3], dtype=np.int8)
    assert held_labels(market, labels, np.array([20, 30, 50])).tolist() == [UNKNOWN, 0, 2]
    assert held_labels(market, labels, np.array([10, 35, 60])).tolist() == [UNKNOWN] * 3  # first bar, unknown times


def test_each_rows_regime_sharpes_are_its_returns_split_by_the_regime_before_them():
    cfg = parse_config(CONFIG)
    market = make_provider(cfg.data, cfg.seed).load()
    bars = market.bars
    models = [build_model(m.name, m.kind, m.params, bars.symbols, seed=cfg.seed) for m in cfg.models]
    ledger = Ledger(ledger=cfg.ledger, risk=cfg.risk, symbols=bars.symbols, calendar=market.calendar,
                    models={m.name: m.long_only for m in models})
    warm = cfg.replay.warmup_bars
    for m in models:
        m.observe(bars.slice(0, warm))
    for seq, lo in enumerate(range(warm, len(bars), 300)):
        part = bars.slice(lo, min(lo + 300, len(bars)))
        ledger.apply(seq, part, [m.decide(part) for m in models])
    periods = periods_per_year(market.frequency, market.calendar.value)
    labels = classify(market_index(bars.close))
    results = ledger.results()
    board = build_leaderboard(cfg, results, periods, regimes=(bars.timestamps, labels))
    plain = build_leaderboard(cfg, results, periods)
    for row, before in zip(board, plain, strict=True):
        assert {k: v for k, v in row.items() if k != "regimes"} == before  # nothing else changes
        r = returns_from_equity(results[row["model"]].equity, float(cfg.ledger.initial_cash))
        held = labels[warm - 1: len(bars) - 1]  # the regime of the bar before each traded bar
        assert sum(v["n_bars"] for v in row["regimes"].values()) == int(np.sum(held != UNKNOWN))
        for i, name in enumerate(REGIMES):
            got = row["regimes"][name]
            assert got["n_bars"] == int(np.sum(held == i))
            if got["sharpe"] is not None:
                assert got["sharpe"] == pytest.approx(sharpe(r[held == i], periods), rel=1e-12)
    assert {n for n in REGIMES if board[0]["regimes"][n]["n_bars"]} >= {"up_calm", "down_calm"}  # trending: both ways
    lines = regime_table(board)
    assert lines[2].split() == ["model", *REGIMES] and len(lines) == 3 + len(board) + 1
