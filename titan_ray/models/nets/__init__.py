"""Torch nets of the arena's sequence models, their training loop and their outputs.

- ``lstm_attention``: an LSTM with an attention read-out (weights over the window);
- ``tft``: a Temporal Fusion Transformer (variable-selection weights and attention);
- ``training``: windows cut from a feature panel, a seeded CPU training loop with early stopping
  on the time-ordered tail, and block-wise prediction that is independent of the batch size.

``build_net(arch, config, seed)`` builds either net from its config dict (what artefacts store).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from titan_ray.models.nets.common import NetOutput
from titan_ray.models.nets.lstm_attention import LstmAttentionConfig, LstmAttentionNet
from titan_ray.models.nets.tft import TemporalFusionTransformer, TftConfig
from titan_ray.models.nets.training import seeded

ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "lstm_attention": (LstmAttentionConfig, LstmAttentionNet),
    "tft": (TftConfig, TemporalFusionTransformer),
}


def build_net(arch: str, config: dict[str, Any], seed: int) -> nn.Module:
    """A freshly initialised net; the same arch, config and seed give the same initial weights."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown net architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    config_cls, net_cls = ARCHITECTURES[arch]
    with seeded(seed):
        return net_cls(config_cls(**config))


__all__ = [
    "ARCHITECTURES", "LstmAttentionConfig", "LstmAttentionNet", "NetOutput", "TemporalFusionTransformer",
    "TftConfig", "build_net",
]
