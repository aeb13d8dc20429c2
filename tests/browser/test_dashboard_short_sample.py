"""A run too short to annualise, in Chromium: "—" for CAGR, Sharpe, ... with the reason on hover.

The run is the arena's own code without Ray (the models and one ledger, chunk by chunk, then the
results folder and its report), 29 fifteen-minute bars: one return short of the minimum of 30.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.arena.runner import write_results
from titan_ray.config import parse_config
from titan_ray.dashboard.report import write_report
from titan_ray.data.providers import make_provider
from titan_ray.domain.calendar import periods_per_year
from titan_ray.ledger.engine import Ledger
from titan_ray.models.kinds import build_model

pytestmark = pytest.mark.slow

BARS = 29
CONFIG = {
    "seed": 4,
    "data": {"provider": "synthetic", "n_symbols": 3, "bars": BARS, "frequency": "15min"},
    "ledger": {"initial_cash": 100000, "commission_bps": 5},
    "significance": {"n_resamples": 100},
    "models": [
        {"name": "sma", "kind": "sma_crossover", "params": {"fast": 2, "slow": 5}},
        {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 3, "low": 45, "high": 55}},
        {"name": "hold", "kind": "buy_and_hold"},
    ],
}
NOTE = "29 returns; annualised figures need at least 30 (30 returns and one trading day of 26 bars)"
WITHHELD = ("cagr", "sharpe", "sortino", "calmar", "turnover", "p_value")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    cfg = parse_config(CONFIG)
    market = make_provider(cfg.data, cfg.seed).load()
    bars = market.bars
    models = [build_model(m.name, m.kind, m.params, bars.symbols, seed=cfg.seed) for m in cfg.models]
    ledger = Ledger(
        ledger=cfg.ledger,
        risk=cfg.risk,
        symbols=bars.symbols,
        calendar=market.calendar,
        models={m.name: m.long_only for m in models},
    )
    for seq, part in enumerate(bars.chunks(8)):
        ledger.apply(seq, part, [m.decide(part) for m in models])
    results = ledger.results()
    board = build_leaderboard(cfg, results, periods_per_year(market.frequency, market.calendar.value))
    folder = tmp_path_factory.mktemp("short") / "run"
    folder.mkdir()
    write_results(
        folder,
        board,
        results,
        {
            "run_id": "short",
            "config": {"ledger": {"initial_cash": "100000"}},
            "n_timestamps": BARS,
            "warmup_bars": 0,
            "n_symbols": 3,
            "frequency": "15min",
            "seed": 4,
        },
    )
    return write_report(folder)


def test_short_sample_shows_a_dash_with_the_reason_on_hover(open_page, report):
    board = json.loads((report.parent / "leaderboard.json").read_text())
    assert all(row["sample_too_small"] and row["sample_note"] == NOTE for row in board)
    o = open_page(report.as_uri())
    page = o.page
    o.wait_for(f"document.querySelectorAll('#leaderboard tbody tr[data-model]').length === {len(board)}")
    for row in board:
        tr = f'#leaderboard tr[data-model="{row["model"]}"]'
        for key in WITHHELD:
            td = page.locator(f'{tr} td[data-key="{key}"]')
            assert td.inner_text().strip() == (
                "benchmark" if row["model"] == "hold" and key == "p_value" else "—"
            )
            if not (row["model"] == "hold" and key == "p_value"):
                title = td.locator(".withheld").get_attribute("title")
                assert title == f"withheld: {NOTE}", (row["model"], key, title)
        # what needs no annualising is shown
        shown = page.locator(f'{tr} td[data-key="total_return"]').inner_text()
        assert shown == f"{'+' if row['total_return'] > 0 else ''}{row['total_return'] * 100:.2f}%"
        assert page.locator(f'{tr} td[data-key="n_orders"]').inner_text() == str(row["n_orders"])
        assert page.locator(f'{tr} td[data-key="max_drawdown"]').inner_text() != "—"
    note = page.locator("#sample-note")
    assert note.is_visible() and NOTE in note.inner_text()
    # sorting by a withheld column keeps every row and draws no error
    page.click('#leaderboard th[data-key="sharpe"] button')
    assert page.locator("#leaderboard tbody tr[data-model]").count() == len(board)
    o.shot("leaderboard", full_page=True)
    o.assert_no_console_errors()
