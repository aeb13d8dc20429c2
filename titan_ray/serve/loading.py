"""From a served model's settings to a ``Predictor``: rule models built, registered ones loaded.

A served model with ``artifact: NAME`` (the latest version), ``NAME@VERSION`` or ``NAME@ALIAS``
(``lgbm@champion``) is loaded from the model registry. When the registry does not hold NAME yet
and the model has a ``train`` section, it is trained on that section's bars and registered first
(a fresh clone serves without a separate training step); under an alias, that first version is
given the alias. A file lock on the registry folder makes concurrent replicas train it once.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from titan_ray.config import DataConfig
from titan_ray.data.providers import make_provider
from titan_ray.models.base import TradingModel
from titan_ray.models.kinds import MODEL_KINDS, build_model
from titan_ray.registry import ModelRegistry, ModelVersion, parse_ref
from titan_ray.serve.predictor import ModelInfo, Predictor
from titan_ray.serve.settings import ServedModel, TrainSpec

log = logging.getLogger("titan_ray.serve")


def load_predictor(spec: ServedModel, *, registry_root: str | None, seed: int = 7) -> Predictor:
    if spec.kind is not None:
        kind, cls, params = spec.kind, MODEL_KINDS[spec.kind], dict(spec.params)
        info = ModelInfo(name=spec.name, kind=kind, method=cls.method, version=None, artifact=None,
                         params=cls.Params.model_validate(params).model_dump(mode="json"), features=None,
                         accepts=("bars",))

        def factory(symbols: tuple[str, ...]) -> TradingModel:
            return build_model(spec.name, kind, params, symbols, seed=seed)

        return Predictor(info, factory)

    registry = ModelRegistry(registry_root)
    name, version = parse_ref(spec.artifact)
    # Train only into an empty name (the first version), so a pinned NAME@1, NAME and NAME@ALIAS all mean it.
    if (version in (None, 1) or isinstance(version, str)) and not registry.versions(name) and spec.train is not None:
        with _locked(registry.root):
            if not registry.versions(name):  # another replica may have trained it while we waited
                first = train_and_register(registry, name, spec.train)
                if isinstance(version, str):
                    registry.set_alias(name, version, first.version, who="titan-ray serve",
                                       why="the first version, trained at start-up from the app's `train`")
    ref = registry.get(name, version)
    symbols = tuple(ref.meta.get("extra", {}).get("symbols") or ("AAA",))
    template = registry.load_model(ref, name=spec.name, symbols=symbols, seed=seed, params=spec.params or None)
    inputs = template.inputs()
    info = ModelInfo(name=spec.name, kind=ref.kind, method=type(template).method, version=ref.version,
                     artifact=ref.ref, params=dict(template.params.model_dump(mode="json")),
                     features=list(inputs.features) or None,
                     accepts=("bars", "features") if inputs.accepts_rows else ("bars",))

    def load(symbols: tuple[str, ...]) -> TradingModel:
        return registry.load_model(ref, name=spec.name, symbols=symbols, seed=seed, params=spec.params or None)

    return Predictor(info, load)


def train_and_register(registry: ModelRegistry, name: str, train: TrainSpec) -> ModelVersion:
    """Fit ``train.kind`` on ``train.data``'s bars and register it as ``name``; the new ModelVersion."""
    data = DataConfig.model_validate(train.data)
    history = make_provider(data, train.seed).load().bars
    log.warning("the registry %s holds no %r: training a %s model on %d bars of %s data first",
                registry.root, name, train.kind, len(history), data.provider)
    model = build_model(name, train.kind, train.params, history.symbols, seed=train.seed)
    model.fit(history)
    version = registry.register_model(model, history, name=name,
                                      extra={"symbols": list(history.symbols), "trained_by": "titan-ray serve"})
    log.warning("registered %s", version.ref)
    return version


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".train.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
