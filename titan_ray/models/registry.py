"""Model kinds by name: the ``kind`` key of a model in the arena config."""

from __future__ import annotations

from titan_ray.models.base import TradingModel
from titan_ray.models.baselines import BuyAndHold, RandomModel, RsiReversion, SmaCrossover

MODEL_KINDS: dict[str, type[TradingModel]] = {
    cls.kind: cls for cls in (SmaCrossover, RsiReversion, BuyAndHold, RandomModel)
}


def build_model(name: str, kind: str, params: dict, symbols: tuple[str, ...], *, seed: int) -> TradingModel:
    return MODEL_KINDS[kind](name, params, symbols, seed=seed)
