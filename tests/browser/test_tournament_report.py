"""The shipped example tournament runs on the shared Ray, and its report opens from disk in Chromium
with no console errors, every plot drawn and the verdict table as tournament.json says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from titan_ray.tournament.runner import run_tournament
from titan_ray.tournament.spec import load_tournament

EXAMPLE = Path(__file__).resolve().parents[2] / "titan_ray" / "configs" / "tournament.yaml"

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tournament")
    run = run_tournament(load_tournament(EXAMPLE), out)
    assert not run.failed and run.verdict["n_arenas"] == 12
    return out


def test_the_example_tournaments_report_opens_with_its_verdict_and_plots(browser, finished):
    verdict = json.loads((finished / "tournament.json").read_text())
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto((finished / "report.html").as_uri())
        page.wait_for_load_state("load")
        shown = page.eval_on_selector_all("#verdict-table tbody tr", "rows => rows.map(r => r.dataset.model)")
        assert shown == verdict["ranking"]
        words = page.eval_on_selector_all("#verdict-table tbody tr td:nth-child(2)", "tds => tds.map(t => t.innerText)")
        assert words == [verdict["models"][n]["verdict"] for n in verdict["ranking"]]
        for plot in ("sharpe-distributions", "rank-heatmap", "equity-fans"):
            width = page.eval_on_selector(f"#{plot}", "img => img.complete ? img.naturalWidth : 0")
            assert width > 300, f"{plot} was not drawn"
        assert page.locator("#regimes tbody tr").count() == len(verdict["ranking"])
        assert page.locator("#regime-accuracy tbody tr").count() == len(verdict["regime_accuracy"]) == 6
        assert page.locator("#arenas tbody tr").count() == 12
        assert not errors, errors
        assert all(url.startswith(("file:", "data:")) for url in requests), requests  # nothing from a network
    finally:
        context.close()
