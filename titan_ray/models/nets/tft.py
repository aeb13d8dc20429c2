"""A Temporal Fusion Transformer (Lim et al., 2021), written here on torch, for one-step forecasts.

The parts, in the order data flows through them:

- **embedding**: each of the F observed inputs (a scalar per bar) gets its own linear map to
  ``d`` dimensions;
- **variable selection** (``VariableSelection``): a gated residual network over all F
  embeddings of a bar gives softmax weights over the variables (batch, W, F); each embedding goes
  through its own GRN; the bar's representation is their weighted sum. The weights are the
  model's own answer to "which inputs mattered", and are returned;
- **LSTM encoder** over the W selected bars, joined to its input by a gated skip connection
  (GLU, add, layer norm);
- **enrichment**: a position-wise GRN (the paper's static enrichment, without static covariates);
- **interpretable multi-head attention** (``InterpretableMultiHeadAttention``): heads have their
  own query and key projections and share one value projection, so the mean of the heads'
  attention matrices is the exact weight each bar carries; the decision bar is the query (the
  only output a one-step forecast needs) and its attention over the window is returned;
- a gated skip, a position-wise GRN, a last gated skip back to the LSTM output, and a linear
  head: one point forecast, or one output per quantile.

The gated linear unit (GLU) lets the network switch off a block it does not need; the gated
residual network (GRN) is ``LayerNorm(a + GLU(W1 ELU(W2 a + b2) + b1))``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from titan_ray.models.nets.common import NetOutput


@dataclass(frozen=True)
class TftConfig:
    n_features: int
    hidden: int = 16
    heads: int = 2
    dropout: float = 0.0
    n_outputs: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


class GroupedLinear(nn.Module):
    """``groups`` independent linear maps, applied variable-major: (groups, N, d_in) → (groups, N, d_out).

    Variable-major keeps each group's rows contiguous, so the maps run as one batched matmul with
    no transposes (the per-variable networks are most of a TFT's cost on a CPU).
    """

    def __init__(self, groups: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def _linear(d_in: int, d_out: int, groups: int | None) -> nn.Module:
    return nn.Linear(d_in, d_out) if groups is None else GroupedLinear(groups, d_in, d_out)


class GatedLinearUnit(nn.Module):
    """GLU(x) = sigmoid(W4 x + b4) * (W5 x + b5), after dropout."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.0, groups: int | None = None) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gate = _linear(d_in, d_out, groups)
        self.value = _linear(d_in, d_out, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        return torch.sigmoid(self.gate(x)) * self.value(x)


class AddNorm(nn.Module):
    """The gated skip connection: LayerNorm(skip + GLU(x))."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.0, groups: int | None = None) -> None:
        super().__init__()
        self.glu = GatedLinearUnit(d_in, d_out, dropout, groups)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.norm(skip + self.glu(x))


class GatedResidualNetwork(nn.Module):
    """GRN(a) = LayerNorm(skip(a) + GLU(W1 ELU(W2 a + b2) + b1)); ``groups`` runs one per variable
    (on variable-major input, see ``GroupedLinear``)."""

    def __init__(
        self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0, groups: int | None = None
    ) -> None:
        super().__init__()
        self.skip = _linear(d_in, d_out, groups) if d_in != d_out else None
        self.fc2 = _linear(d_in, d_hidden, groups)
        self.fc1 = _linear(d_hidden, d_hidden, groups)
        self.gate = AddNorm(d_hidden, d_out, dropout, groups)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        skip = a if self.skip is None else self.skip(a)
        eta = self.fc1(nn.functional.elu(self.fc2(a)))
        return self.gate(eta, skip)


class VariableSelection(nn.Module):
    """Softmax weights over F variables from all their embeddings, and the weighted sum of GRNs."""

    def __init__(self, n_vars: int, d: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_vars = n_vars
        self.weights_grn = GatedResidualNetwork(n_vars * d, d, n_vars, dropout)
        # no dropout inside the per-variable networks: on (F, B·W, d) tensors it costs a tenth of a
        # training step, and the selection weights and everything after them still drop out
        self.var_grns = GatedResidualNetwork(d, d, d, 0.0, groups=n_vars)

    def forward(self, xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``xi`` (F, B, W, d), variable-major → (selected (B, W, d), weights (B, W, F))."""
        f, b, w, d = xi.shape
        weights = torch.softmax(self.weights_grn(xi.permute(1, 2, 0, 3).reshape(b, w, f * d)), dim=-1)
        processed = self.var_grns(xi.reshape(f, b * w, d)).view(f, b, w, d)
        return (weights.permute(2, 0, 1)[..., None] * processed).sum(0), weights


class InterpretableMultiHeadAttention(nn.Module):
    """Heads with their own queries and keys and one shared value projection.

    H~ = (1/h) sum_h A_h V W_V = (mean_h A_h) V W_V, so ``mean_h A_h`` is the attention the output
    really uses; it is returned (batch, n_query, W).
    """

    def __init__(self, d: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"hidden ({d}) must be a multiple of heads ({heads})")
        self.heads, self.d_head = heads, d // heads
        self.q = nn.Linear(d, heads * self.d_head)
        self.k = nn.Linear(d, heads * self.d_head)
        self.v = nn.Linear(d, self.d_head)  # shared by the heads
        self.out = nn.Linear(self.d_head, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, nq, _ = query.shape
        w = keys.shape[1]
        q = self.q(query).view(b, nq, self.heads, self.d_head).transpose(1, 2)  # (B, h, nq, dh)
        k = self.k(keys).view(b, w, self.heads, self.d_head).transpose(1, 2)  # (B, h, W, dh)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # (B, h, nq, W)
        if nq > 1:  # queries see their own bar and earlier ones only (the last nq bars are queries)
            qpos = torch.arange(w - nq, w)[:, None]
            scores = scores.masked_fill(torch.arange(w)[None, :] > qpos, float("-inf"))
        attention = torch.softmax(scores, dim=-1).mean(1)  # (B, nq, W)
        out = self.dropout(attention) @ self.v(keys)  # (B, nq, dh)
        return self.out(out), attention


class TemporalFusionTransformer(nn.Module):
    def __init__(self, config: TftConfig) -> None:
        super().__init__()
        self.config = config
        f, d, p = config.n_features, config.hidden, config.dropout
        self.embed_weight = nn.Parameter(torch.randn(f, d) * 0.1)
        self.embed_bias = nn.Parameter(torch.zeros(f, d))
        self.selection = VariableSelection(f, d, p)
        self.encoder = nn.LSTM(d, d, batch_first=True)
        self.encoder_gate = AddNorm(d, d, p)
        self.enrichment = GatedResidualNetwork(d, d, d, p)
        self.attention = InterpretableMultiHeadAttention(d, config.heads, p)
        self.attention_gate = AddNorm(d, d, p)
        self.feed_forward = GatedResidualNetwork(d, d, d, p)
        self.output_gate = AddNorm(d, d, 0.0)
        self.head = nn.Linear(d, config.n_outputs)

    def forward(self, x: torch.Tensor) -> NetOutput:
        # each variable's own linear embedding, variable-major: (F, B, W, d)
        xi = x.permute(2, 0, 1)[..., None] * self.embed_weight[:, None, None] + self.embed_bias[:, None, None]
        selected, var_weights = self.selection(xi)  # (B, W, d), (B, W, F)
        lstm_out, _ = self.encoder(selected)
        temporal = self.encoder_gate(lstm_out, selected)  # (B, W, d)
        enriched = self.enrichment(temporal)
        query = enriched[:, -1:]  # the decision bar: a one-step forecast needs no other output
        attended, attention = self.attention(query, enriched)
        delta = self.attention_gate(attended, query)
        psi = self.feed_forward(delta)
        out = self.output_gate(psi, temporal[:, -1:])
        return NetOutput(prediction=self.head(out[:, 0]), attention=attention[:, 0], variable_weights=var_weights)
