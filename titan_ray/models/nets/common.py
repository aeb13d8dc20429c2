"""What every net of this package returns, and the losses they train on."""

from __future__ import annotations

from typing import NamedTuple

import torch


class NetOutput(NamedTuple):
    prediction: torch.Tensor  # (B, n_outputs): a point forecast, or one column per quantile
    attention: torch.Tensor  # (B, W): the decision bar's attention over the window (rows sum to 1)
    variable_weights: torch.Tensor | None = None  # (B, W, F): variable selection (rows sum to 1)


def quantile_loss(prediction: torch.Tensor, target: torch.Tensor, quantiles: tuple[float, ...]) -> torch.Tensor:
    """Pinball loss averaged over rows and quantiles; ``prediction`` (B, Q), ``target`` (B,)."""
    q = torch.as_tensor(quantiles, dtype=prediction.dtype)
    err = target[:, None] - prediction
    return torch.maximum(q * err, (q - 1) * err).mean()


def point_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the single output column."""
    return torch.mean((prediction[:, 0] - target) ** 2)
