"""The ``TradingModel`` interface: what every competitor of the arena implements.

A model sees bars chunk by chunk, in time order, and never a bar from the future (the
market-data actor is the only clock). For each chunk it returns target weights for every
timestamp and symbol, and one ``Explanation`` for each cell where its weight changed.

Subclasses implement two small hooks, in the manner of qlib's ``fit``/``predict``:

- ``_weights(bars)`` → (weights (T, S), named indicator arrays (T, S)); it carries its own state
  across chunks so that results do not depend on the chunk size;
- ``_explain(...)`` → for the cells whose weight changed (vectorised), the features that drove
  each change, with values and attributions; ``render`` turns one such row into a sentence a
  trader can read, when the explanation is read.

``fit(history)`` is an optional hook with a safe default (rule-based models need no training).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions, ExplanationBatch, Feature


class ModelParams(BaseModel):
    """Base of every model's parameters: strict, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TradingModel(ABC):
    kind: ClassVar[str]
    method: ClassVar[str] = "rule"
    long_only: ClassVar[bool] = True
    Params: ClassVar[type[ModelParams]] = ModelParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        self.name = name
        self.params = self.Params.model_validate(params)
        self.symbols = tuple(symbols)
        self.seed = seed
        self._sent = np.zeros(len(self.symbols))  # last weights sent to the ledger

    def default_weight(self) -> float:
        """Weight of one long position when the model does not set one: an equal share."""
        return 1.0 / len(self.symbols)

    def fit(self, history: BarBatch) -> None:
        """Train on a window of past bars (walk-forward). Rule-based models need nothing."""

    def observe(self, bars: BarBatch) -> None:
        """Warm-up: update state on bars that are not traded."""
        self._weights(bars)

    def decide(self, bars: BarBatch) -> Decisions:
        weights, info = self._weights(bars)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        prev = np.vstack([self._sent[None, :], weights[:-1]])
        rows, cols = np.nonzero(weights != prev)
        self._sent = weights[-1].copy()
        if not len(rows):
            return Decisions(model=self.name, start=bars.start, weights=weights)
        old, new = prev[rows, cols], weights[rows, cols]
        names, values, attributions, base = self._explain(rows, cols, old, new, info, bars)
        batch = ExplanationBatch(
            model=self.name,
            kind=self.kind,
            method=self.method,
            bar=(bars.start + rows).astype(np.int64),
            symbol=cols.astype(np.int64),
            timestamp=bars.timestamps[rows],
            old_weight=old,
            new_weight=new,
            price=bars.close[rows, cols],
            base_value=np.broadcast_to(np.asarray(base, dtype=np.float64), rows.shape).copy(),
            feature_names=tuple(names),
            values=np.asarray(values, dtype=np.float64).reshape(len(rows), len(names)),
            attributions=np.asarray(attributions, dtype=np.float64).reshape(len(rows), len(names)),
        )
        return Decisions(model=self.name, start=bars.start, weights=weights, explanations=batch)

    @abstractmethod
    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Target weights (T, S) for the chunk, and the indicators behind them."""

    @abstractmethod
    def _explain(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        old: np.ndarray,
        new: np.ndarray,
        info: dict[str, np.ndarray],
        bars: BarBatch,
    ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray | float]:
        """For the changed cells (rows, cols): feature names, values (n, k), attributions (n, k), base."""

    @classmethod
    @abstractmethod
    def render(cls, symbol: str, old: float, new: float, features: tuple[Feature, ...]) -> str:
        """The sentence a trader reads for one decision."""


def hold_forward(events: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Forward-fill the non-NaN cells of ``events`` (T, S) down the rows, from ``start`` (S,)."""
    filled = np.vstack([start[None, :], events])
    idx = np.where(~np.isnan(filled), np.arange(len(filled))[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(filled, idx, axis=0)[1:]
