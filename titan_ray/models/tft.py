"""``tft``: a Temporal Fusion Transformer over a window of features, explained by its own weights.

The net (``nets.tft``) reads the last ``window`` feature rows of a symbol and forecasts its
``horizon``-bar label (see ``sequence`` for training, scoring and artefacts); with ``quantiles``
it forecasts those quantiles and trades on the median.

Explanation of each decision that traded, method ``variable-selection weights``:

- one column per input feature: its value at the decision bar, and as attribution its
  variable-selection weight averaged over the window with the decision bar's attention as the
  weights (sum_t attention_t x v_t,f). Each bar's selection weights sum to 1 and so do the
  attention weights, so a decision's attributions sum to 1: the share of the net's input that
  feature made up, where the net looked. They say how much a feature mattered, not which way it
  pushed (the ``base_value`` is NaN and there is no ``gap``: the weights are not additive);
- columns ``attention@t-0`` .. ``attention@t-(W-1)``: the interpretable multi-head attention of
  the decision bar over the window (the mean of the heads, which share their values), t-0 being
  the decision bar (value; attribution 0).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from titan_ray.domain.decisions import action_phrase
from titan_ray.models.learned import Attribution
from titan_ray.models.params import TftParams
from titan_ray.models.sequence import (
    SequenceModel,
    attention_phrase,
    render_sequence,
    split_columns,
)


class TftModel(SequenceModel):
    kind = "tft"
    arch = "tft"
    method = "variable-selection weights"
    Params = TftParams
    score_name: ClassVar[str] = "TFT"

    def _net_config(self, n_features: int) -> dict[str, Any]:
        p: TftParams = self.params  # type: ignore[assignment]
        return {"n_features": n_features, "hidden": p.hidden, "heads": p.heads, "dropout": p.dropout,
                "n_outputs": len(p.quantiles) if p.quantiles else 1}

    def _attribute(self, X: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Attribution:
        windows, raw = self._decision_windows(X, rows, cols)
        pred = self._net_predict(windows)
        importance = np.einsum("nw,nwf->nf", pred.attention, pred.variable_weights)
        att_names, att_values, att_attr = self._attention_columns(pred.attention)
        return Attribution(
            names=(*self.features.names, *att_names),
            values=np.hstack([raw, att_values]),
            attributions=np.hstack([importance, att_attr]),
            base=np.nan,
        )

    def sentence(self, symbol, old, new, score, features):
        inputs, attention = split_columns(features)
        top = sorted(inputs, key=lambda f: -f.attribution)[:3]
        weighted = ", ".join(f"{f.name} ({f.attribution:.0%})" for f in top)
        tail = attention_phrase(attention)
        return (f"{action_phrase(symbol, old, new)}: the {self._forecast_name()} is {score:+.2f}σ; variable "
                f"selection weighted {weighted} most{'; ' + tail if tail else ''}.")

    @classmethod
    def render(cls, symbol, old, new, features):
        return render_sequence(symbol, old, new, features)
