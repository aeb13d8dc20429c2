"""The subcommands of ``titan-ray``, one module each.

A command module defines ``NAME``, ``SUMMARY`` (one line for the command list), ``DESCRIPTION``
(shown by ``--help``, raw text), ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code).
Modules import their heavy dependencies inside ``run``, so that ``titan-ray --help`` stays fast.
"""

COMMANDS: tuple[str, ...] = (
    "arena",
    "data",
    "report",
    "serve",
    "tune",
    "train_ppo",
    "why",
)
