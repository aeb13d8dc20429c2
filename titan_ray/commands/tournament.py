"""`titan-ray tournament`: many arenas (markets, seeds, walk-forward windows, model variants), one verdict."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from titan_ray.config import ConfigError, read_yaml
from titan_ray.tournament.runner import Event, run_tournament
from titan_ray.tournament.spec import Tournament, parse_tournament

SAVED = "tournament_config.json"


def run(args: argparse.Namespace) -> int:
    tournament, out_dir = _load(args)
    quiet = args.quiet
    if not quiet:
        c = tournament.config
        print(f"TitanRay tournament · {len(c.markets)} market entries · "
              f"{'windows ' + c.windows.mode if c.windows else 'whole markets'} · "
              f"{len(tournament.origin)} models · {out_dir}", flush=True)
    progress = None if quiet else Progress(sys.stdout)
    result = run_tournament(tournament, out_dir, address=args.address, on_event=progress)
    if quiet:
        print(out_dir)
    else:
        if result.skipped:
            print(f"{len(result.skipped)} arenas were already done (resumed) and were not run again.")
        print(table(result.verdict))
        print(f"\n{out_dir / 'tournament.json'} · {result.seconds:.1f}s")
    if result.failed:
        print(f"titan-ray: {len(result.failed)} arenas failed (see their error.txt); rerun with --resume "
              f"{out_dir} to run them again", file=sys.stderr)
        return 1
    return 0


def _load(args: argparse.Namespace) -> tuple[Tournament, Path]:
    if args.resume is not None:
        saved = args.resume / SAVED
        if not saved.exists():
            raise ConfigError(f"{args.resume} is not a tournament folder to resume: {SAVED} is missing")
        data = json.loads(saved.read_text())
        return parse_tournament(data["config"], source=str(saved), root=Path(data["root"])), args.resume
    if args.config is None:
        raise ConfigError("give a tournament YAML with --config (e.g. titan_ray/configs/tournament.yaml), "
                          "or --resume DIR")
    raw = read_yaml(args.config, "tournament file")
    root = args.config.resolve().parent
    tournament = parse_tournament(raw, source=str(args.config), root=root)
    out_dir = args.out or Path("runs") / time.strftime("tournament-%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SAVED).write_text(json.dumps({"config": raw, "root": str(root)}, indent=2, default=str) + "\n")
    return tournament, out_dir


class Progress:
    """One line per arena as it ends, with a bar of the arenas done, the time and what is left."""

    def __init__(self, stream: TextIO, width: int = 24) -> None:
        self.stream, self.width = stream, width

    def __call__(self, event: Event) -> None:
        if event.kind == "started":
            return
        filled = round(self.width * event.done / max(event.total, 1))
        bar = "█" * filled + "░" * (self.width - filled)
        left = ""
        if 0 < event.done < event.total:
            left = f" · ~{event.seconds / event.done * (event.total - event.done):.0f}s left"
        mark = "ok" if event.kind == "finished" else "FAILED"
        self.stream.write(f"▕{bar}▏ {event.done}/{event.total} · {event.seconds:.0f}s{left} · {mark} "
                          f"{event.arena}: {event.detail}\n")
        self.stream.flush()


def table(result: dict[str, Any]) -> str:
    """The verdict as a terminal table, best median Sharpe first."""
    head = (f"{'model':<26} {'verdict':<9} {'Sharpe med':>10} {'IQR':>13} {'worst':>7} {'win%':>5} "
            f"{'rank':>5} {'PSR':>5} {'DSR':>5} {'DSR sig':>7} {'all':>4}")
    title = (f"\nVerdict over {result['n_arenas']} arenas (benchmark {result['benchmark']}; DSR significant at "
             f"{result['significance_level']:.2f}):")
    lines = [title, head, "-" * len(head)]
    for name in result["ranking"]:
        m = result["models"][name]
        s = m["metrics"]["sharpe"]
        iqr = f"{_f(s['q25'])}..{_f(s['q75'])}" if s["median"] is not None else "-"
        lines.append(
            f"{name[:26]:<26} {m['verdict']:<9} {_f(s['median']):>10} {iqr:>13} {_f(s['worst']):>7} "
            f"{_pct(m['win_rate_vs_benchmark']):>5} {_f(m['mean_rank'], 1):>5} {_f(m['psr']['median']):>5} "
            f"{_f((m['dsr'] or {}).get('median')):>5} {_pct(m['dsr_significant_share']):>7} "
            f"{('yes' if m['pass_all'] else 'no') if m['verdict'] != 'benchmark' else '-':>4}")
    return "\n".join(lines)


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}"
