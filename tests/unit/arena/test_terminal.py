"""The final table in the terminal: withheld annualised figures print "—" and the reason below."""

from __future__ import annotations

import io

from titan_ray.arena.terminal import _FINAL_COLUMNS, LiveView, render_table
from titan_ray.metrics.sample import Sample, withhold

ROW = {
    "model": "sma",
    "final_equity": 100_120.0,
    "total_return": 0.0012,
    "cagr": -1.0,
    "sharpe": -62.0,
    "sortino": -80.5,
    "calmar": -877.0,
    "max_drawdown": -0.004,
    "max_drawdown_duration": 9,
    "profit_factor": 0.5,
    "win_rate": 0.25,
    "n_trades": 4,
    "n_orders": 9,
    "n_rejected": 0,
    "turnover": 15_333.0,
    "exposure": 0.4,
    "benchmark": "hold",
    "sharpe_vs_benchmark_p": 0.4,
    "beats_benchmark": False,
    "halted": None,
}
SHORT = Sample(n_returns=26, bars_per_day=26)
ENOUGH = Sample(n_returns=30, bars_per_day=26)
RUN_INFO = {
    "config": {"significance": {"alpha": 0.05}},
    "n_bars": 78,
    "n_symbols": 3,
    "n_timestamps": 26,
    "frequency": "15min",
    "replay_seconds": 0.5,
    "bars_per_second": 156.0,
    "wall_seconds": 3.0,
}


def _cells(lines: list[str]) -> dict[str, str]:
    """header -> cell of the first row (both right-aligned under the same width)."""
    headers = [h for h, _, _ in _FINAL_COLUMNS]
    widths = [len(w) for w in lines[1].split("  ")]
    out, pos = {}, 0
    for header, width in zip(headers, widths, strict=True):
        out[header] = lines[2][pos : pos + width].strip()
        pos += width + 2
    return out


def test_short_sample_prints_a_dash_for_the_annualised_figures_only() -> None:
    cells = _cells(render_table([withhold(ROW, SHORT)], _FINAL_COLUMNS))
    withheld = ("CAGR", "Sharpe", "Sortino", "Calmar", "turnover", "p(SR≤bench)")
    assert {h: cells[h] for h in withheld} == dict.fromkeys(withheld, "—")
    assert cells["return"] == "+0.12%" and cells["max DD"] == "-0.40%" and cells["trades"] == "4"
    assert cells["orders"] == "9" and cells["final equity"] == "100,120.00"


def test_enough_sample_prints_the_numbers() -> None:
    cells = _cells(render_table([withhold(ROW, ENOUGH)], _FINAL_COLUMNS))
    assert cells["Sharpe"] == "-62.00" and cells["CAGR"] == "-100.00%" and cells["turnover"] == "15333.00"
    assert "—" not in cells.values()


def test_finish_explains_the_dash_below_the_table() -> None:
    stream = io.StringIO()
    LiveView(stream, interactive=False).finish(
        [withhold(ROW, SHORT), withhold({**ROW, "model": "hold"}, SHORT)], RUN_INFO, None
    )
    text = stream.getvalue()
    assert (
        "— CAGR, Sharpe, Sortino, Calmar, turnover and the benchmark test withheld: 26 returns; annualised "
        "figures need at least 30 (30 returns and one trading day of 26 bars)."
    ) in text
    assert text.count("withheld") == 1

    stream = io.StringIO()
    LiveView(stream, interactive=False).finish([withhold(ROW, ENOUGH)], RUN_INFO, None)
    assert "withheld" not in stream.getvalue() and "—" not in stream.getvalue()


def test_finish_prints_tail_risk_and_shortfall_under_the_leaderboard() -> None:
    stream = io.StringIO()
    row = {**ROW, "var_95": -0.0123, "cvar_95": -0.02, "var_99": -0.031, "cvar_99": None,
           "implementation_shortfall": 11.34}
    LiveView(stream, interactive=False).finish([withhold(row, ENOUGH)], RUN_INFO, None)
    lines = stream.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Tail risk per bar"))
    assert lines[at + 1].split() == ["model", "VaR", "95%", "CVaR", "95%", "VaR", "99%", "CVaR", "99%",
                                     "shortfall", "bps"]
    assert lines[at + 3].split() == ["sma", "-1.23%", "-2.00%", "-3.10%", "–", "+11.3"]
    stream = io.StringIO()
    LiveView(stream, interactive=False).finish([withhold(ROW, ENOUGH)], RUN_INFO, None)
    assert "Tail risk" not in stream.getvalue()  # rows without the keys (an older results folder)
