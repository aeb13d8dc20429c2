"""``lstm_attention``: an LSTM with attention over a window of features, explained by Integrated Gradients.

The net (``nets.lstm_attention``) reads the last ``window`` feature rows of a symbol and forecasts
its ``horizon``-bar label (see ``sequence`` for training, scoring and artefacts).

Explanation of each decision that traded, method ``captum.IntegratedGradients``:

- one column per input feature: its value at the decision bar, and its Integrated Gradients
  attribution summed over the window, in the score's units (σ of the label), against a baseline
  window with every feature at its training mean (the ``base_value``: the net's score there);
  base + the attributions add up to the score, and what is left (captum's convergence delta, on
  a float64 copy of the net) is the decision's ``gap``;
- columns ``attention@t-0`` .. ``attention@t-(W-1)``: the attention weight on each bar of the
  window (value; attribution 0, attention is not additive), t-0 being the decision bar.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from titan_ray.domain.decisions import action_phrase
from titan_ray.explain.gradients import double_copy, integrated_gradients
from titan_ray.models.learned import Attribution
from titan_ray.models.params import LstmAttentionParams
from titan_ray.models.sequence import (
    SequenceModel,
    attention_phrase,
    lead_phrase,
    render_sequence,
    split_columns,
)


class LstmAttentionModel(SequenceModel):
    kind = "lstm_attention"
    arch = "lstm_attention"
    method = "captum.IntegratedGradients"
    Params = LstmAttentionParams
    score_name: ClassVar[str] = "LSTM"

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        # (the net it copies, float64 copy): the net itself, not its id, which a later net may reuse
        self._net64: tuple[Any, Any] | None = None

    def _net_config(self, n_features: int) -> dict[str, Any]:
        p: LstmAttentionParams = self.params  # type: ignore[assignment]
        return {"n_features": n_features, "hidden": p.hidden, "layers": p.layers, "attention": p.attention,
                "dropout": p.dropout, "n_outputs": len(p.quantiles) if p.quantiles else 1}

    def _double(self) -> Any:
        if self._net64 is None or self._net64[0] is not self.net:
            self._net64 = (self.net, double_copy(self.net))
        return self._net64[1]

    def _attribute(self, X: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Attribution:
        p: LstmAttentionParams = self.params  # type: ignore[assignment]
        windows, raw = self._decision_windows(X, rows, cols)
        x = windows.take(slice(None)).astype(np.float64)
        ig = integrated_gradients(self.net, x, column=self._score_column, n_steps=p.ig_steps, block=p.ig_block,
                                  threads=p.threads, net64=self._double())
        att_names, att_values, att_attr = self._attention_columns(self._net_predict(windows).attention)
        return Attribution(
            names=(*self.features.names, *att_names),
            values=np.hstack([raw, att_values]),
            attributions=np.hstack([ig.per_feature(), att_attr]),
            base=ig.base,
            gap=np.abs(ig.gap),
        )

    def sentence(self, symbol, old, new, score, features):
        inputs, attention = split_columns(features)
        ranked = sorted(inputs, key=lambda f: -abs(f.attribution))
        drivers = ", ".join(f"{f.name} ({f.attribution:+.3g})" for f in ranked[:3])
        tail = attention_phrase(attention)
        return (f"{action_phrase(symbol, old, new)}: {lead_phrase(inputs, new > old)} pushed the "
                f"{self._forecast_name()} to {score:+.2f}σ; top drivers (integrated gradients) {drivers}"
                f"{'; ' + tail if tail else ''}.")

    @classmethod
    def render(cls, symbol, old, new, features):
        return render_sequence(symbol, old, new, features)
