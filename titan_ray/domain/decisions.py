"""What a model sends to the ledger for one chunk: target weights and the reasons for changes.

Models output target weights, not orders: for each timestamp and symbol the fraction of equity to
hold (-1..1; long-only models 0..1). Every cell where a weight changes has one explanation
whose ``DecisionId`` the ledger puts on the orders and fills it causes, so that each trade can
answer "why?".

Explanations travel columnar (``ExplanationBatch``: one row per changed weight, the features as
a matrix), because a busy model changes thousands of weights a second and one object per change
would cost more than the decision itself. Each row's sentence is the model's: a learned model
writes it when it decides (it may read the model's state); a model whose sentence is a function of
the row's numbers alone (the rule baselines) names that function instead (``writer``, pickled by
reference), and the sentences are written when someone reads them, once per batch, off the
replay's path. Either way ``texts``/``record``/``records`` need no model *instance*, and a
results folder holds the sentences themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
        """The id ``text`` spells (a symbol may itself hold ':'), or None when it spells none; a
        ``ForcedId`` for ``risk:RULE:MODEL:SYMBOL:BAR``."""
        head, sep, rest = text.partition(":")
        if head == "risk" and sep:
            rule, sep, rest = rest.partition(":")
            if rule in RISK_RULES:
                did = DecisionId.parse(rest) if sep else None
                return None if did is None else ForcedId(rule, did.model, did.symbol, did.bar)
        model, sep, rest = text.partition(":")
        symbol, sep2, bar = rest.rpartition(":")
        if not (model and sep and symbol and sep2 and bar.isdigit()):
            return None
        return cls(model, symbol, int(bar))


# The risk rules that flatten a model's positions on their own (``ForcedBy`` in domain/orders.py),
# and the protective exits (``ledger.stops``) that close one position.
EXIT_RULES = ("stop_loss", "take_profit", "trailing_stop")
RISK_RULES = ("kill_switch", "circuit_breaker", "daily_loss_limit", *EXIT_RULES)


class ForcedId(DecisionId):
    """A risk rule's flattening of a model's position: ``risk:RULE:MODEL:SYMBOL:BAR``.

    No model decided it, yet it is a decision of sorts and is explained like one (method ``risk``:
    the rule, its threshold, the value that crossed it); its orders and fills carry this id.
    ``bar`` is the bar whose close tripped the rule (the kill switch: the last bar booked when it
    was turned on); the flattening fills at the next fill bar. ``rule`` is one of ``RISK_RULES``.
    ``DecisionId.parse`` reads an id that starts with ``risk:`` and a rule as forced (a model's
    own id could only look like one for a model named ``risk`` and a symbol named after a rule).
    """

    rule: str

    def __new__(cls, rule: str, model: str, symbol: str, bar: int) -> Self:  # type: ignore[override]
        if rule not in RISK_RULES:
            raise ValueError(f"unknown risk rule {rule!r}; one of {RISK_RULES}")
        self = str.__new__(cls, f"risk:{rule}:{model}:{symbol}:{bar}")
        self.rule, self.model, self.symbol, self.bar = rule, model, symbol, int(bar)
        return self

    def __getnewargs__(self) -> tuple[str, str, str, int]:  # type: ignore[override]
        return self.rule, self.model, self.symbol, self.bar


def action_phrase(symbol: str, old: float, new: float) -> str:
    """'Went long AAA (weight 0 → 0.0833)' and the like: how every decision's sentence starts."""
    if new == 0:
        verb = "Went flat"
    elif old == 0 or (old > 0) != (new > 0):
        verb = "Went long" if new > 0 else "Went short"
    else:
        verb = "Added to" if abs(new) > abs(old) else "Reduced"
    return f"{verb} {symbol} (weight {old:.4g} → {new:.4g})"


# (symbols, old weights, new weights, feature names, feature values per row) -> one sentence per row
SentenceWriter = Callable[[Sequence[str], Sequence[float], Sequence[float], tuple[str, ...],
                           Sequence[Sequence[float]]], list[str]]


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    value: float
    attribution: float  # contribution to the decision, in the method's units (0 when not defined)


@dataclass(frozen=True, slots=True)
class Explanation:
    decision_id: DecisionId  # a ForcedId for a risk rule's flattening
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
    # (n,) the sentence a trader reads, written by the model when it decided; None when ``writer``
    # writes them, or for a batch built by hand (the action alone is then shown)
    sentences: tuple[str, ...] | None = None
    # (n,) |attributions summed + base - model output| per row, where the method is additive
    # (SHAP additivity, Integrated Gradients' completeness); None = not defined (NaN)
    gap: np.ndarray | None = None
    # writes the sentences from the rows' numbers when ``sentences`` is None: a module-level
    # function or a classmethod (pickled by reference), a ``SentenceWriter``
    writer: SentenceWriter | None = None
    # the risk rule (one of RISK_RULES) whose forced flattenings these rows explain, their ids
    # ``ForcedId``s; None: the model's own decisions
    rule: str | None = None

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
        if any(b.feature_names != first.feature_names or b.model != first.model or b.rule != first.rule
               for b in batches):
            raise ValueError("explanation batches with different models, rules or feature names cannot be joined")
        if any((b.sentences is None) != (first.sentences is None) or b.writer != first.writer for b in batches):
            raise ValueError("explanation batches whose sentences are written differently cannot be joined")
        out: dict[str, Any] = {}
        for f in fields(ExplanationBatch):
            vals = [getattr(b, f.name) for b in batches]
            if f.name in ("model", "kind", "method", "feature_names", "writer", "rule"):
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
        texts = self.texts(symbols)
        return [self.record(i, symbols, texts[i]) for i in range(len(self))]

    def texts(self, symbols: tuple[str, ...], rows: slice | np.ndarray | None = None) -> list[str]:
        """The sentences of the batch (or of ``rows``): as the model wrote them, else written now by
        its ``writer``, else the bare action."""
        pick = slice(None) if rows is None else rows
        if self.sentences is not None:
            return np.asarray(self.sentences, dtype=object)[pick].tolist()
        names = np.asarray(symbols, dtype=object)[self.symbol[pick]].tolist()
        old, new = self.old_weight[pick].tolist(), self.new_weight[pick].tolist()
        if self.writer is None:
            return [action_phrase(s, o, n) for s, o, n in zip(names, old, new, strict=True)]
        return self.writer(names, old, new, self.feature_names, self.values[pick].tolist())

    def record(self, i: int, symbols: tuple[str, ...], sentence: str | None = None) -> Explanation:
        """Row ``i`` as an ``Explanation`` (``sentence``: its text, when the caller has it)."""
        sym = symbols[int(self.symbol[i])]
        features = tuple(
            Feature(n, float(v), float(a))
            for n, v, a in zip(self.feature_names, self.values[i], self.attributions[i], strict=True)
        )
        old, new = float(self.old_weight[i]), float(self.new_weight[i])
        if sentence is None:
            sentence = self.texts(symbols, np.arange(i, i + 1))[0]
        bar = int(self.bar[i])
        gap = math.nan if self.gap is None else float(self.gap[i])
        did = DecisionId(self.model, sym, bar) if self.rule is None else ForcedId(self.rule, self.model, sym, bar)
        return Explanation(did, self.model, int(self.timestamp[i]), bar, sym, old, new,
                           float(self.price[i]), self.method, float(self.base_value[i]), features, sentence, gap)


@dataclass(frozen=True, slots=True)
class Decisions:
    model: str
    start: int  # global bar index of weights[0]
    weights: np.ndarray  # (T, S) float64
    explanations: ExplanationBatch | None = None


@dataclass(frozen=True, slots=True)
class AnswerPart:
    """One model's ``Decisions`` inside an answer that holds several models' (a group of models answers a
    chunk with one object: one object to make, send and read instead of one per model, which is most
    of what a chunk costs a rule model). ``answer`` is that answer's reference (opaque here: a Ray
    ObjectRef in the arena), ``index`` the model's place in it; hashable, as a reference is."""

    answer: Any
    index: int
