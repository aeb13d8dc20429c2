"""Integrated Gradients (captum) over a sequence model's input window, and their aggregation.

For a window x (W bars x F features) and a baseline x0 (here: all zeros in standardised units,
i.e. every feature at its training mean), Integrated Gradients attribute the score difference
f(x) - f(x0) to each input cell. They are *complete*: the attributions add up to that difference,
up to the error of the path integral. That error, ``sum(attr) - (f(x) - f(x0))``, is captum's
convergence delta; it is returned per row as the **completeness gap**, so every explanation says
how far its numbers are from adding up.

Rows are attributed in blocks of exactly ``block`` rows (padded), on a float64 copy of the net:
the arithmetic of one row then never depends on which rows came with it (an explanation is the
same whatever the chunk size), and float32 rounding does not pollute the gap.

``per_feature`` sums a (n, W, F) attribution over the window (one number per feature: how much
that feature, over all the bars the model saw, moved the score); ``per_bar`` sums over features.
Sums keep completeness: per-feature attributions still add up to f(x) - f(x0) - gap.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import nn

from titan_ray.explain.threads import torch_threads


@dataclass(frozen=True)
class Attribution:
    attributions: np.ndarray  # (n, W, F)
    gap: np.ndarray  # (n,) completeness gap: sum(attributions) - (score - base)
    score: np.ndarray  # (n,) f(x) on the float64 net
    base: np.ndarray  # (n,) f(x0): the score at the baseline window

    def per_feature(self) -> np.ndarray:
        return per_feature(self.attributions)

    def per_bar(self) -> np.ndarray:
        return per_bar(self.attributions)


class ScoreOf(nn.Module):
    """A net as a scalar function of its window: output column ``column`` of its prediction."""

    def __init__(self, net: nn.Module, column: int = 0) -> None:
        super().__init__()
        self.net, self.column = net, column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).prediction[:, self.column]


def double_copy(net: nn.Module) -> nn.Module:
    """A float64 copy of ``net`` in eval mode (the original is not touched)."""
    return copy.deepcopy(net).double().eval()


def integrated_gradients(
    net: nn.Module,
    x: np.ndarray,
    *,
    column: int = 0,
    n_steps: int = 32,
    block: int = 8,
    threads: int = 1,
    baseline: np.ndarray | None = None,
    net64: nn.Module | None = None,
) -> Attribution:
    """IG of output ``column`` for windows ``x`` (n, W, F) against ``baseline`` (W, F; zeros by default).

    ``net64`` is a float64 copy of ``net`` (``double_copy``); pass one to reuse it across calls.
    """
    if x.ndim != 3:
        raise ValueError(f"x must be (rows, window, features), got shape {x.shape}")
    n, w, f = x.shape
    model = ScoreOf(net64 if net64 is not None else double_copy(net), column).eval()
    ig = IntegratedGradients(model)
    base_window = np.zeros((w, f)) if baseline is None else np.asarray(baseline, dtype=np.float64)
    attrs = np.zeros((n, w, f))
    gaps, scores, bases = np.zeros(n), np.zeros(n), np.zeros(n)
    with torch_threads(threads):
        base_t = torch.as_tensor(np.broadcast_to(base_window, (block, w, f)).copy())
        with torch.no_grad():
            base_score = model(base_t).numpy()
        for i in range(0, n, block):
            k = min(block, n - i)
            part = np.zeros((block, w, f))
            part[:k] = x[i : i + k]
            inputs = torch.as_tensor(part).requires_grad_(True)
            attr, delta = ig.attribute(inputs, baselines=base_t, n_steps=n_steps, method="gausslegendre",
                                       return_convergence_delta=True)
            with torch.no_grad():
                score = model(torch.as_tensor(part)).numpy()
            attrs[i : i + k] = attr.detach().numpy()[:k]
            gaps[i : i + k] = delta.detach().numpy()[:k]
            scores[i : i + k] = score[:k]
            bases[i : i + k] = base_score[:k]
    return Attribution(attributions=attrs, gap=gaps, score=scores, base=bases)


def per_feature(attributions: np.ndarray) -> np.ndarray:
    """(n, W, F) → (n, F): each feature's attribution summed over the window."""
    return attributions.sum(axis=1)


def per_bar(attributions: np.ndarray) -> np.ndarray:
    """(n, W, F) → (n, W): each bar's attribution summed over the features."""
    return attributions.sum(axis=2)
