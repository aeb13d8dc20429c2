"""`titan-ray report`: a finished run as one HTML file that opens without a server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "report"
SUMMARY = "write a static HTML report of a finished run (opens without a server)"
DESCRIPTION = """\
Write DIR/report.html: the dashboard of a finished arena run as one self-contained file, with
the leaderboard (every metric, significance against the benchmark), every model's equity curve
and drawdown on one chart, each model's positions, orders, fills, rejections and round trips,
and the "Why?" explanation behind every listed trade. The data, the chart library and the
scripts are inlined: open it from disk, mail it, archive it; it needs no server and no network.

DIR is the results folder of `titan-ray arena --out DIR`.

examples:
  titan-ray report runs/arena-20250101-120000
  titan-ray report runs/today --out today.html --trades 2000
"""


def add_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument("dir", type=Path, metavar="DIR", help="results folder of a finished `titan-ray arena` run")
    report.add_argument("--out", type=Path, metavar="FILE", help="where to write the report (default: DIR/report.html)")
    report.add_argument("--trades", type=int, default=500, metavar="N",
                        help="latest fills, orders and round trips per model to include, each with its "
                             "explanation (default 500)")
    report.add_argument("--points", type=int, default=2000, metavar="N",
                        help="equity points per model on the chart, downsampled evenly (default 2000)")
    report.add_argument("--quiet", action="store_true", help="print only the report's path")


def run(args: argparse.Namespace) -> int:
    from titan_ray.dashboard.report import write_report

    if args.trades < 1:
        print(f"titan-ray report: --trades must be at least 1, got {args.trades}", file=sys.stderr)
        return 2
    if args.points < 2:
        print(f"titan-ray report: --points must be at least 2, got {args.points}", file=sys.stderr)
        return 2
    if not args.dir.is_dir():
        print(f"titan-ray report: {args.dir} is not a folder; give the --out folder of `titan-ray arena`",
              file=sys.stderr)
        return 2
    progress = None if args.quiet else (lambda msg: print(f"report: {msg}", flush=True))
    try:
        path = write_report(args.dir, args.out, trades_limit=args.trades, points=args.points, progress=progress)
    except FileNotFoundError as err:
        print(f"titan-ray report: {err}", file=sys.stderr)
        return 2
    if args.quiet:
        print(path)
    else:
        print(f"report: wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0
