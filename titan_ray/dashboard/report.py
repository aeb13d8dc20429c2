"""A finished run as one self-contained HTML file: the dashboard with its data and scripts inlined.

``build_report(run_dir)`` reads the run folder with ``titan_ray.arena.views`` (the same payloads the
live server answers, so the report and ``/`` cannot disagree), then writes the dashboard's own
``index.html`` with the stylesheet, the vendored chart library, the app's scripts and the payloads
inlined. The page finds the payloads in ``<script id="titan-ray-data" type="application/json">``
and reads them instead of the HTTP API; it opens from a file, with no server and no network.

The report carries, per model, the latest ``trades_limit`` fills, orders and round trips, and the
explanation of every decision behind them (the "Why?" panel), and the equity curves downsampled to
``points`` per model. There are no A/B experiments in a run folder, so a report has none.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from titan_ray.arena import views
from titan_ray.dashboard import INDEX, STATIC_DIR

DATA_ID = "titan-ray-data"
_SCRIPTS = re.compile(r"<!--titan-ray:scripts-->(.*?)<!--/titan-ray:scripts-->", re.DOTALL)
_SRC = re.compile(r'<script src="static/([^"]+)"></script>')
_STYLESHEET = '<link rel="stylesheet" href="static/app.css">'


def collect(run_dir: Path, *, trades_limit: int = 500, points: int = 2000,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every payload the page asks for, from a finished run folder, keyed as the page reads them."""
    say = progress or (lambda _msg: None)
    run = views.load_run(run_dir)
    say(f"read {run_dir}: {len(run.models)} models, {run.bars_done:,} bars")
    payload: dict[str, Any] = {
        "leaderboard": views.leaderboard(run),
        "equity": views.equity(run, points=points),
        "portfolios": {},
        "trades": {},
        "why": {},
        "experiments": {"experiments": []},
        "experiment_details": {},
        "meta": _meta(run_dir),
    }
    wanted: list[str] = []
    for model in run.models:
        try:
            payload["portfolios"][model] = views.portfolio(run, model)
        except views.NotFound as err:  # a folder written before portfolios.json: the page says so
            say(f"no portfolio for {model}: {err}")
        trades = views.trades(run, model, limit=trades_limit)
        payload["trades"][model] = trades
        wanted += [r["decision_id"] for r in trades["fills"] + trades["orders"] if r.get("decision_id")]
    ids = list(dict.fromkeys(wanted))
    if run.decisions is not None:
        # views.why scans the decisions table per call: hand it only the rows the report needs
        run = dataclasses.replace(run, decisions=run.decisions[run.decisions["decision_id"].isin(ids)])
    for decision_id in ids:
        try:
            payload["why"][decision_id] = views.why(run, decision_id)
        except views.NotFound:
            pass  # a trade whose decision left no explanation: its "Why?" says so
    say(f"explanations for {len(payload['why']):,} of {len(ids):,} decisions behind the listed trades")
    return payload


def render(payload: dict[str, Any]) -> str:
    """The dashboard page with ``payload`` and every asset inlined."""
    page = INDEX.read_text(encoding="utf-8")
    css = (STATIC_DIR / "app.css").read_text(encoding="utf-8")
    if _STYLESHEET not in page:
        raise RuntimeError(f"{INDEX} no longer links {_STYLESHEET!r}: update titan_ray/dashboard/report.py with it")
    block = _SCRIPTS.search(page)
    if block is None:
        raise RuntimeError(f"{INDEX} lost its <!--titan-ray:scripts--> markers, which the report inlines")
    scripts = [_inline_script((STATIC_DIR / src).read_text(encoding="utf-8"), src) for src in _SRC.findall(block[1])]
    # "<" escaped: no "</script>" or "<!--" inside the data can end or confuse its script element
    data = json.dumps(payload, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    data_tag = f'<script id="{DATA_ID}" type="application/json">{data}</script>'
    page = page[:block.start()] + "\n".join([data_tag, *scripts]) + page[block.end():]
    page = page.replace("<title>TitanRay arena</title>", f"<title>TitanRay report · {_title(payload)}</title>", 1)
    return page.replace(_STYLESHEET, f"<style>\n{css}</style>", 1)


def write_report(run_dir: str | Path, out: str | Path | None = None, *, trades_limit: int = 500,
                 points: int = 2000, progress: Callable[[str], None] | None = None) -> Path:
    """Write ``out`` (default ``run_dir/report.html``) and return its path."""
    run_dir = Path(run_dir)
    target = Path(out) if out is not None else run_dir / "report.html"
    page = render(collect(run_dir, trades_limit=trades_limit, points=points, progress=progress))
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)  # a half-written report never replaces a good one
    return target


def _inline_script(code: str, name: str) -> str:
    if re.search(r"</script|<!--", code, re.IGNORECASE):
        raise RuntimeError(f"static/{name} contains '</script' or '<!--' and cannot be inlined as it is")
    return f"<script>/* static/{name} */\n{code}\n</script>"


def _meta(run_dir: Path) -> dict[str, Any]:
    info_path = run_dir / "run.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    keep = ("run_id", "seed", "code_version", "data_source", "frequency", "n_symbols", "n_timestamps",
            "wall_seconds")
    return {"run_dir": run_dir.resolve().name, "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **{k: info[k] for k in keep if k in info}}


def _title(payload: dict[str, Any]) -> str:
    meta = payload.get("meta", {})
    return html.escape(str(meta.get("run_id") or meta.get("run_dir") or "run"))
