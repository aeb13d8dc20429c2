"""`titan-ray report`: a finished run as one HTML file that opens without a server."""

from __future__ import annotations

import argparse
import sys

from titan_ray.dashboard.report import write_report


def run(args: argparse.Namespace) -> int:
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
