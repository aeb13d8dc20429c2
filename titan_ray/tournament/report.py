"""``DIR/report.html``: a tournament's verdict as one self-contained page, for reading, mailing and archiving.

Plain HTML and CSS, the plots drawn by matplotlib into PNGs inlined as data URIs: no script, no
network, nothing to load but the file. What it shows:

- the verdict table (``tournament.json``'s models, best median Sharpe first): the word, the Sharpe
  distribution, win rate against the benchmark, mean rank, PSR, DSR and ``pass_all``;
- Sharpe distributions per model (a box per model over the arenas, each arena a dot);
- a rank heat-map, models by arenas (1 = the arena's best);
- equity fans: per model, the median and inter-quartile band across arenas of equity over the
  traded bars, each arena's curve starting at 1;
- the regime table, when the arenas' summaries carry per-regime metrics, and the classifier's
  accuracy on the synthetic markets (their true regimes);
- the arenas: market, seed, window, and each one's folder.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#0f1419;color:#e6e6e6}
main{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #333;padding-bottom:4px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;display:block;overflow-x:auto}
th,td{padding:4px 8px;border-bottom:1px solid #2a2f36;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{color:#9aa4ad;font-weight:600}
.robust{color:#4cd07d;font-weight:600}.noise{color:#ff6b6b}.mixed{color:#f0c24b}.benchmark{color:#9aa4ad}
img{max-width:100%;height:auto;background:#fff;border-radius:4px}.note{color:#9aa4ad}
a{color:#7cb7ff}
"""


def write_report(out_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``out_dir/report.html`` from the verdict ``result`` and the arenas' folders; its path."""
    out_dir = Path(out_dir)
    names = result["ranking"]
    parts = [
        f"<h1>TitanRay tournament · {result['n_arenas']} arenas</h1>",
        (f"<p class='note'>Markets: {html.escape(', '.join(result['markets']))} · benchmark "
        f"{html.escape(str(result['benchmark']))} · a Deflated Sharpe Ratio of at least "
        f"{result['significance_level']:.2f} is significant (Bailey and López de Prado 2014: corrected "
        f"for the number of models and variants tried, for skewness and kurtosis).</p>"),
        "<h2>Verdict</h2>", _verdict_table(result),
    ]
    if result["n_arenas"]:
        parts += ["<h2>Sharpe ratio across arenas</h2>", _img(_sharpe_boxes(result), "sharpe-distributions"),
                  "<h2>Rank in each arena</h2>", _img(_rank_heatmap(result), "rank-heatmap"),
                  ("<h2>Equity fans</h2><p class='note'>Median and inter-quartile band across arenas of each "
                  "model's equity over its traded bars, every curve starting at 1.</p>"),
                  _img(_equity_fans(out_dir, result), "equity-fans")]
        regimes = _regime_table(result)
        if regimes:
            parts += [("<h2>Regimes</h2><p class='note'>Median across arenas of each model's Sharpe ratio over the "
                      "bars of each market regime: trend (the sign of the last 100 bars' return) by volatility "
                      "(the last 50 bars' against the calm level of the bars before), each label from the bars up "
                      "to it (titan_ray/metrics/regimes.py).</p>"), regimes, _accuracy_table(result)]
    parts += ["<h2>Arenas</h2>", _arena_table(result)]
    if result.get("failed_arenas"):
        parts.append(f"<p class='noise'>Failed arenas: {html.escape(', '.join(result['failed_arenas']))}</p>")
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>TitanRay tournament</title><style>{_CSS}</style></head><body><main>"
            + "".join(parts) + f"<script type='application/json' id='verdict'>{_json(names, result)}</script>"
            "</main></body></html>")
    path = out_dir / "report.html"
    path.write_text(page)
    return path


def _json(names: list[str], result: dict[str, Any]) -> str:
    """The verdict's table data for machines (and the browser test), as data: not a script that runs."""
    rows = {n: {"verdict": result["models"][n]["verdict"],
                "sharpe_median": result["models"][n]["metrics"]["sharpe"]["median"]} for n in names}
    return html.escape(json.dumps({"ranking": names, "models": rows}), quote=False)


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _verdict_table(result: dict[str, Any]) -> str:
    head = ("<tr><th>model</th><th>verdict</th><th>Sharpe median</th><th>IQR</th><th>worst</th>"
            "<th>win rate vs benchmark</th><th>mean rank</th><th>PSR</th><th>DSR</th><th>DSR significant</th>"
            "<th>pass all</th></tr>")
    rows = []
    for name in result["ranking"]:
        m = result["models"][name]
        s = m["metrics"]["sharpe"]
        dsr = (m["dsr"] or {}).get("median")
        rows.append(
            f"<tr data-model='{html.escape(name)}'><td>{html.escape(name)}</td>"
            f"<td class='{m['verdict']}'>{m['verdict']}</td><td>{_f(s['median'])}</td>"
            f"<td>{_f(s['q25'])} … {_f(s['q75'])}</td><td>{_f(s['worst'])}</td>"
            f"<td>{_pct(m['win_rate_vs_benchmark'])}</td><td>{_f(m['mean_rank'], 1)}</td>"
            f"<td>{_f(m['psr']['median'])}</td><td>{_f(dsr)}</td><td>{_pct(m['dsr_significant_share'])}</td>"
            f"<td>{'—' if m['verdict'] == 'benchmark' else ('yes' if m['pass_all'] else 'no')}</td></tr>")
    return f"<table id='verdict-table'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _arena_table(result: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><a href='arenas/{html.escape(a['id'])}/'>{html.escape(a['id'])}</a></td>"
        f"<td>{html.escape(a['market'])}</td><td>{a['seed']}</td><td>{a['window']}</td><td>{a['n_trials']}</td></tr>"
        for a in result["arenas"])
    return ("<table id='arenas'><thead><tr><th>arena</th><th>market</th><th>seed</th><th>window</th>"
            f"<th>models tried</th></tr></thead><tbody>{rows}</tbody></table>")


def _regime_table(result: dict[str, Any]) -> str:
    regimes = sorted({r for m in result["models"].values() for r in (m.get("regimes") or {})})
    if not regimes:
        return ""
    head = "<tr><th>model</th>" + "".join(f"<th>{html.escape(r)} Sharpe (median)</th>" for r in regimes) + "</tr>"
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td>"
        + "".join(f"<td>{_f(((result['models'][n].get('regimes') or {}).get(r) or {}).get('median'))}</td>"
                  for r in regimes) + "</tr>" for n in result["ranking"])
    return f"<table id='regimes'><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _accuracy_table(result: dict[str, Any]) -> str:
    acc = result.get("regime_accuracy") or {}
    if not acc:
        return ""
    rows = "".join(f"<tr><td>{html.escape(m)}</td><td>{_pct(a.get('trend'))}</td><td>{_pct(a.get('volatility'))}</td>"
                   f"<td>{_pct(a.get('overall'))}</td><td>{int(a.get('n') or 0)}</td></tr>" for m, a in acc.items())
    return ("<p class='note'>The classifier against the synthetic markets' true regimes (chance: 50% per axis, "
            "25% overall):</p><table id='regime-accuracy'><thead><tr><th>market</th><th>trend</th>"
            f"<th>volatility</th><th>overall</th><th>bars</th></tr></thead><tbody>{rows}</tbody></table>")


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _img(png: bytes, name: str) -> str:
    return f"<img id='{name}' alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _sharpe_boxes(result: dict[str, Any]) -> bytes:
    names = result["ranking"]
    data = [[a["sharpe"].get(n) for a in result["arenas"]] for n in names]
    data = [[x for x in d if x is not None] for d in data]
    fig, ax = _figure(max(6.0, 0.9 * len(names) + 2), 4.0)
    ax.boxplot([d or [np.nan] for d in data], vert=True, showfliers=False)
    rng = np.random.default_rng(0)  # the dots' jitter: the same picture every time
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=12, alpha=0.7)
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set_ylabel("Sharpe ratio (annualised)")
    return _png(fig)


def _rank_heatmap(result: dict[str, Any]) -> bytes:
    names, arenas = result["ranking"], result["arenas"]
    grid = np.array([[a["ranks"].get(n, np.nan) for a in arenas] for n in names], dtype=float)
    fig, ax = _figure(max(6.0, 0.35 * len(arenas) + 3), max(2.5, 0.35 * len(names) + 1.2))
    im = ax.imshow(grid, aspect="auto", cmap="RdYlGn_r", vmin=1, vmax=max(2, len(names)))
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(len(arenas)), [a["id"] for a in arenas], rotation=60, ha="right", fontsize=7)
    fig.colorbar(im, ax=ax, label="rank (1 = best)")
    return _png(fig)


def _equity_fans(out_dir: Path, result: dict[str, Any]) -> bytes:
    curves: dict[str, list[np.ndarray]] = {n: [] for n in result["ranking"]}
    for a in result["arenas"]:
        path = out_dir / "arenas" / a["id"] / "equity.parquet"
        if not path.exists():
            continue
        frame = pd.read_parquet(path, columns=["model", "equity"])
        for name, rows in frame.groupby("model", sort=False):
            if name in curves and len(rows):
                eq = rows["equity"].to_numpy(dtype=float)
                curves[name].append(eq / eq[0])
    fig, ax = _figure(9.0, 4.5)
    for name, items in curves.items():
        if not items:
            continue
        n = min(len(c) for c in items)
        stack = np.vstack([c[:n] for c in items])
        q25, med, q75 = np.quantile(stack, [0.25, 0.5, 0.75], axis=0)
        x = np.arange(n)
        (line,) = ax.plot(x, med, lw=1.2, label=name)
        ax.fill_between(x, q25, q75, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("traded bar")
    ax.set_ylabel("equity (start = 1)")
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)
