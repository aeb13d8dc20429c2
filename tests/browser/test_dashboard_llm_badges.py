"""An LLM competitor on the dashboard, in Chromium: its leaderboard row carries an "llm" badge with its
requests, tokens, latency and cost on hover, and a "contaminated" badge when it decided on bars before its
knowledge cutoff; other rows carry neither. The run is the arena's own code without Ray (the models and
one ledger), the LLM answering from the loopback OpenAI-compatible stub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_stub import OpenAIStub

from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.arena.runner import write_results
from titan_ray.config import parse_config
from titan_ray.dashboard.report import write_report
from titan_ray.data.providers import make_provider
from titan_ray.domain.calendar import periods_per_year
from titan_ray.ledger.engine import Ledger
from titan_ray.models.kinds import build_model

pytestmark = pytest.mark.slow

KEY_ENV, KEY = "TITAN_TEST_LLM_BROWSER_KEY", "sk-browser-secret"
BARS = 120


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, KEY)
    mp.delenv("TITAN_RAY_LLM_CACHE_ONLY", raising=False)
    folder = tmp_path_factory.mktemp("llm") / "run"
    with OpenAIStub(key=KEY) as stub:
        raw = {
            "seed": 4,
            "data": {"provider": "synthetic", "n_symbols": 3, "bars": BARS, "frequency": "15min"},
            "significance": {"n_resamples": 100},
            "models": [
                {"name": "hold", "kind": "buy_and_hold"},
                {"name": "gpt", "kind": "llm", "params": {
                    "base_url": stub.base_url, "model": "stub-1", "api_key_env": KEY_ENV, "every": 10,
                    "cache_dir": str(folder.parent / "cache"), "knowledge_cutoff": "2024-01-04"}},
            ],
        }
        cfg = parse_config(raw)
        market = make_provider(cfg.data, cfg.seed).load()
        bars = market.bars
        models = [build_model(m.name, m.kind, m.params, bars.symbols, seed=cfg.seed) for m in cfg.models]
        ledger = Ledger(ledger=cfg.ledger, risk=cfg.risk, symbols=bars.symbols, calendar=market.calendar,
                        models={m.name: m.long_only for m in models})
        for seq, part in enumerate(bars.chunks(32)):
            ledger.apply(seq, part, [m.decide(part) for m in models])
    mp.undo()
    extra = {m.name: m.account()["leaderboard"] for m in models if m.account() is not None}
    board = build_leaderboard(cfg, ledger.results(), periods_per_year(market.frequency, market.calendar.value),
                              extra=extra)
    folder.mkdir()
    write_results(folder, board, ledger.results(), {
        "run_id": "llm", "config": {"ledger": {"initial_cash": "1000000"}}, "n_timestamps": BARS, "warmup_bars": 0,
        "n_symbols": 3, "frequency": "15min", "seed": 4})
    return write_report(folder)


def test_the_llm_row_has_its_badges(open_page, report):
    board = {row["model"]: row for row in json.loads((report.parent / "leaderboard.json").read_text())}
    gpt = board["gpt"]
    assert gpt["contaminated"] is True and 0 < gpt["contaminated_bars"] < gpt["llm_calls"]  # the run spans it
    o = open_page(report.as_uri())
    page = o.page
    o.wait_for("document.querySelectorAll('#leaderboard tbody tr[data-model]').length === 2")
    cell = page.locator('#leaderboard tr[data-model="gpt"] td[data-key="model"]')
    llm = cell.locator(".badge", has_text="llm")
    assert llm.count() == 1 and f"{gpt['llm_tokens']} tokens" in llm.get_attribute("title")
    bad = cell.locator(".badge.bad")
    assert bad.inner_text() == f"contaminated: {gpt['contaminated_bars']}"
    assert "knowledge cutoff (2024-01-04)" in bad.get_attribute("title")
    assert page.locator('#leaderboard tr[data-model="hold"] td[data-key="model"] .badge').count() == 0
    o.shot("leaderboard-llm", full_page=True)
    o.assert_no_console_errors()
