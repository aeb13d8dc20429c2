"""The ``titan-ray`` command line: the parser built from ``titan_ray.commands.catalog``.

Every subcommand's options are known up front (``--help`` shows them all without importing a
command's code); the chosen command's ``run`` is loaded by name (``titan_ray.lazy``) and called.
A ``ConfigError`` or ``DataError`` is the user's to fix: its message goes to stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from titan_ray.commands.catalog import COMMANDS
from titan_ray.config import ConfigError
from titan_ray.data.market import DataError
from titan_ray.lazy import load


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="titan-ray", description="TitanRay: an AI trading arena on Ray.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        cmd = sub.add_parser(command.name, help=command.summary, description=command.description,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(cmd)
        cmd.set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return load(args._run)(args)
    except (ConfigError, DataError) as err:
        print(f"titan-ray: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("titan-ray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
