"""The model registry: a folder of trained models, one sub-folder per version, each with metadata.

Layout::

    ROOT/NAME/v0001/metadata.json   kind, params, features, training window, validation metrics,
                   /...artefacts    data fingerprint, code version, created (UTC, ISO 8601)
    ROOT/NAME/v0002/...

``register`` writes a new version into a temporary folder under ``ROOT/NAME`` (the model's own
``save`` callback fills it, then ``metadata.json``), and renames it into place: a reader never
sees a half-written version, and two writers racing for the same number both succeed (the loser
takes the next number). Versions are never changed after that.

The arena loads a registered model with the ModelSpec key ``artifact: NAME`` (the latest version)
or ``NAME@VERSION``; Serve and Tune use the same class. An arena ``ppo`` with no ``artifact``
registers the policy it trains at start-up as ``NAME-startup`` and finds it there on the next run
on the same bars (``titan_ray.train.ppo.StartupTrainer``). The root is ``registry.path`` of the arena
config, else the environment variable ``TITAN_RAY_REGISTRY``, else ``registry`` in the working
directory. On a cluster put it on storage every node can read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from titan_ray.config import ArenaConfig, ConfigError
from titan_ray.domain.bars import BarBatch
from titan_ray.models.base import Persistent, TradingModel
from titan_ray.models.kinds import MODEL_KINDS
from titan_ray.provenance import code_version

ENV_VAR = "TITAN_RAY_REGISTRY"
DEFAULT_ROOT = "registry"
METADATA = "metadata.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")
REF_PATTERN = r"^[A-Za-z0-9_.\-]{1,80}(@[1-9][0-9]*)?$"


class RegistryError(LookupError):
    """A model or version that is not in the registry, or a folder that is not a registry entry."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    kind: str
    path: Path  # the version's artefact folder
    meta: dict[str, Any] = field(compare=False, hash=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def default_root(configured: str | Path | None = None) -> Path:
    """The registry folder: ``configured`` (registry.path), else $TITAN_RAY_REGISTRY, else ./registry."""
    return Path(configured or os.environ.get(ENV_VAR) or DEFAULT_ROOT)


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'NAME' -> (NAME, None); 'NAME@3' -> (NAME, 3)."""
    if not re.match(REF_PATTERN, ref):
        raise RegistryError(f"bad model reference {ref!r}: write NAME or NAME@VERSION (version 1, 2, ...)")
    name, _, version = ref.partition("@")
    return name, int(version) if version else None


def fingerprint(bars: BarBatch) -> str:
    """A short hash of the bars a model was trained on (symbols, timestamps, OHLCV)."""
    h = hashlib.sha256()
    h.update("\x1f".join(bars.symbols).encode())
    for arr in (bars.timestamps, bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


class ModelRegistry:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = default_root(root)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # --- writing ------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        kind: str,
        params: dict[str, Any],
        *,
        save: Callable[[Path], None],
        features: Sequence[str],
        training_window: dict[str, Any],
        metrics: dict[str, float],
        data_fingerprint: str,
        extra: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Store a new version of ``name``: ``save(folder)`` writes the artefacts, then the metadata."""
        if not NAME_PATTERN.match(name):
            raise ValueError(f"model name {name!r} must be 1-80 letters, digits, '_', '-' or '.'")

        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            save(tmp)
            meta = {
                "name": name, "kind": kind, "params": params, "features": list(features),
                "training_window": training_window, "metrics": metrics, "data_fingerprint": data_fingerprint,
                "code_version": code_version(),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **({"extra": extra} if extra else {}),
            }
            for _attempt in range(100):
                version = self._next_version(name)
                meta["version"] = version
                (tmp / METADATA).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
                try:
                    os.rename(tmp, folder / _dirname(version))
                except OSError:
                    if (folder / _dirname(version)).exists():
                        continue  # another writer took this number: take the next one
                    raise
                return self.get(name, version)
            raise RegistryError(f"could not claim a version number for {name!r} after 100 tries")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def register_model(self, model: TradingModel, history: BarBatch, *, name: str | None = None,
                       extra: dict[str, Any] | None = None) -> ModelVersion:
        """Register a fitted ``Persistent`` model trained on ``history`` under ``name`` (default its own)."""
        if not isinstance(model, Persistent):
            raise TypeError(f"{type(model).__name__} has no save_artifacts; register it with register(...)")
        return self.register(
            name or model.name, model.kind, model.params.model_dump(mode="json"), save=model.save_artifacts,
            features=model.features.names if model.features is not None else (),
            training_window=dict(model.training_window), metrics=dict(model.metrics),
            data_fingerprint=fingerprint(history), extra=extra,
        )

    def _next_version(self, name: str) -> int:
        return max((v.version for v in self.versions(name)), default=0) + 1

    # --- reading ------------------------------------------------------------------------------

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first ([] when there is none)."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        out = []
        for sub in folder.iterdir():
            if sub.name.startswith("v") and sub.name[1:].isdigit() and (sub / METADATA).exists():
                out.append(self._read(name, sub))
        return sorted(out, key=lambda v: v.version)

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """A version of ``name`` (the latest when ``version`` is None)."""
        found = self.versions(name)
        if not found:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"no model named {name!r} in the registry {self.root} (registered: {known})")
        if version is None:
            return found[-1]
        for v in found:
            if v.version == version:
                return v
        raise RegistryError(f"{name!r} has no version {version} in {self.root}; versions: "
                            f"{[v.version for v in found]}")

    def resolve(self, ref: str) -> ModelVersion:
        """'NAME' (latest) or 'NAME@VERSION'."""
        name, version = parse_ref(ref)
        return self.get(name, version)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def list(self) -> list[ModelVersion]:
        """Every version of every model, by name then version."""
        return [v for n in self.names() for v in self.versions(n)]

    def load_model(self, ref: ModelVersion, *, name: str, symbols: Sequence[str], seed: int,
                   params: dict[str, Any] | None = None) -> TradingModel:
        """A ready-to-trade model from a registered version: built with its registered params (updated
        by ``params``), its artefacts loaded (a ``Persistent`` kind), so it trades without fitting."""
        if ref.kind not in MODEL_KINDS:
            raise RegistryError(f"{ref.ref} is of kind {ref.kind!r}, which this version of titan-ray does not know")
        merged = {**ref.meta.get("params", {}), **(params or {})}
        model = MODEL_KINDS[ref.kind](name, merged, tuple(symbols), seed=seed)
        if isinstance(model, Persistent):
            model.load_artifacts(ref.path)
        return model

    def _read(self, name: str, folder: Path) -> ModelVersion:
        try:
            meta = json.loads((folder / METADATA).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RegistryError(f"{folder / METADATA} cannot be read: {err}") from None
        return ModelVersion(name=name, version=int(folder.name[1:]), kind=meta.get("kind", "?"),
                            path=folder.resolve(), meta=meta)


def _dirname(version: int) -> str:
    return f"v{version:04d}"


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def registered_models(config: ArenaConfig, symbols: Sequence[str]) -> dict[str, TradingModel]:
    """The arena's models that come from the registry (ModelSpec ``artifact``), loaded and ready.

    Errors name the field: ``models[i].artifact`` for a missing model or version, a kind that
    differs from the registered one.
    """
    out: dict[str, TradingModel] = {}
    wanted = [(i, m) for i, m in enumerate(config.models) if m.artifact is not None]
    if not wanted:
        return out
    registry = ModelRegistry(config.registry.path)
    for i, spec in wanted:
        where = f"models[{i}].artifact ({spec.name})"
        try:
            version = registry.resolve(spec.artifact)
        except RegistryError as err:
            raise ConfigError(f"{where}: {err}; register one first (titan_ray.registry) or fix the name") from None
        if version.kind != spec.kind:
            raise ConfigError(f"{where}: {version.ref} is a {version.kind!r} model but models[{i}].kind is "
                              f"{spec.kind!r}; set kind: {version.kind}")
        try:
            out[spec.name] = registry.load_model(version, name=spec.name, symbols=symbols, seed=config.seed,
                                                 params=spec.params)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"{where}: {version.ref} cannot be loaded: {err}") from None
    return out
