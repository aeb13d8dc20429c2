"""Code loaded by name, on first use: the one way ``titan_ray`` defers an import.

Heavy parts (torch models, the Alpaca client, a CLI subcommand and all it pulls in) are named by
``"module:attribute"`` strings in a registry and imported through ``importlib`` when first asked
for, so that validating a config, ``--help`` or reading a run never loads them. Everything else is
imported at the top of its module, where an import cycle cannot hide.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def load(path: str) -> Any:
    """The attribute named by ``"package.module:attribute"``."""
    module, sep, attr = path.partition(":")
    if not sep:
        raise ValueError(f"lazy path {path!r} must look like 'package.module:attribute'")
    return getattr(importlib.import_module(module), attr)


class LazyMapping(Mapping[str, T], Generic[T]):
    """A read-only mapping name → object whose values are imported when first asked for."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)
        self._loaded: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        if name not in self._loaded:
            self._loaded[name] = load(self._paths[name])
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)
