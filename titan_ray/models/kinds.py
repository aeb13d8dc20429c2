"""Model kinds by name: the ``kind`` key of a model in the arena config.

Classes are imported on first use, so that a config of rule-based models never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from titan_ray.models.base import TradingModel

_KINDS: dict[str, str] = {
    "sma_crossover": "titan_ray.models.baselines:SmaCrossover",
    "rsi_reversion": "titan_ray.models.baselines:RsiReversion",
    "buy_and_hold": "titan_ray.models.baselines:BuyAndHold",
    "random": "titan_ray.models.baselines:RandomModel",
    "lightgbm": "titan_ray.models.lightgbm_model:LightGBMModel",
    "stacking": "titan_ray.models.stacking:StackingModel",
    "lstm_attention": "titan_ray.models.lstm_attention:LstmAttentionModel",
    "tft": "titan_ray.models.tft:TftModel",
    "ppo": "titan_ray.models.ppo:PpoModel",
}


class _Kinds(Mapping[str, type[TradingModel]]):
    """A read-only mapping kind → model class that imports each class when first asked for."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths, self._loaded = paths, {}

    def __getitem__(self, kind: str) -> type[TradingModel]:
        if kind not in self._loaded:
            module, _, attr = self._paths[kind].partition(":")
            self._loaded[kind] = getattr(importlib.import_module(module), attr)
        return self._loaded[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


MODEL_KINDS: Mapping[str, type[TradingModel]] = _Kinds(_KINDS)
BASELINE_KINDS = ("sma_crossover", "rsi_reversion", "buy_and_hold", "random")


def build_model(name: str, kind: str, params: dict, symbols: tuple[str, ...], *, seed: int) -> TradingModel:
    return MODEL_KINDS[kind](name, params, symbols, seed=seed)
