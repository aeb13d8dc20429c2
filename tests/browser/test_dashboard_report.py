"""`titan-ray report DIR`: the report of a finished run opens from disk in Chromium, with no server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = {
    "seed": 11,
    "data": {"provider": "synthetic", "n_symbols": 3, "bars": 600, "frequency": "15min"},
    "ledger": {"initial_cash": 100000, "commission_bps": 5},
    "significance": {"n_resamples": 200},
    "models": [
        {"name": "sma", "kind": "sma_crossover", "params": {"fast": 3, "slow": 10}},
        {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 5, "low": 40, "high": 60}},
        {"name": "hold", "kind": "buy_and_hold"},
    ],
}


@pytest.fixture(scope="module")
def report(ray_session, tmp_path_factory) -> Path:
    """A real arena run (the shared Ray), then the real CLI writes its report."""
    from titan_ray.arena.runner import run_arena
    from titan_ray.config import parse_config

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    run_arena(parse_config(CONFIG), run_dir)
    done = subprocess.run([sys.executable, "-m", "titan_ray", "report", str(run_dir)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path = run_dir / "report.html"
    assert f"wrote {path}" in done.stdout
    return path


def test_report_opens_from_disk_without_a_server(open_page, report):
    board = json.loads((report.parent / "leaderboard.json").read_text())
    o = open_page(report.as_uri())
    page = o.page
    o.wait_for(f"document.querySelectorAll('#leaderboard tbody tr[data-model]').length === {len(board)}")
    # the rows in the run's own ranking, every model of leaderboard.json
    shown = page.eval_on_selector_all("#leaderboard tbody tr[data-model]", "rows => rows.map(r => r.dataset.model)")
    assert shown == [row["model"] for row in board]
    assert page.get_attribute("#conn", "data-state") == "report"
    assert page.locator("#final-banner").is_visible()
    o.wait_for(f"TitanRay.app.snapshot().equitySeries === {len(board)}")
    # the Sharpe ratios the page prints are the run's, rounded as shown
    sharpe = page.eval_on_selector_all('#leaderboard td[data-key="sharpe"]', "tds => tds.map(t => t.innerText)")
    assert sharpe == [f"{row['sharpe']:.2f}" if row["sharpe"] is not None else "—" for row in board]
    o.shot("leaderboard", full_page=True)
    # nothing but the file itself was loaded: no server, no network
    assert o.requests and all(url.startswith(("file:", "data:")) for url in o.requests), o.requests
    o.assert_no_console_errors()


def test_report_why_matches_the_runs_decisions(open_page, report):
    decisions = pd.read_parquet(report.parent / "decisions.parquet").set_index("decision_id")
    trades = pd.read_parquet(report.parent / "trades.parquet")
    model = trades[trades["record"] == "fill"]["model"].value_counts().index[0]
    for width in ("desktop", "phone"):
        o = open_page(report.as_uri() + f"#/model/{model}", width)
        page = o.page
        o.wait_for("document.querySelectorAll('#model-body table.fills button.why').length > 0")
        button = page.locator("#model-body table.fills button.why").nth(2)
        decision_id = button.get_attribute("data-decision-id")
        button.click()
        o.wait_for(f"document.getElementById('why').dataset.loaded === {json.dumps(decision_id)}")
        assert page.inner_text("#why .why-sentence") == decisions.loc[decision_id, "sentence"]
        features = json.loads(decisions.loc[decision_id, "features"])
        names = page.eval_on_selector_all("#why table.inputs tbody tr td:first-child", "tds => tds.map(t => t.innerText)")
        assert names == [f["name"] for f in features]
        assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
        o.shot("why")
        o.assert_no_console_errors()
