"""The ``titan-ray`` command line: one subcommand per module of ``titan_ray.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from titan_ray.commands import COMMANDS
from titan_ray.config import ConfigError
from titan_ray.data.providers import DataError


def _modules() -> dict[str, ModuleType]:
    return {name: importlib.import_module(f"titan_ray.commands.{name}") for name in COMMANDS}


def _parser(modules: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="titan-ray", description="TitanRay: an AI trading arena on Ray.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in modules.values():
        cmd = sub.add_parser(module.NAME.replace("_", "-"), help=module.SUMMARY, description=module.DESCRIPTION,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser(_modules()).parse_args(argv)
    try:
        return args._run(args)
    except (ConfigError, DataError) as err:
        print(f"titan-ray: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("titan-ray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
