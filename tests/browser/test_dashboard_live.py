"""The dashboard at ``/`` of the running Serve app, in headless Chromium: what a user sees and clicks."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# DESIGN.md's leaderboard: every metric, and the test against the benchmark
METRICS = ("final_equity", "total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown",
           "max_drawdown_duration", "profit_factor", "win_rate", "n_trades", "n_orders", "n_rejected", "turnover",
           "exposure", "p_value")


@pytest.fixture
def api(serve_url):
    def get(path: str) -> Any:
        with urllib.request.urlopen(f"{serve_url.rstrip('/')}/{path.lstrip('/')}", timeout=30) as response:
            return json.loads(response.read())

    return get


def _home(serve_url: str) -> str:
    return serve_url.rstrip("/") + "/"


def _wait_api(api, path: str, ok, timeout_s: float = 60.0) -> Any:
    """Poll ``path`` until ``ok(body)``: the arena may still be warming up when a test starts."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = api(path)
        if ok(body):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not get there within {timeout_s:.0f} s; last answer: {str(body)[:400]}")
        time.sleep(0.5)


def _model_with_fills(api) -> tuple[str, dict[str, Any]]:
    """The model with the most fills (the benchmark only if no other has traded): its Why? has the most to say."""
    found: dict[str, Any] = {}

    def any_fills(board: Any) -> bool:
        best = None
        for row in board["rows"]:
            trades = api(f"v1/trades/{urllib.parse.quote(row['model'], safe='')}?limit=200")
            n = sum(1 for f in trades["fills"] if f.get("decision_id"))
            key = (row["model"] != board["benchmark"], n)
            if n and (best is None or key > best[0]):
                best = (key, row["model"], trades)
        if best is not None:
            found.update(model=best[1], trades=best[2])
        return best is not None

    _wait_api(api, "v1/leaderboard", any_fills)
    return found["model"], found["trades"]


def _numbers(texts: list[str]) -> list[float]:
    """Cell texts as numbers, the dash of a missing value as nan."""
    out = []
    for t in texts:
        t = t.replace(",", "").replace("%", "").replace("×", "").strip()
        out.append(math.nan if t in ("—", "") else float(t))
    return out


def test_leaderboard_renders_every_model_with_every_metric_and_sorts(open_page, serve_url, api):
    board = _wait_api(api, "v1/leaderboard", lambda b: b["rows"])
    models = {row["model"] for row in board["rows"]}
    o = open_page(_home(serve_url))
    o.wait_for(f"document.querySelectorAll('#leaderboard tbody tr[data-model]').length === {len(models)}")
    page = o.page
    shown = page.eval_on_selector_all("#leaderboard tbody tr[data-model]", "rows => rows.map(r => r.dataset.model)")
    assert set(shown) == models
    headers = page.eval_on_selector_all("#leaderboard th[data-key]", "ths => ths.map(t => t.dataset.key)")
    missing = [m for m in METRICS if m not in headers]
    assert not missing, f"leaderboard lacks columns {missing}"
    # one cell per metric in every row
    cells = page.eval_on_selector_all("#leaderboard tbody tr[data-model]",
                                      "rows => rows.map(r => r.querySelectorAll('td[data-key]').length)")
    assert cells == [len(headers)] * len(models)
    if board["benchmark"]:
        marker = page.locator(f'#leaderboard tr[data-model="{board["benchmark"]}"] td.sig')
        assert marker.inner_text().strip() == "benchmark"
    # the significance marker (▲) is on exactly the rows whose test beat the benchmark
    marked = page.evaluate("""() => TitanRay.app.state.leaderboard.rows.map(r => [r.model, !!r.beats_benchmark,
        document.querySelector(`#leaderboard tr[data-model="${r.model}"] .sig-beats`) !== null])""")
    assert all(beats == shown for _, beats, shown in marked), marked
    o.shot("leaderboard", full_page=True)

    # sorting: Sharpe, best first, then worst first; a missing Sharpe stays last both ways
    page.click('#leaderboard th[data-key="sharpe"] button')
    assert page.get_attribute('#leaderboard th[data-key="sharpe"]', "aria-sort") == "descending"
    values = _numbers(page.eval_on_selector_all('#leaderboard td[data-key="sharpe"]', "tds => tds.map(t => t.innerText)"))
    finite = [v for v in values if not math.isnan(v)]
    assert finite == sorted(finite, reverse=True) and values[:len(finite)] == finite
    page.click('#leaderboard th[data-key="sharpe"] button')
    assert page.get_attribute('#leaderboard th[data-key="sharpe"]', "aria-sort") == "ascending"
    values = _numbers(page.eval_on_selector_all('#leaderboard td[data-key="sharpe"]', "tds => tds.map(t => t.innerText)"))
    finite = [v for v in values if not math.isnan(v)]
    assert finite == sorted(finite) and values[:len(finite)] == finite
    page.click('#leaderboard th[data-key="model"] button')
    names = page.eval_on_selector_all("#leaderboard tbody tr[data-model]", "rows => rows.map(r => r.dataset.model)")
    assert names == sorted(names)
    o.assert_no_console_errors()


# the served arena's 1-minute bars on the continuous calendar: 1,440 returns before annualising
SHORT_NOTE = re.compile(r"([\d,]+) returns; annualised figures need at least 1,440 "
                        r"\(30 returns and one trading day of 1,440 bars\)")
WITHHELD = ("cagr", "sharpe", "sortino", "calmar", "turnover", "p_value")


def _check_sample_flag(row: dict[str, Any]) -> None:
    assert isinstance(row["sample_too_small"], bool), row
    if row["sample_too_small"]:
        m = SHORT_NOTE.fullmatch(row["sample_note"] or "")
        assert m and int(m[1].replace(",", "")) < 1440, row["sample_note"]
        assert [row[k] for k in WITHHELD] == [None] * len(WITHHELD), row
        assert row["beats_benchmark"] is False and row["total_return"] is not None
    else:
        assert row["sample_note"] is None, row


def test_rows_short_of_a_day_show_a_dash_with_the_reason(open_page, serve_url, api):
    """/v1/leaderboard over HTTP and the page drawn from it agree on the sample rule, early in the run
    (rows flagged, "—" with the reason on hover) as later (numbers)."""
    board = _wait_api(api, "v1/leaderboard", lambda b: b["rows"])
    for row in board["rows"]:
        _check_sample_flag(row)
    o = open_page(_home(serve_url))
    o.wait_for("document.querySelectorAll('#leaderboard tbody tr[data-model]').length > 0")
    # the rows the page holds and the cells it drew from them, read at one instant (events may redraw it)
    drawn = o.page.evaluate("""() => TitanRay.app.state.leaderboard.rows.map(row => {
        const td = document.querySelector(`#leaderboard tr[data-model="${row.model}"] td[data-key="sharpe"]`);
        return {row, text: td.innerText.trim(), title: td.getAttribute("title")};
    })""")
    assert drawn
    for cell in drawn:
        _check_sample_flag(cell["row"])
        if cell["row"]["sample_too_small"]:
            assert cell["text"] == "—" and cell["title"] == "withheld: " + cell["row"]["sample_note"], cell
        else:
            assert cell["title"] is None, cell  # a number, or "—" for a Sharpe that is undefined
    short = any(c["row"]["sample_too_small"] for c in drawn)
    assert o.page.locator("#sample-note").is_visible() == short
    o.assert_no_console_errors()


def test_equity_chart_has_one_series_per_model(open_page, serve_url, api):
    equity = _wait_api(api, "v1/equity?points=2000", lambda b: b["models"] and len(b["timestamps"]) > 1)
    models = sorted(equity["models"])
    o = open_page(_home(serve_url))
    o.wait_for(f"TitanRay.app.snapshot().equitySeries === {len(models)}")
    page = o.page
    # the chart library's own count of series in the equity pane, and each holds points
    drawn = page.evaluate("""() => [...TitanRay.app.equity.series].map(([m, s]) =>
        [m, s.equity.data().length, s.drawdown.data().length])""")
    assert sorted(m for m, _, _ in drawn) == models
    assert all(n_eq > 1 and n_dd > 1 for _, n_eq, n_dd in drawn), drawn
    assert page.evaluate("TitanRay.app.equity.chart.panes().length") == 2  # equity above, drawdown below
    legend = page.eval_on_selector_all("#equity-legend .legend-item", "items => items.map(i => i.dataset.model)")
    assert sorted(legend) == models
    box = page.locator("#equity-chart canvas").first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 200
    # clicking a legend entry hides that model's curves
    page.click(f'#equity-legend .legend-item[data-model="{models[0]}"]')
    hidden = page.evaluate(f"TitanRay.app.equity.series.get({json.dumps(models[0])}).equity.options().visible")
    assert hidden is False
    o.shot("equity")
    o.assert_no_console_errors()


def test_why_button_shows_the_explanation_of_that_trade(open_page, serve_url, api):
    model, _trades = _model_with_fills(api)
    o = open_page(_home(serve_url) + "#/model/" + urllib.parse.quote(model, safe=""))
    page = o.page
    o.wait_for("document.querySelectorAll('#model-body table.fills button.why').length > 0", timeout_s=30)
    assert page.locator("#model-body [data-section=positions]").count() == 1
    assert page.locator("#model-body [data-section=orders]").count() == 1
    assert page.locator("#model-body [data-section=rejections]").count() == 1
    button = page.locator("#model-body table.fills button.why").nth(0)
    decision_id = button.get_attribute("data-decision-id")
    row_symbol = page.locator("#model-body table.fills tbody tr").nth(0).locator("td").nth(1).inner_text()
    button.click()
    o.wait_for(f"document.getElementById('why').dataset.loaded === {json.dumps(decision_id)}")
    why = api(f"v1/decisions/{urllib.parse.quote(decision_id, safe='')}/why")
    assert why["decision_id"] == decision_id and why["model"] == model and why["symbol"] == row_symbol
    assert page.locator("#why").is_visible()
    assert page.inner_text("#why .why-sentence") == why["sentence"]
    assert why["symbol"] in page.inner_text("#why-title")
    assert page.locator("#why table.inputs tbody tr").count() == max(len(why["features"]), 1)
    shown_inputs = page.eval_on_selector_all("#why table.inputs tbody tr td:first-child", "tds => tds.map(t => t.innerText)")
    assert shown_inputs == [f["name"] for f in why["features"]] or not why["features"]
    attributed = [f["name"] for f in why["features"] if f["attribution"]]
    bars = page.eval_on_selector_all("#why .attr-row", "rows => rows.map(r => r.dataset.feature)")
    assert sorted(bars) == sorted(attributed)
    o.shot("why")
    page.keyboard.press("Escape")
    o.wait_for("!document.getElementById('why').open")
    o.assert_no_console_errors()


def test_live_updates_arrive_over_the_event_stream(open_page, serve_url, api):
    o = open_page(_home(serve_url))
    o.wait_for("TitanRay.app.snapshot().connection === 'live' && TitanRay.app.snapshot().snapshots >= 1")
    page = o.page
    first = page.evaluate("TitanRay.app.state.leaderboard.progress.bars_done")
    if page.evaluate("TitanRay.app.snapshot().status") == "running":
        # the replay goes on: newer snapshots arrive and the page redraws without a reload
        o.wait_for(f"TitanRay.app.state.leaderboard.progress.bars_done > {first} || "
                   "TitanRay.app.snapshot().status === 'finished'", timeout_s=30)
        assert page.evaluate("TitanRay.app.snapshot().snapshots") >= 2
    server = api("v1/leaderboard")
    if server["status"] == "finished":
        o.wait_for("TitanRay.app.snapshot().status === 'finished'", timeout_s=15)
        assert page.locator("#final-banner").is_visible()
        assert page.inner_text("#status-pill") == "finished"
    done = page.evaluate("TitanRay.app.state.leaderboard.progress.bars_done")
    assert f"{done:,}" in page.inner_text("#progress-text")
    o.shot("live")
    o.assert_no_console_errors()


def test_stream_that_drops_is_reconnected(open_page, serve_url):
    """First attempt: the network fails; second: the server ends the stream at once; third: the real one."""
    attempts = []

    def flaky(route):
        attempts.append(route.request.url)
        if len(attempts) == 1:
            route.abort("connectionreset")
        elif len(attempts) == 2:
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                          body="retry: 200\n\n: the stream ends here\n\n")
        else:
            route.continue_()

    o = open_page(_home(serve_url), route=flaky)
    o.wait_for("TitanRay.app.snapshot().connections >= 2 && TitanRay.app.snapshot().connection === 'live' "
               "&& TitanRay.app.snapshot().snapshots >= 1", timeout_s=30)
    assert len(attempts) >= 3
    assert o.page.get_attribute("#conn", "data-state") == "live"
    o.assert_no_console_errors(allow=("net::ERR_CONNECTION_RESET", "net::ERR_FAILED"))


def test_phone_width(open_page, serve_url, api):
    model, _ = _model_with_fills(api)
    o = open_page(_home(serve_url), "phone")
    page = o.page
    screen = page.viewport_size["width"]
    o.wait_for("document.querySelectorAll('#leaderboard tbody tr[data-model]').length > 0 && "
               "TitanRay.app.snapshot().equitySeries > 0")
    # nothing wider than the screen: wide tables scroll inside their card
    assert page.evaluate("document.documentElement.scrollWidth") <= screen
    chart = page.locator("#equity-chart").bounding_box()
    assert chart and 250 <= chart["width"] <= screen
    o.shot("overview", full_page=True)
    page.goto(page.url.split("#")[0] + "#/model/" + urllib.parse.quote(model, safe=""))
    o.wait_for("document.querySelectorAll('#model-body table.fills button.why').length > 0", timeout_s=30)
    assert page.evaluate("document.documentElement.scrollWidth") <= screen
    # measured in one script run: the live feed may re-render the model page (a fill, a reconnection)
    # between two calls from here, and the button located by one would be gone by the next
    right = page.wait_for_function(
        "() => { const b = document.querySelector('#model-body table.fills button.why');"
        " const r = b && b.getBoundingClientRect(); return r && r.width > 0 ? r.right : null; }",
        timeout=30_000).json_value()
    assert right <= screen, f"the Why? button ends at {right}px of {screen}: it must be reachable without scrolling"
    why = page.locator("#model-body table.fills button.why").first
    o.shot("model")
    why.click()
    o.wait_for("document.getElementById('why').dataset.loaded !== undefined")
    dialog = page.locator("#why").bounding_box()
    assert dialog and dialog["width"] <= screen
    o.shot("why")
    o.assert_no_console_errors()


def test_experiments_view(open_page, serve_url, api):
    listed = api("v1/experiments")["experiments"]
    o = open_page(_home(serve_url) + "#/experiments")
    page = o.page
    if not listed:
        o.wait_for("document.querySelector('#experiment-list .empty') !== null")
    else:
        o.wait_for(f"document.querySelectorAll('#experiment-list .exp-item').length === {len(listed)}")
        first = listed[0]
        o.wait_for(f"document.querySelectorAll('#experiment-detail table.arms tbody tr').length === {len(first['arms'])}")
        arms = page.eval_on_selector_all("#experiment-detail table.arms tbody tr td:first-child",
                                         "tds => tds.map(t => t.innerText)")
        for arm, text in zip(first["arms"], arms, strict=True):
            assert text.startswith(arm["name"])
        detail = api(f"v1/experiments/{urllib.parse.quote(first['name'], safe='')}")
        if detail.get("example_request") is not None:
            assert f"/v1/experiments/{first['name']}/predict" in page.inner_text("#experiment-detail pre.curl")
    o.shot("experiments", full_page=True)
    o.assert_no_console_errors()
