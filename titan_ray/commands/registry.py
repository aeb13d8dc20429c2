"""`titan-ray registry`: list the registered models, show and change their aliases, read the history.

The sub-actions (``list``, ``history``, ``alias``, ``promote``, ``rollback``, ``reject``; the parser is
in ``titan_ray.commands.catalog``) are thin: each calls one method of ``ModelRegistry``, which checks
the change, holds the model's lock and records the event, and prints what it got back. A change
prints one line saying what changed (``lgbm: champion 3 -> 4 (3 archived)``); a ``RegistryError`` or
``ValueError`` (no such version, no challenger, an empty --why, ...) is the user's to fix: its
message goes to stderr and the exit code is 2, as for a ``ConfigError``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from titan_ray.registry import ModelRegistry, ModelVersion, RegistryError

# shown in `list` when a version has them, in this order (at most METRICS_SHOWN); else its first metrics
KEY_METRICS = ("val_sharpe", "val_return", "val_loss", "oof_ic", "oof_ic_meta", "oof_corr_meta", "oof_hit_rate",
               "warmup_greedy_return", "train_episode_return_mean")
METRICS_SHOWN = 3
# shown first in the evidence column of `history` (at most EVIDENCE_SHOWN entries)
KEY_EVIDENCE = ("p_value", "n_bars", "sharpe", "sharpe_diff", "dsr", "psr")
EVIDENCE_SHOWN = 3


def run(args: argparse.Namespace) -> int:
    registry = ModelRegistry(args.registry)
    try:
        return _ACTIONS[args.action](registry, args)
    except (RegistryError, ValueError) as err:
        print(f"titan-ray registry: {err}", file=sys.stderr)
        return 2


def _list(registry: ModelRegistry, args: argparse.Namespace) -> int:
    names = [args.name] if args.name else registry.names()
    if args.name:
        _versions_or_fail(registry, args.name)
    rows = []
    for name in names:
        for v in registry.versions(name):
            rows.append([v.name, str(v.version), v.kind, str(v.meta.get("created", "")),
                         registry.stage(name, v.version) or "", _metrics(v)])
    if not rows:
        print(f"the registry {registry.root} holds no models; `titan-ray tune` and `titan-ray train-ppo` "
              "register them")
        return 0
    print(_table(["model", "version", "kind", "created", "stage", "validation metrics"], rows))
    return 0


def _history(registry: ModelRegistry, args: argparse.Namespace) -> int:
    _versions_or_fail(registry, args.name)
    events = registry.history(args.name)
    if args.json:
        for event in events:
            print(json.dumps(event))
        return 0
    if not events:
        print(f"{args.name} has no alias history yet; set one: titan-ray registry alias {args.name} champion "
              "VERSION --why TEXT")
        return 0
    rows = [[str(e.get("at", "")), str(e.get("who", "")), str(e.get("action", "")), _cell(e.get("alias")),
             _cell(e.get("version")), _cell(e.get("previous")), str(e.get("why", "")), _evidence(e.get("evidence"))]
            for e in events]
    print(_table(["at", "who", "action", "alias", "version", "previous", "why", "evidence"], rows))
    return 0


def _alias(registry: ModelRegistry, args: argparse.Namespace) -> int:
    event = registry.set_alias(args.name, args.alias, args.version, who=args.who, why=args.why,
                               evidence=_load_evidence(args.evidence))
    print(describe(args.name, event))
    return 0


def _promote(registry: ModelRegistry, args: argparse.Namespace) -> int:
    event = registry.promote(args.name, who=args.who, why=args.why, evidence=_load_evidence(args.evidence),
                             version=args.version)
    print(describe(args.name, event))
    return 0


def _rollback(registry: ModelRegistry, args: argparse.Namespace) -> int:
    event = registry.rollback(args.name, who=args.who, why=args.why, evidence=_load_evidence(args.evidence),
                              to=args.to)
    print(describe(args.name, event))
    return 0


def _reject(registry: ModelRegistry, args: argparse.Namespace) -> int:
    event = registry.reject(args.name, who=args.who, why=args.why, evidence=_load_evidence(args.evidence))
    print(describe(args.name, event))
    return 0


_ACTIONS: dict[str, Callable[[ModelRegistry, argparse.Namespace], int]] = {
    "list": _list, "history": _history, "alias": _alias, "promote": _promote, "rollback": _rollback,
    "reject": _reject,
}


def describe(name: str, event: dict[str, Any]) -> str:
    """One line saying what an event changed, e.g. 'lgbm: champion 3 -> 4 (3 archived)'."""
    alias, action = event.get("alias"), event.get("action")
    before, after = _cell(event.get("previous"), "none"), _cell(event.get("version"), "none")
    archived = f" ({event['archived']} archived)" if event.get("archived") is not None else ""
    if action == "reject":
        return f"{name}: challenger {before} rejected{archived}"
    if action == "rollback":
        return f"{name}: champion {before} -> {after}, rolled back{archived}"
    return f"{name}: {alias} {before} -> {after}{archived}"


def _versions_or_fail(registry: ModelRegistry, name: str) -> list[ModelVersion]:
    registry.get(name)  # a RegistryError that lists the registered names
    return registry.versions(name)


def _load_evidence(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        evidence = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"--evidence {path}: cannot be read ({err.strerror}); give a JSON file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"--evidence {path}: not JSON ({err}); give a file holding one JSON object") from None
    if not isinstance(evidence, dict):  # the user's file, reported like every other input error
        raise ValueError(  # noqa: TRY004
            f"--evidence {path}: holds a {type(evidence).__name__}; give one JSON object, e.g. "
            '{"p_value": 0.01, "n_bars": 5000}')
    return evidence


def _metrics(v: ModelVersion) -> str:
    metrics = v.meta.get("metrics") or {}
    keys = [k for k in KEY_METRICS if k in metrics] or sorted(metrics)
    return " ".join(f"{k}={_number(metrics[k])}" for k in keys[:METRICS_SHOWN])


def _evidence(evidence: Any) -> str:
    if not isinstance(evidence, dict) or not evidence:
        return ""
    keys = [k for k in KEY_EVIDENCE if k in evidence] + [k for k in evidence if k not in KEY_EVIDENCE]
    shown = [f"{k}={_number(evidence[k])}" for k in keys if not isinstance(evidence[k], dict | list)]
    more = len(evidence) - min(len(shown), EVIDENCE_SHOWN)
    return " ".join(shown[:EVIDENCE_SHOWN]) + (f" (+{more} more)" if more else "")


def _number(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def _cell(x: Any, empty: str = "") -> str:
    return empty if x is None else str(x)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
