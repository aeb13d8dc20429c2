"""The subcommands of ``titan-ray``: the catalog the parser is built from, and one module per command.

``catalog`` lists every command (its name, help and options) and names its ``run(args) -> int`` by
``"module:function"``. A command's module (``arena``, ``data``, ``report``, ``serve``, ``tune``,
``train_ppo``, ``why``) holds that ``run`` and imports what it needs at its top: ``titan_ray.cli``
loads it by name only when the command runs, so ``titan-ray --help`` stays fast.
"""
