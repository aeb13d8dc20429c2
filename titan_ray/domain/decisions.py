"""What a model sends to the ledger for one chunk: target weights and the reasons for changes.

Models output target weights, not orders: for each timestamp and symbol the fraction of equity to
hold (-1..1; long-only models 0..1). Every cell where a weight changes has one explanation
whose ``DecisionId`` the ledger puts on the orders and fills it causes, so that each trade can
answer "why?".

Explanations travel columnar (``ExplanationBatch``: one row per changed weight, the features as
a matrix), because a busy model changes thousands of weights a second and one object per change
would cost more than the decision itself. The model writes each row's sentence when it decides,
so ``record``/``records`` turn rows into ``Explanation`` objects without any model's code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Self

import numpy as np


class DecisionId(str):
    """A model's decision on a symbol at a global bar index: ``MODEL:SYMBOL:BAR``.

    Built from its typed parts (``model``, ``symbol``, ``bar``), never parsed back inside the
    arena; it *is* its text (a ``str``), so it is stored in Parquet, sent as JSON and compared with
    a plain string as that text. ``parse`` reads one at the edge (an HTTP path, a results file).
    Chunk-size invariant: the bar index is global to the replay.
    """

    model: str
    symbol: str
    bar: int

    def __new__(cls, model: str, symbol: str, bar: int) -> Self:
        self = super().__new__(cls, f"{model}:{symbol}:{bar}")
        self.model, self.symbol, self.bar = model, symbol, int(bar)
        return self

    def __getnewargs__(self) -> tuple[str, str, int]:  # type: ignore[override]
        return self.model, self.symbol, self.bar

    @classmethod
    def parse(cls, text: str) -> DecisionId | None:
        """The id ``text`` spells (a symbol may itself hold ':'), or None when it spells none."""
        model, sep, rest = text.partition(":")
        symbol, sep2, bar = rest.rpartition(":")
        if not (model and sep and symbol and sep2 and bar.isdigit()):
            return None
        return cls(model, symbol, int(bar))


def action_phrase(symbol: str, old: float, new: float) -> str:
    """'Went long AAA (weight 0 → 0.0833)' and the like: how every decision's sentence starts."""
    if new == 0:
        verb = "Went flat"
    elif old == 0 or (old > 0) != (new > 0):
        verb = "Went long" if new > 0 else "Went short"
    else:
        verb = "Added to" if abs(new) > abs(old) else "Reduced"
    return f"{verb} {symbol} (weight {old:.4g} → {new:.4g})"


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    value: float
    attribution: float  # contribution to the decision, in the method's units (0 when not defined)


@dataclass(frozen=True, slots=True)
class Explanation:
    decision_id: DecisionId
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
    gap: float = math.nan  # |sum of attributions + base - model output| (SHAP additivity, IG completeness)

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["features"] = [asdict(f) for f in self.features]
        return rec


@dataclass(frozen=True)
class ExplanationBatch:
    """The explanations of one chunk, one row per changed weight."""

    model: str
    kind: str  # the model kind that decided
    method: str
    bar: np.ndarray  # (n,) int64 global bar index
    symbol: np.ndarray  # (n,) int64 index into the symbols
    timestamp: np.ndarray  # (n,) int64 ns UTC
    old_weight: np.ndarray  # (n,)
    new_weight: np.ndarray
    price: np.ndarray
    base_value: np.ndarray
    feature_names: tuple[str, ...]
    values: np.ndarray  # (n, k)
    attributions: np.ndarray  # (n, k)
    # (n,) the sentence a trader reads, written by the model when it decided (reading a run never
    # needs the model's code); None only for a batch built by hand: the action alone is then shown
    sentences: tuple[str, ...] | None = None
    # (n,) |attributions summed + base - model output| per row, where the method is additive
    # (SHAP additivity, Integrated Gradients' completeness); None = not defined (NaN)
    gap: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.bar)

    @staticmethod
    def concat(batches: list[ExplanationBatch]) -> ExplanationBatch | None:
        """One batch of the rows of ``batches`` (same model and features), in order; None if empty."""
        batches = [b for b in batches if b is not None and len(b)]
        if not batches:
            return None
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        if any(b.feature_names != first.feature_names or b.model != first.model for b in batches):
            raise ValueError("explanation batches with different models or feature names cannot be joined")
        out: dict[str, Any] = {}
        for f in fields(ExplanationBatch):
            vals = [getattr(b, f.name) for b in batches]
            if f.name in ("model", "kind", "method", "feature_names"):
                out[f.name] = vals[0]
            elif f.name == "sentences":
                out[f.name] = None if any(v is None for v in vals) else tuple(x for v in vals for x in v)
            elif f.name == "gap":
                out[f.name] = (None if all(v is None for v in vals) else np.concatenate(
                    [np.full(len(b), np.nan) if v is None else v for b, v in zip(batches, vals, strict=True)]))
            else:
                out[f.name] = np.concatenate(vals)
        return ExplanationBatch(**out)

    def records(self, symbols: tuple[str, ...]) -> list[Explanation]:
        return [self.record(i, symbols) for i in range(len(self))]

    def record(self, i: int, symbols: tuple[str, ...]) -> Explanation:
        """Row ``i`` as an ``Explanation``."""
        sym = symbols[int(self.symbol[i])]
        features = tuple(
            Feature(n, float(v), float(a))
            for n, v, a in zip(self.feature_names, self.values[i], self.attributions[i], strict=True)
        )
        old, new = float(self.old_weight[i]), float(self.new_weight[i])
        sentence = self.sentences[i] if self.sentences is not None else action_phrase(sym, old, new)
        bar = int(self.bar[i])
        gap = math.nan if self.gap is None else float(self.gap[i])
        return Explanation(DecisionId(self.model, sym, bar), self.model, int(self.timestamp[i]), bar, sym, old, new,
                           float(self.price[i]), self.method, float(self.base_value[i]), features, sentence, gap)


@dataclass(frozen=True, slots=True)
class Decisions:
    model: str
    start: int  # global bar index of weights[0]
    weights: np.ndarray  # (T, S) float64
    explanations: ExplanationBatch | None = None
