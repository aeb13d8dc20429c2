"""An LSTM over a window of features, read out through an attention layer.

The window ``x`` (batch, W, F) runs through an LSTM; the hidden state of the last bar is the
query, every bar's hidden state a key and a value. The attention weights (batch, W), a softmax
over the window, say which bars the prediction leaned on; they are returned with the prediction
so an explanation can show them. Two scorers:

- ``additive`` (Bahdanau): e_t = v . tanh(W_k h_t + W_q h_W);
- ``dot`` (Luong, scaled): e_t = (W_q h_W) . (W_k h_t) / sqrt(H).

The head sees the attention context and the last hidden state and predicts ``n_outputs``
values (one point forecast, or one per quantile).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from titan_ray.models.nets.common import NetOutput


@dataclass(frozen=True)
class LstmAttentionConfig:
    n_features: int
    hidden: int = 32
    layers: int = 1
    attention: Literal["additive", "dot"] = "additive"
    dropout: float = 0.0
    n_outputs: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


class LstmAttentionNet(nn.Module):
    def __init__(self, config: LstmAttentionConfig) -> None:
        super().__init__()
        if config.attention not in ("additive", "dot"):
            raise ValueError(f"attention must be 'additive' or 'dot', got {config.attention!r}")
        self.config = config
        h = config.hidden
        self.lstm = nn.LSTM(
            config.n_features, h, num_layers=config.layers, batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.key = nn.Linear(h, h, bias=False)
        self.query = nn.Linear(h, h, bias=config.attention == "additive")
        self.score = nn.Linear(h, 1, bias=False) if config.attention == "additive" else None
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(2 * h, h), nn.ELU(), nn.Linear(h, config.n_outputs)
        )

    def forward(self, x: torch.Tensor) -> NetOutput:
        states, _ = self.lstm(x)  # (B, W, H)
        last = states[:, -1]
        q = self.query(last)  # (B, H)
        k = self.key(states)  # (B, W, H)
        if self.score is not None:
            energy = self.score(torch.tanh(k + q[:, None, :])).squeeze(-1)
        else:
            energy = (k * q[:, None, :]).sum(-1) / math.sqrt(k.shape[-1])
        weights = torch.softmax(energy, dim=-1)  # (B, W)
        context = (weights[:, :, None] * states).sum(1)
        prediction = self.head(torch.cat([context, last], dim=-1))
        return NetOutput(prediction=prediction, attention=weights)
