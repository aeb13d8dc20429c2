"""ModelActor: one competitor in its own Ray worker; all logic lives in the ``TradingModel``."""

from __future__ import annotations

from typing import Any

import ray

from titan_ray.config import ModelSpec
from titan_ray.data.bars import BarBatch
from titan_ray.models.decisions import Decisions
from titan_ray.models.registry import build_model


@ray.remote
class ModelActor:
    def __init__(self, spec: ModelSpec, symbols: tuple[str, ...], seed: int) -> None:
        self.model = build_model(spec.name, spec.kind, spec.params, tuple(symbols), seed=seed)

    def info(self) -> dict[str, Any]:
        m = self.model
        return {"name": m.name, "kind": m.kind, "method": m.method, "long_only": m.long_only}

    def observe(self, bars: BarBatch) -> None:
        self.model.observe(bars)

    def decide(self, bars: BarBatch) -> Decisions:
        return self.model.decide(bars)
