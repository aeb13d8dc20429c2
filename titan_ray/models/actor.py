"""ModelActor: one competitor in its own Ray worker; all logic lives in the ``TradingModel``."""

from __future__ import annotations

import time
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
        self._busy = 0.0  # seconds spent deciding

    def busy_seconds(self) -> float:
        return self._busy

    def info(self) -> dict[str, Any]:
        m = self.model
        return {"name": m.name, "kind": m.kind, "method": m.method, "long_only": m.long_only}

    def observe(self, bars: BarBatch) -> None:
        self.model.observe(bars)

    def decide(self, bars: BarBatch) -> Decisions:
        start = time.perf_counter()
        decisions = self.model.decide(bars)
        self._busy += time.perf_counter() - start
        return decisions
