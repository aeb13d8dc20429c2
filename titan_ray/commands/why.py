"""`titan-ray why`: print the explanation of one decision of a finished run.

Every fill's ``decision_id`` has an explanation: a model's decision (``MODEL:SYMBOL:BAR``) or a
risk rule's flattening (``risk:RULE:MODEL:SYMBOL:BAR``, method ``risk``: the rule, its threshold
and the value that crossed it, e.g. ``risk:circuit_breaker:sma:AAA:812``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from typing import Any

import pandas as pd

from titan_ray.arena.views import decision_features
from titan_ray.domain.decisions import EXIT_RULES, DecisionId, ForcedId

BAR_WIDTH = 24


def run(args: argparse.Namespace) -> int:
    path = args.run / "decisions.parquet"
    if not path.is_file():
        print(f"titan-ray why: {path} does not exist; give --run the --out folder of a finished "
              "`titan-ray arena` run", file=sys.stderr)
        return 2
    df = pd.read_parquet(path)
    rows = df[df["decision_id"] == args.decision_id]
    if rows.empty:
        ids = df["decision_id"].astype(str).tolist()
        near = difflib.get_close_matches(args.decision_id, ids, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        example = f" (e.g. {ids[0]})" if ids else " (this run has no decisions)"
        print(f"titan-ray why: no decision {args.decision_id!r} in {path}{hint} Ids look like "
              f"MODEL:SYMBOL:BAR{example}, or risk:RULE:MODEL:SYMBOL:BAR for a risk rule's flattening.",
              file=sys.stderr)
        return 2
    record = _record(rows.iloc[0])
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print(render(record, top=args.top))
    return 0


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _text(x: Any) -> str | None:
    """A parquet cell as text; None for a missing one (None or NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return str(x)


def _record(r: Any) -> dict[str, Any]:
    keys = ("decision_id", "model", "symbol", "method", "sentence", "order_status", "reject_reason")
    rec: dict[str, Any] = {k: _text(r.get(k)) for k in keys}
    rec["timestamp"] = str(r["timestamp"])
    for k in ("bar", "old_weight", "new_weight", "price", "base_value", "gap", "ordered_quantity",
              "filled_quantity", "fill_price"):
        rec[k] = _num(r.get(k))
    rec["features"] = [{"name": f["name"], "value": _num(f["value"]), "attribution": _num(f["attribution"])}
                       for f in decision_features(r)]
    return rec


def _priced(rec: dict[str, Any]) -> str:
    """What the decision's price is: the close it was decided at, or a protective exit's price."""
    did = DecisionId.parse(str(rec["decision_id"]))
    return "exiting at" if isinstance(did, ForcedId) and did.rule in EXIT_RULES else "at close"


def render(rec: dict[str, Any], *, top: int = 10) -> str:
    """The explanation as text: header, sentence, outcome, then the inputs as a bar chart."""
    lines = [
        f"{rec['decision_id']} · {rec['model']} · {rec['symbol']} · {rec['timestamp']} · method {rec['method']}",
        "",
        rec["sentence"] or "",
        "",
        f"weight {rec['old_weight']:.4g} → {rec['new_weight']:.4g} {_priced(rec)} {rec['price']:.4f}; " + _outcome(rec),
    ]
    feats = rec["features"]
    attrs = [f["attribution"] for f in feats if math.isfinite(f["attribution"])]
    if math.isfinite(rec["base_value"]):
        total = rec["base_value"] + sum(attrs)
        check = f"; |sum + base - output| = {rec['gap']:.2e}" if math.isfinite(rec["gap"]) else ""
        lines.append(f"base value {rec['base_value']:+.6g} + attributions {sum(attrs):+.6g} = {total:+.6g}{check}")
    lines.append("")
    ranked = sorted(feats, key=lambda f: -abs(f["attribution"]) if math.isfinite(f["attribution"]) else 0.0)
    shown = ranked[: max(top, 0)]
    scale = max((abs(f["attribution"]) for f in shown if math.isfinite(f["attribution"])), default=0.0)
    width = max([len("input"), *(len(f["name"]) for f in shown)])
    lines.append(f"{'input':<{width}}  {'value':>12}  {'attribution':>12}")
    for f in shown:
        a = f["attribution"]
        bar = ""
        if math.isfinite(a) and scale > 0:
            n = round(abs(a) / scale * BAR_WIDTH)
            bar = ("+" if a > 0 else "-") + ("█" * n if a > 0 else "▒" * n)
        lines.append(f"{f['name']:<{width}}  {f['value']:>12.5g}  {a:>+12.4g}  {bar}")
    if len(ranked) > len(shown):
        lines.append(f"... {len(ranked) - len(shown)} more inputs (--top {len(ranked)})")
    return "\n".join(lines)


def _outcome(rec: dict[str, Any]) -> str:
    status = rec["order_status"] or "NO_ORDER"
    if status == "NO_ORDER":
        return "no order (nothing to trade at this weight)"
    text = f"order {status}"
    if rec["filled_quantity"] and math.isfinite(rec["filled_quantity"]) and rec["filled_quantity"] > 0:
        text += f", filled {rec['filled_quantity']:g}"
        if math.isfinite(rec["fill_price"]):
            text += f" at {rec['fill_price']:.4f}"
    if rec["reject_reason"]:
        text += f" (rejected: {rec['reject_reason']})"
    return text
