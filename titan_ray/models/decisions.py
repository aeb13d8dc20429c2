"""What a model sends to the ledger for one chunk: target weights and the reasons for changes.

Models output target weights, not orders: for each timestamp and symbol the fraction of equity to
hold (-1..1; long-only models 0..1). Every cell where a weight changes has one ``Explanation``
whose ``decision_id`` the ledger puts on the orders and fills it causes, so that each trade can
answer "why?".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def decision_id(model: str, symbol: str, bar: int) -> str:
    """Stable id of a model's decision on a symbol at a global bar index (chunk-size invariant)."""
    return f"{model}:{symbol}:{bar}"


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    value: float
    attribution: float  # contribution to the decision, in the method's units (0 when not defined)


@dataclass(frozen=True, slots=True)
class Explanation:
    decision_id: str
    model: str
    timestamp: int  # ns UTC of the decision bar (the close the model saw)
    bar: int
    symbol: str
    old_weight: float
    new_weight: float
    price: float  # close of the decision bar
    method: str  # rule | shap.TreeExplainer | captum.IntegratedGradients | attention | ...
    base_value: float
    features: tuple[Feature, ...]
    sentence: str

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["features"] = [asdict(f) for f in self.features]
        return rec


@dataclass(frozen=True, slots=True)
class Decisions:
    model: str
    start: int  # global bar index of weights[0]
    weights: np.ndarray  # (T, S) float64
    explanations: tuple[Explanation, ...] = ()
