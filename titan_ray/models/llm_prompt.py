"""What an LLM is shown and what it must answer: the prompt, the JSON schema and the check of an answer.

The prompt holds, per symbol, the causal features of the decision bar and its last closes: the
numbers every other model sees, nothing after the decision bar. Two guards against memorisation
(``docs/llm.md``): the tickers may be replaced by SYM1..SYMn (``anonymise_symbols``) and the dates
shifted back (``shift_days``). The answer is structured output (``response_format: json_schema``):
a target weight per shown symbol, a confidence and a short rationale; ``check_answer`` validates
it again here, since not every server enforces the schema.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

NS_PER_SECOND = 1_000_000_000
RATIONALE_MAX = 400

SYSTEM = (
    "You are a portfolio manager in a trading competition. For each symbol you are given causal features "
    "computed from bars up to and including the decision bar, and its most recent closes (oldest first). "
    "Choose a target portfolio weight per symbol (the fraction of equity to hold; {bounds}; the absolute "
    "weights should sum to at most 1), a confidence between 0 and 1, and a short rationale (one or two "
    "sentences). Answer with JSON only, matching the given schema."
)


@dataclass(frozen=True)
class Shown:
    """What one request shows: the names used in the prompt, and per symbol its numbers."""

    names: tuple[str, ...]  # as in the prompt (tickers, or SYM1..)
    features: tuple[str, ...]
    values: tuple[tuple[float | None, ...], ...]  # (symbols, features), rounded as shown
    closes: tuple[tuple[float | None, ...], ...]  # (symbols, bars_shown)
    when: str  # the decision bar's time as shown (shifted)


def shown_number(x: float) -> float | None:
    """A number as the prompt shows it: 6 significant digits; None for a missing one."""
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def shown_time(ts_ns: int, shift_days: int) -> str:
    t = datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=UTC) - timedelta(days=shift_days)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def messages(shown: Shown, allow_short: bool) -> list[dict[str, str]]:
    bounds = "between -1 and 1, negative is short" if allow_short else "between 0 and 1, long only"
    payload = {
        "decision_time": shown.when,
        "features": list(shown.features),
        "symbols": [
            {"symbol": name, "features": dict(zip(shown.features, vals, strict=True)), "recent_closes": list(closes)}
            for name, vals, closes in zip(shown.names, shown.values, shown.closes, strict=True)
        ],
    }
    return [
        {"role": "system", "content": SYSTEM.format(bounds=bounds)},
        {"role": "user", "content": json.dumps(payload, separators=(",", ":"), allow_nan=False)},
    ]


def response_format(names: Sequence[str], allow_short: bool) -> dict[str, Any]:
    low = -1.0 if allow_short else 0.0
    weight = {"type": "number", "minimum": low, "maximum": 1.0}
    schema = {
        "type": "object",
        "properties": {
            "weights": {"type": "object", "properties": {n: weight for n in names}, "required": list(names),
                        "additionalProperties": False},
            "confidence": {"type": "number", "minimum": 0.0, "maximum": 1.0},
            "rationale": {"type": "string", "maxLength": RATIONALE_MAX},
        },
        "required": ["weights", "confidence", "rationale"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "target_weights", "strict": True, "schema": schema}}


@dataclass(frozen=True)
class Answer:
    weights: tuple[float, ...]  # in the order of the shown names
    confidence: float
    rationale: str


class InvalidAnswer(ValueError):
    """An answer that does not match the schema; the message says which field and why."""


def check_answer(content: str, names: Sequence[str], allow_short: bool) -> Answer:
    """The validated answer to a request that showed ``names``; ``InvalidAnswer`` naming the fault."""
    text = content.strip()
    if text.startswith("```"):  # some servers wrap JSON in a code fence even when asked for JSON
        text = text.strip("`").removeprefix("json").strip()
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise InvalidAnswer(f"not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise InvalidAnswer(f"expected an object, got {type(doc).__name__}")
    extra = set(doc) - {"weights", "confidence", "rationale"}
    if extra:
        raise InvalidAnswer(f"unexpected keys {sorted(extra)}")
    weights = doc.get("weights")
    if not isinstance(weights, dict):
        raise InvalidAnswer("weights: missing or not an object")
    missing, unknown = [n for n in names if n not in weights], sorted(set(weights) - set(names))
    if missing or unknown:
        raise InvalidAnswer(f"weights: missing {missing}, unknown {unknown}")
    low = -1.0 if allow_short else 0.0
    out = []
    for n in names:
        w = weights[n]
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or not low <= w <= 1.0:
            raise InvalidAnswer(f"weights.{n}: {w!r} is not a number in [{low:g}, 1]")
        out.append(float(w))
    conf = doc.get("confidence")
    if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0.0 <= conf <= 1.0:
        raise InvalidAnswer(f"confidence: {conf!r} is not a number in [0, 1]")
    rationale = doc.get("rationale")
    if not isinstance(rationale, str) or not rationale.strip():
        raise InvalidAnswer("rationale: missing or empty")
    return Answer(tuple(out), float(conf), " ".join(rationale.split())[:RATIONALE_MAX])
