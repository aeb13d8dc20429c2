"""The arena in the terminal: a progress bar with a live leaderboard, then the final table.

On a terminal the block is redrawn in place; in a log (CI, a pipe) a progress line is printed at
every tenth of the replay instead, so logs stay short and readable.

In the tables "–" is a value that is undefined (a win rate without trades) and "—" one withheld
because the sample is too short to annualise (``titan_ray.metrics.sample``); the final table
explains the latter below itself.
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from titan_ray.arena.pipeline import Progress
from titan_ray.metrics.sample import WITHHELD_FIELDS, WITHHELD_LABEL

WITHHELD = "—"


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if kind == "pct":
        return f"{value * 100:+.2f}%"
    if kind == "share":
        return f"{value * 100:.1f}%"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "bps":
        return f"{value:+.1f}"
    if kind == "int":
        return f"{int(value):,}"
    return str(value)


_LIVE_COLUMNS = [
    ("model", "model", "str"), ("equity", "equity", "money"), ("return", "total_return", "pct"),
    ("sharpe", "sharpe", "ratio"), ("max dd", "max_drawdown", "pct"), ("trades", "n_trades", "int"),
    ("rejected", "n_rejected", "int"),
]

_FINAL_COLUMNS = [
    ("model", "model", "str"), ("final equity", "final_equity", "money"), ("return", "total_return", "pct"),
    ("CAGR", "cagr", "pct"), ("Sharpe", "sharpe", "ratio"), ("Sortino", "sortino", "ratio"),
    ("Calmar", "calmar", "ratio"), ("max DD", "max_drawdown", "pct"), ("DD bars", "max_drawdown_duration", "int"),
    ("PF", "profit_factor", "ratio"), ("win", "win_rate", "share"), ("trades", "n_trades", "int"),
    ("orders", "n_orders", "int"), ("rejected", "n_rejected", "int"), ("turnover", "turnover", "ratio"),
    ("exposure", "exposure", "share"), ("p(SR≤bench)", "sharpe_vs_benchmark_p", "ratio"),
]


# Tail risk per bar (a return: negative is a loss) and the cost of execution against the arrival price.
_RISK_COLUMNS = [
    ("model", "model", "str"), ("VaR 95%", "var_95", "pct"), ("CVaR 95%", "cvar_95", "pct"),
    ("VaR 99%", "var_99", "pct"), ("CVaR 99%", "cvar_99", "pct"), ("shortfall bps", "implementation_shortfall", "bps"),
]


def render_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> list[str]:
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        short = bool(row.get("sample_too_small"))
        line = [WITHHELD if short and key in WITHHELD_FIELDS else _fmt(row.get(key), kind) for _, key, kind in columns]
        if row.get("beats_benchmark"):
            line[0] += " *"
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    out = []
    for n, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def sample_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per distinct reason why rows have figures withheld ("—"); none when no row has."""
    by_note: dict[str, list[str]] = {}
    for row in rows:
        if row.get("sample_too_small"):
            by_note.setdefault(row.get("sample_note") or "sample too small", []).append(row["model"])
    if len(by_note) == 1:
        return [f"{WITHHELD} {WITHHELD_LABEL} withheld: {note}." for note in by_note]
    return [f"{WITHHELD} withheld for {', '.join(models)}: {note}." for note, models in by_note.items()]


class LiveView:
    """Progress callback for ``run_arena`` that draws on ``stream``."""

    def __init__(self, stream: TextIO = sys.stdout, *, interactive: bool | None = None, width: int = 32) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.width = width
        self._drawn = 0
        self._next_decile = 1
        self._snapshot: list[dict[str, Any]] | None = None

    def __call__(self, p: Progress) -> None:
        if p.snapshot is not None:
            self._snapshot = sorted(p.snapshot, key=lambda r: -r["equity"])
        frac = p.done_timestamps / p.total_timestamps if p.total_timestamps else 1.0
        rate = p.done_timestamps * p.n_symbols / p.elapsed if p.elapsed > 0 else 0.0
        eta = (p.total_timestamps - p.done_timestamps) * p.n_symbols / rate if rate > 0 else 0.0
        filled = int(frac * self.width)
        bar = "█" * filled + "░" * (self.width - filled)
        line = (f"replay {bar} {frac * 100:5.1f}%  {p.done_timestamps:,}/{p.total_timestamps:,} timestamps  "
                f"{rate:,.0f} bars/s  eta {eta:.0f}s")
        if not p.total_timestamps:  # live mode without a bar limit: no end to show
            line = f"live  {p.done_timestamps:,} bars  {p.elapsed:,.0f}s"
        if self.interactive:
            lines = [line, ""]
            if self._snapshot:
                lines += render_table(self._snapshot, _LIVE_COLUMNS)
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
        elif frac * 10 >= self._next_decile or p.done_timestamps == p.total_timestamps:
            self._next_decile = int(frac * 10) + 1
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, leaderboard: list[dict[str, Any]], run_info: dict[str, Any], out_dir: Any) -> None:
        w = self.stream.write
        w("\n" + "\n".join(render_table(leaderboard, _FINAL_COLUMNS)) + "\n")
        for line in sample_notes(leaderboard):
            w(line + "\n")
        for line in regime_table(leaderboard):
            w(line + "\n")
        if any("var_95" in r for r in leaderboard):
            w("\nTail risk per bar (historical VaR and CVaR, a return) and implementation shortfall (bps of the "
              "arrival notional, a cost):\n")
            w("\n".join(render_table([{**r, "beats_benchmark": False} for r in leaderboard], _RISK_COLUMNS)) + "\n")
        for line in llm_table(leaderboard):
            w(line + "\n")
        bench = next((r.get("benchmark") for r in leaderboard if r.get("benchmark")), None)
        if bench:
            w(f"\n* Sharpe beats the benchmark '{bench}' (paired block bootstrap, one-sided p < "
              f"{run_info['config']['significance']['alpha']}).\n")
        w(f"{run_info['n_bars']:,} bars ({run_info['n_symbols']} symbols × {run_info['n_timestamps']:,} "
          f"{run_info['frequency']} timestamps) replayed in {run_info['replay_seconds']:.2f}s "
          f"({run_info['bars_per_second'] or 0:,.0f} bars/s); wall {run_info['wall_seconds']:.1f}s.\n")
        if run_info.get("rejected_bars"):
            w(f"{run_info['rejected_bars']:,} bad bars were rejected at ingestion: "
              f"{run_info['rejected_bars_by_rule']} (see run.json).\n")
        if out_dir is not None:
            w(f"Results: {out_dir}\n")
        self.stream.flush()


_LLM_COLUMNS = [
    ("model", "model", "str"), ("requests", "llm_calls", "int"), ("failed", "llm_failures", "int"),
    ("tokens", "llm_tokens", "int"), ("latency s", "llm_latency_s", "ratio"), ("cost", "llm_cost", "ratio"),
    ("contaminated bars", "contaminated_bars", "int"),
]


def llm_table(leaderboard: list[dict[str, Any]]) -> list[str]:
    """The LLM models' requests, tokens, mean latency, cost and decision bars before their knowledge
    cutoff: lines to print (none without an llm model)."""
    rows = [r for r in leaderboard if "llm_calls" in r]
    if not rows:
        return []
    plain = [{k: v for k, v in r.items() if k != "sample_too_small"} for r in rows]
    return ["", "LLM models (a contaminated bar is a decision before the model's knowledge cutoff):",
            *render_table(plain, _LLM_COLUMNS)]


def regime_table(leaderboard: list[dict[str, Any]]) -> list[str]:
    """Each model's Sharpe per market regime, and the bars of each regime: lines to print (none when
    the rows carry no regimes)."""
    rows = [r for r in leaderboard if r.get("regimes")]
    if not rows:
        return []
    names = list(rows[0]["regimes"])
    width = max(len("model"), *(len(r["model"]) for r in rows))
    out = ["", "Sharpe by market regime (trend x volatility of the equal-weight index, classified causally):",
           f"{'model':<{width}}  " + "  ".join(f"{n:>14}" for n in names)]
    for r in rows:
        cells = [r["regimes"][n]["sharpe"] for n in names]
        out.append(f"{r['model']:<{width}}  " + "  ".join(f"{'—' if c is None else f'{c:.2f}':>14}" for c in cells))
    bars = [rows[0]["regimes"][n]["n_bars"] for n in names]
    out.append(f"{'bars':<{width}}  " + "  ".join(f"{b:>14,}" for b in bars))
    return out
