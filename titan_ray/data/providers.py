"""Which provider serves ``data.provider``: a registry by name, each provider loaded on first use.

``PROVIDERS`` maps every ``data.provider`` value to the ``"module:function"`` that builds its
provider from the data config, the run's seed and the environment (Alpaca's APCA_* variables);
``make_provider`` looks the name up and builds it. The registry names its providers instead of
importing them (``titan_ray.lazy``): the providers import this package's types
(``titan_ray.data.market``), never this registry, and the Alpaca provider is loaded only for
``provider: alpaca``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from titan_ray.config import DataConfig
from titan_ray.data.market import DataError, DataProvider
from titan_ray.lazy import LazyMapping


class ProviderFactory(Protocol):
    """A provider built from the data config, the seed, and the environment (None: this process's)."""

    def __call__(self, config: DataConfig, seed: int, environ: Mapping[str, str] | None) -> DataProvider: ...


PROVIDERS: LazyMapping[ProviderFactory] = LazyMapping({
    "synthetic": "titan_ray.data.synthetic:synthetic_provider",
    "csv": "titan_ray.data.files:file_provider",
    "parquet": "titan_ray.data.files:file_provider",
    "alpaca": "titan_ray.data.alpaca:alpaca_provider",
})


def make_provider(config: DataConfig, seed: int, *, environ: Mapping[str, str] | None = None) -> DataProvider:
    """The provider named by ``config.provider``; ``environ`` holds Alpaca's APCA_* variables (default: ours)."""
    if config.provider not in PROVIDERS:
        raise DataError(f"data.provider {config.provider!r} is not available; use synthetic, csv, parquet or alpaca")
    return PROVIDERS[config.provider](config, seed, environ)
