"""The model contract: what every competitor of the arena implements, and what its callers may use.

A model sees bars chunk by chunk, in time order, and never a bar from the future (the
market-data actor is the only clock). Its public lifecycle, in the manner of qlib's
``fit``/``predict``, with freqtrade's optional hooks and their safe defaults:

- ``min_history(params)``: the fewest warm-up bars before the first decision, answered by the
  parameters alone (``titan_ray.models.params``), so a config is checked without the model's code;
- ``fit(history)``: train on a window of past bars (walk-forward); rule models need nothing;
- ``observe(bars)``: warm-up bars, seen but not traded;
- ``decide(bars)``: the template every model runs on a chunk: target weights for every timestamp
  and symbol, and for each cell whose weight changed an explanation row with its sentence
  (written here, or by the model class's ``write_sentences`` when the batch is read: ``RowSentences``;
  either way reading a run's explanations needs no model instance);
- ``explain(bars)``: Serve's entry point: the decision at the last bar of a window, from a fresh
  trading state, and why, for every symbol (``explain_rows``: from one feature row per symbol,
  for models whose ``inputs()`` allow it). The model itself is left as it was.

Behind them, subclasses implement small hooks:

- ``_weights(bars)`` → (weights (T, S), named indicator arrays (T, S)); it carries its own state
  across chunks so that results do not depend on the chunk size;
- ``_explain(rows, cols, old, new, info, bars)`` → ``Reasons`` for the given cells (vectorised):
  the features that drove each, with values and attributions;
- ``render(symbol, old, new, features)`` → the sentence a trader reads for one decision;
- optional: ``_pieces(bars)`` (the parts of a chunk to decide in turn, and what must happen before
  each: a learned model fits before its first decision), ``_sentence`` (a sentence that names the
  model's score), ``_fresh(symbols)`` (a fresh copy that keeps what was trained).

Persistence is declared apart, as the ``Persistent`` protocol the registry stores and loads.

Stacking (``Stacker``, a meta-model over other arena models): a model whose decisions another
model reads keeps them (``record_signals``), and ``signals(start, stop, oof)`` gives its
out-of-sample target weights over any bars it has seen: what it decided there, and over bars it
only observed, what it would have decided without having learned from them (a rule model: the
weights it computed while observing; a model that fitted on them: out-of-fold weights, ``OutOfFold``;
NaN where it has none).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, final, runtime_checkable

import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions, ExplanationBatch, Feature, SentenceWriter
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.models.params import ModelParams


@dataclass(frozen=True)
class Reasons:
    """Why some cells' weights are what they are: one row per cell, k named inputs each."""

    names: Sequence[str]
    values: np.ndarray  # (n, k) the inputs' values (what a trader sees)
    attributions: np.ndarray  # (n, k) each input's contribution, in the method's units
    base: np.ndarray | float  # (n,) or one value: the output with no input's contribution
    # (n,) |attributions summed + base - model output|, where the method is additive; None = not defined
    gap: np.ndarray | None = None
    # (n,) the model's signal behind each cell, for models whose sentences name it; None = the
    # attributions summed (a rule model's distance past its threshold)
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class Inputs:
    """What one decision reads, for callers that feed a model outside the arena (Serve).

    The defaults describe a model that reads bars only. A model that reads engineered features
    names them, with the bars they need before their first defined row (``lookback``) and the
    feature rows one decision reads (``context``).
    """

    features: tuple[str, ...] = ()
    lookback: int = 0
    context: int = 1

    @property
    def accepts_rows(self) -> bool:
        """Whether one feature row per symbol is enough to decide (``explain_rows``)."""
        return bool(self.features) and self.context == 1


@dataclass(frozen=True)
class Prediction:
    """A model's decision at the last of some bars, for every symbol, and why (what Serve answers)."""

    symbols: tuple[str, ...]
    weights: np.ndarray  # (T, S) target weights over the bars from a fresh state; the decision: the last row
    feature_names: tuple[str, ...]
    values: np.ndarray  # (S, k)
    attributions: np.ndarray  # (S, k)
    base_value: np.ndarray  # (S,)
    score: np.ndarray  # (S,) the model's signal at the last bar
    sentences: tuple[str | None, ...]  # (S,) why the weight changed at the last bar; None where it did not

    @property
    def target(self) -> np.ndarray:
        return self.weights[-1]

    @property
    def previous(self) -> np.ndarray:
        """The weights before the last bar (flat before the first)."""
        return self.weights[-2] if len(self.weights) > 1 else np.zeros(len(self.symbols))

    def features(self, s: int) -> tuple[Feature, ...]:
        return _features(self.feature_names, self.values[s], self.attributions[s])


@runtime_checkable
class Persistent(Protocol):
    """A model whose trained state the registry stores and loads back (learned models, PPO policies).

    ``save_artifacts(folder)`` writes everything a fresh instance needs to trade without fitting,
    ``load_artifacts(folder)`` reads it back; the names of ``features`` (the engine the model
    reads, None before it has one), ``training_window`` and ``metrics`` go into the metadata.
    """

    features: FeatureEngine | None
    training_window: dict[str, Any]
    metrics: dict[str, float]

    def save_artifacts(self, folder: Path) -> None: ...

    def load_artifacts(self, folder: Path) -> None: ...


@dataclass(frozen=True)
class OutOfFold:
    """How a model that fitted on the bars it observed makes out-of-sample signals over them: purged
    K-fold (``ml/validation.py``), each fold refitted without the test block, the rows whose label
    window touches it, and the embargoed rows after it: ``embargo`` bars (below 1: a share of the
    window), and at least the model's own label horizon and the reader's (``horizon``), so that no
    training label overlaps the reader's label of a test row."""

    folds: int = 3
    embargo: float = 0.0
    horizon: int = 0


# (start, stop, oof) -> each input model's ``signals`` over global bars [start, stop): (T, S), NaN unknown
SignalSource = Callable[[int, int, OutOfFold], Mapping[str, np.ndarray]]


@runtime_checkable
class Stacker(Protocol):
    """A meta-model whose inputs are other arena models' decisions (``stacking`` with ``params.inputs``).

    ``feed(start, stop, decisions)`` hands it its inputs' decisions on the bars [start, stop) it
    decides next (None: an input left out of them); ``attach(source)`` says where to read their
    ``signals`` on bars it was not fed (the warm-up bars it fits on, the history a restarted actor
    replays).
    """

    stacked: tuple[str, ...]

    def attach(self, source: SignalSource) -> None: ...

    def feed(self, start: int, stop: int, decisions: Mapping[str, Any]) -> None: ...


def fed_weights(model: str, reads: tuple[str, ...], verb: str, n_symbols: int, start: int, stop: int,
                decisions: Mapping[str, Any]) -> dict[str, np.ndarray | None]:
    """A ``Stacker``'s ``feed``, checked: each input's weights (T, S) on bars [start, stop) from its
    ``Decisions`` (or plain weights), None for an input left out; a ValueError names what does not fit."""
    if set(decisions) != set(reads):
        raise ValueError(f"model {model!r} {verb} {list(reads)}; it was fed {sorted(decisions)}")
    fed: dict[str, np.ndarray | None] = {}
    for name in reads:
        d = decisions[name]
        if d is None:
            fed[name] = None
            continue
        weights = np.asarray(getattr(d, "weights", d), dtype=np.float64)
        if getattr(d, "start", start) != start or weights.shape != (stop - start, n_symbols):
            raise ValueError(f"model {model!r} was fed {name}'s decisions on {weights.shape[0]} bars from "
                             f"bar {getattr(d, 'start', start)}, for bars [{start}, {stop}) of {n_symbols} symbols")
        fed[name] = weights
    return fed


class _SignalLog:
    """A model's target weights over consecutive bars, from global bar ``first`` on."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.stop: int | None = None
        self._parts: list[np.ndarray] = []

    def add(self, start: int, weights: np.ndarray) -> None:
        if self.stop != start:  # the first rows, or a model that skipped bars: keep the latest run only
            self.first, self._parts = start, []
        self._parts.append(np.array(weights, dtype=np.float64))
        self.stop = start + len(weights)

    def window(self, start: int, stop: int, n_symbols: int) -> np.ndarray:
        out = np.full((stop - start, n_symbols), np.nan)
        if self.first is None or self.stop is None:
            return out
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        lo, hi = max(start, self.first), min(stop, self.stop)
        if hi > lo:
            out[lo - start : hi - start] = self._parts[0][lo - self.first : hi - self.first]
        return out


class TradingModel(ABC):
    kind: ClassVar[str]
    method: ClassVar[str] = "rule"
    long_only: ClassVar[bool] = True
    Params: ClassVar[type[ModelParams]] = ModelParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        self.name = name
        self.params = self.Params.model_validate(params)
        self.symbols = tuple(symbols)
        self.seed = seed
        self._sent = np.zeros(len(self.symbols))  # last weights sent to the ledger
        self._log: _SignalLog | None = None  # the weights it computed, kept while a meta-model reads them

    @classmethod
    def min_history(cls, params: dict[str, Any]) -> int:
        """Fewest warm-up bars before the first decision with ``params`` (0 unless the model fits on them)."""
        return cls.Params.model_validate(params).min_history()

    def default_weight(self) -> float:
        """Weight of one long position when the model does not set one: an equal share."""
        return 1.0 / len(self.symbols)

    def inputs(self) -> Inputs:
        """What one decision reads: bars only, unless the model says otherwise."""
        return Inputs()

    def account(self) -> dict[str, Any] | None:
        """Hook: what the model has to report at the end of a run beside its trades, or None (the default).
        An LLM's: ``{"leaderboard": {key: value}, ...}``, the keys added to its leaderboard row, and its
        request log (``calls``), written to ``llm_calls.json``."""
        return None

    def fit(self, history: BarBatch) -> None:
        """Train on a window of past bars (walk-forward). Rule-based models need nothing."""

    def observe(self, bars: BarBatch) -> None:
        """Warm-up: update state on bars that are not traded."""
        weights, _ = self._weights(bars)
        if self._log is not None:  # a rule model learns nothing here: what it computed is out of sample
            self._log.add(bars.start, weights)

    @final
    def decide(self, bars: BarBatch) -> Decisions:
        """Target weights for every bar and symbol of the chunk, and why each changed weight changed."""
        decided = [self._decide_piece(piece) for piece in self._pieces(bars)]
        if len(decided) == 1:
            out = decided[0]
        else:
            out = Decisions(model=self.name, start=bars.start, weights=np.vstack([d.weights for d in decided]),
                            explanations=ExplanationBatch.concat([d.explanations for d in decided]))
        if self._log is not None:
            self._log.add(bars.start, out.weights)
        return out

    def record_signals(self) -> None:
        """Keep this model's target weights from now on, for the meta-models that stack it (``signals``);
        call it before the model sees its first bar."""
        if self._log is None:
            self._log = _SignalLog()

    def signals(self, start: int, stop: int, oof: OutOfFold = OutOfFold()) -> np.ndarray:
        """(stop - start, S) out-of-sample target weights over global bars [start, stop): what the model
        decided there; over bars it only observed, the weights it computed (a rule model) or out-of-fold
        weights (a model that fitted on them, ``oof``); NaN where it has none."""
        if self._log is None:
            raise RuntimeError(f"model {self.name!r} keeps no signals: call record_signals() before it sees bars")
        out = self._log.window(start, stop, len(self.symbols))
        first = self._log.first if self._log.first is not None else stop
        if start < first:  # bars before the first it kept: the model's own out-of-sample account, if any
            early = self._warmup_signals(start, min(first, stop), oof)
            out[: len(early)] = early
        return out

    def explain(self, bars: BarBatch) -> Prediction:
        """The decision at the last of ``bars`` (any symbols) from a fresh trading state, and why, for
        every symbol: what the arena would have decided had the model started on these bars."""
        model = self._fresh(bars.symbols)
        weights, info = model._weights(bars)
        weights = np.asarray(weights, dtype=np.float64)
        n_t, n_s = weights.shape
        old = weights[-2] if n_t > 1 else np.zeros(n_s)
        reasons = model._explain(np.full(n_s, n_t - 1), np.arange(n_s), old, weights[-1], info, bars)
        return model._prediction(bars.symbols, weights, reasons)

    def explain_rows(self, symbols: tuple[str, ...], rows: np.ndarray) -> Prediction:
        """The decision from flat on one feature row per symbol (S, F), in ``inputs().features``
        order, and why; only for models whose ``inputs().accepts_rows``."""
        raise TypeError(f"model {self.name!r} ({self.kind}) decides from bars, not from feature rows")

    # --- the template's parts -------------------------------------------------------------------

    def _pieces(self, bars: BarBatch) -> Iterator[BarBatch]:
        """Hook: the parts of a chunk to decide one after the other, each yielded once whatever must
        come before it is done (a learned model fits before its first decision and refits at its
        refit points). Default: the chunk in one piece."""
        yield bars

    def _decide_piece(self, bars: BarBatch) -> Decisions:
        weights, info = self._weights(bars)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        prev = np.vstack([self._sent[None, :], weights[:-1]])
        rows, cols = np.nonzero(weights != prev)
        self._sent = weights[-1].copy()
        if not len(rows):
            return Decisions(model=self.name, start=bars.start, weights=weights)
        old, new = prev[rows, cols], weights[rows, cols]
        reasons = self._explain(rows, cols, old, new, info, bars)
        names = tuple(reasons.names)
        values = np.asarray(reasons.values, dtype=np.float64).reshape(len(rows), len(names))
        attributions = np.asarray(reasons.attributions, dtype=np.float64).reshape(len(rows), len(names))
        scores = np.full(len(rows), math.nan) if reasons.scores is None else reasons.scores
        writer = self.sentence_writer()
        sentences = None if writer is not None else tuple(
            self._sentence(self.symbols[int(c)], float(o), float(n), _features(names, v, a), float(sc))
            for c, o, n, v, a, sc in zip(cols, old, new, values, attributions, scores, strict=True)
        )
        batch = ExplanationBatch(
            model=self.name,
            kind=self.kind,
            method=self.method,
            bar=(bars.start + rows).astype(np.int64),
            symbol=cols.astype(np.int64),
            timestamp=bars.timestamps[rows],
            old_weight=old,
            new_weight=new,
            price=bars.close[rows, cols],
            base_value=np.broadcast_to(np.asarray(reasons.base, dtype=np.float64), rows.shape).copy(),
            feature_names=names,
            values=values,
            attributions=attributions,
            sentences=sentences,
            gap=reasons.gap,
            writer=writer,
        )
        return Decisions(model=self.name, start=bars.start, weights=weights, explanations=batch)

    def _warmup_signals(self, start: int, stop: int, oof: OutOfFold) -> np.ndarray:
        """Hook: out-of-sample weights (stop - start, S) over observed bars it kept no weights for (NaN:
        none; a learned model gives out-of-fold weights over the bars it first fitted on)."""
        return np.full((stop - start, len(self.symbols)), np.nan)

    def _fresh(self, symbols: Sequence[str]) -> TradingModel:
        """Hook: a model like this one (name, params, seed, what it was trained on) in a fresh
        trading state, for ``symbols``. Default: built again from its params."""
        return type(self)(self.name, self.params.model_dump(), tuple(symbols), seed=self.seed)

    def _prediction(self, symbols: tuple[str, ...], weights: np.ndarray, reasons: Reasons) -> Prediction:
        """A ``Prediction`` of the last row of ``weights`` (T, S), from the reasons of its S cells."""
        n_s, names = len(symbols), tuple(reasons.names)
        values = np.asarray(reasons.values, dtype=np.float64).reshape(n_s, len(names))
        attributions = np.asarray(reasons.attributions, dtype=np.float64).reshape(n_s, len(names))
        base = np.broadcast_to(np.asarray(reasons.base, dtype=np.float64), (n_s,))
        if reasons.scores is None:
            scores = np.nansum(attributions, axis=1) + np.where(np.isfinite(base), base, 0.0)
        else:
            scores = np.asarray(reasons.scores, dtype=np.float64)
        old = weights[-2] if len(weights) > 1 else np.zeros(n_s)
        rows = zip(symbols, old, weights[-1], values, attributions, scores, strict=True)
        sentences = tuple(
            self._sentence(sym, float(o), float(n), _features(names, v, a), float(sc)) if float(o) != float(n)
            else None
            for sym, o, n, v, a, sc in rows
        )
        return Prediction(symbols=tuple(symbols), weights=weights, feature_names=names, values=values,
                          attributions=attributions, base_value=base, score=scores, sentences=sentences)

    def sentence_writer(self) -> SentenceWriter | None:
        """Hook: None (the default) to write each decision's sentence as it is decided (``_sentence``),
        or a function that writes a batch's sentences from the rows' numbers alone, pickled by
        reference (``RowSentences``): the sentences are then written when read, off the replay."""
        return None

    def _sentence(self, symbol: str, old: float, new: float, features: tuple[Feature, ...],
                  score: float) -> str:
        """Hook: the sentence of one decision; ``score`` is the model's signal (NaN for rule models)."""
        return self.render(symbol, old, new, features)

    # --- what every model implements ----------------------------------------------------------------

    @abstractmethod
    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Target weights (T, S) for the chunk, and the indicators behind them."""

    @abstractmethod
    def _explain(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        old: np.ndarray,
        new: np.ndarray,
        info: dict[str, np.ndarray],
        bars: BarBatch,
    ) -> Reasons:
        """Why the cells (rows, cols) of the chunk went from ``old`` to ``new``."""

    @classmethod
    @abstractmethod
    def render(cls, symbol: str, old: float, new: float, features: tuple[Feature, ...]) -> str:
        """The sentence a trader reads for one decision."""


class RowSentences:
    """For a model whose sentence is a function of the decision's row alone (symbol, old and new
    weight, feature names and values): one ``write_sentences`` writes any number of them, ``render``
    is that function on one row, and ``decide`` leaves the writing to whoever reads the batch, so a
    rule model's replay does no string work. Put it before ``TradingModel`` in the bases."""

    @classmethod
    @abstractmethod
    def write_sentences(cls, symbols: Sequence[str], old: Sequence[float], new: Sequence[float],
                        names: tuple[str, ...], values: Sequence[Sequence[float]]) -> list[str]:
        """The sentences of the rows (``values``: one list of feature values per row, in ``names`` order)."""

    @classmethod
    def render(cls, symbol: str, old: float, new: float, features: tuple[Feature, ...]) -> str:
        return cls.write_sentences([symbol], [old], [new], tuple(f.name for f in features),
                                   [[f.value for f in features]])[0]

    def sentence_writer(self) -> SentenceWriter:
        return type(self).write_sentences


def _features(names: Sequence[str], values: np.ndarray, attributions: np.ndarray) -> tuple[Feature, ...]:
    """One row's inputs as ``Feature``s."""
    return tuple(Feature(n, float(v), float(a)) for n, v, a in zip(names, values, attributions, strict=True))


def hold_forward(events: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Forward-fill the non-NaN cells of ``events`` (T, S) down the rows, from ``start`` (S,)."""
    filled = np.vstack([start[None, :], events])
    idx = np.where(~np.isnan(filled), np.arange(len(filled))[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(filled, idx, axis=0)[1:]
