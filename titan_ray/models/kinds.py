"""Model kinds by name: the ``kind`` key of a model in the arena config.

Classes are loaded by name on first use (``titan_ray.lazy``), so that a config of rule-based
models never imports torch. Their parameter classes are in ``titan_ray.models.params``, under the
same kinds, for code that needs only the parameters (validating a config).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from titan_ray.lazy import LazyMapping, load
from titan_ray.models.base import TradingModel

MODEL_KINDS: Mapping[str, type[TradingModel]] = LazyMapping({
    "sma_crossover": "titan_ray.models.baselines:SmaCrossover",
    "rsi_reversion": "titan_ray.models.baselines:RsiReversion",
    "buy_and_hold": "titan_ray.models.baselines:BuyAndHold",
    "random": "titan_ray.models.baselines:RandomModel",
    "lightgbm": "titan_ray.models.lightgbm_model:LightGBMModel",
    "stacking": "titan_ray.models.stacking:StackingModel",
    "lstm_attention": "titan_ray.models.lstm_attention:LstmAttentionModel",
    "tft": "titan_ray.models.tft:TftModel",
    "ppo": "titan_ray.models.ppo:PpoModel",
    "allocator": "titan_ray.models.allocator:AllocatorModel",
    "llm": "titan_ray.models.llm:LlmModel",
})
BASELINE_KINDS = ("sma_crossover", "rsi_reversion", "buy_and_hold", "random")


ARENA_STACKING = "titan_ray.models.stacking:ArenaStackingModel"  # ``stacking`` over arena models (``inputs``)


def build_model(name: str, kind: str, params: dict[str, Any], symbols: tuple[str, ...], *,
                seed: int) -> TradingModel:
    if kind == "stacking" and params.get("inputs") is not None:
        return load(ARENA_STACKING)(name, params, symbols, seed=seed)
    return MODEL_KINDS[kind](name, params, symbols, seed=seed)
