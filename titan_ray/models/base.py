"""The ``TradingModel`` interface: what every competitor of the arena implements.

A model sees bars chunk by chunk, in time order, and never a bar from the future (the
market-data actor is the only clock). For each chunk it returns target weights for every
timestamp and symbol, and one ``Explanation`` for each cell where its weight changed.

Subclasses implement two small hooks, in the manner of qlib's ``fit``/``predict``:

- ``_weights(bars)`` → (weights (T, S), named indicator arrays (T, S)); it carries its own state
  across chunks so that results do not depend on the chunk size;
- ``_explain(...)`` → the features that drove one changed weight and a sentence a trader can read.

``fit(history)`` is an optional hook with a safe default (rule-based models need no training).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from titan_ray.data.bars import BarBatch
from titan_ray.models.decisions import Decisions, Explanation, Feature, decision_id


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

    def fit(self, history: BarBatch) -> None:  # noqa: B027 - optional hook, safe default
        """Train on a window of past bars (walk-forward). Rule-based models need nothing."""

    def observe(self, bars: BarBatch) -> None:
        """Warm-up: update state on bars that are not traded."""
        self._weights(bars)

    def decide(self, bars: BarBatch) -> Decisions:
        weights, info = self._weights(bars)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        prev = np.vstack([self._sent[None, :], weights[:-1]])
        explanations = []
        for t, s in zip(*np.nonzero(weights != prev), strict=True):
            old, new = float(prev[t, s]), float(weights[t, s])
            features, base, sentence = self._explain(int(t), int(s), old, new, info, bars)
            bar = bars.start + int(t)
            explanations.append(
                Explanation(
                    decision_id=decision_id(self.name, self.symbols[s], bar),
                    model=self.name,
                    timestamp=int(bars.timestamps[t]),
                    bar=bar,
                    symbol=self.symbols[s],
                    old_weight=old,
                    new_weight=new,
                    price=float(bars.close[t, s]),
                    method=self.method,
                    base_value=base,
                    features=tuple(features),
                    sentence=sentence,
                )
            )
        self._sent = weights[-1].copy()
        return Decisions(model=self.name, start=bars.start, weights=weights, explanations=tuple(explanations))

    @abstractmethod
    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Target weights (T, S) for the chunk, and the indicators behind them."""

    @abstractmethod
    def _explain(
        self, t: int, s: int, old: float, new: float, info: dict[str, np.ndarray], bars: BarBatch
    ) -> tuple[list[Feature], float, str]:
        """(features, base value, sentence) for the weight of symbol ``s`` changing at row ``t``."""


def action_phrase(symbol: str, old: float, new: float) -> str:
    """'Went long AAA (weight 0 → 0.0833)' and the like."""
    if new == 0:
        verb = "Went flat"
    elif old == 0 or (old > 0) != (new > 0):
        verb = "Went long" if new > 0 else "Went short"
    else:
        verb = "Added to" if abs(new) > abs(old) else "Reduced"
    return f"{verb} {symbol} (weight {old:.4g} → {new:.4g})"


def hold_forward(events: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Forward-fill the non-NaN cells of ``events`` (T, S) down the rows, from ``start`` (S,)."""
    filled = np.vstack([start[None, :], events])
    idx = np.where(~np.isnan(filled), np.arange(len(filled))[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(filled, idx, axis=0)[1:]
