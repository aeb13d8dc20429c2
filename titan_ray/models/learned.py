"""LearnedModel: the base of every trained competitor (LightGBM, LSTM, TFT, stacking).

Lifecycle, walk-forward with no look-ahead:

1. Warm-up (``observe``): each chunk goes through the causal ``FeatureStream``; the feature rows
   and closes are buffered.
2. First ``decide`` (in ``_pieces``, before its first piece): the model fits on the buffer (the
   ``replay.warmup_bars`` bars before trading; labels need ``horizon`` bars after their row, so the
   last ``horizon`` rows have none and are not trained on). A model loaded from the registry
   (``load_artifacts``) skips this fit.
3. Trading: each chunk's feature rows are scored, scores become target weights, and each changed
   weight is explained (``_attribute``). With ``refit_every`` the model refits every that many
   bars on the bars before the refit point (the last ``train_window`` of them, or all); the chunk
   is decided in pieces split at refit points, so the result does not depend on the chunk size.

Stacked by a meta-model (``record_signals``): the bars a model first fitted on have no
out-of-sample decisions, so ``signals`` over them are out of fold (``_out_of_fold``): purged
K-fold over that window (``ml/validation.py``); each fold refits a fresh copy on the other rows,
whose labels are kept only where their window stays clear of the test block (purge) and of the
``embargo`` bars after it, scores the test block, standardises the scores with the fold model's
own training rows, and the usual score-to-weight rule runs over the whole window from flat. The
copy is fitted on the labels alone: features of the test rows (never their labels) are the
inputs it scores, as in the arena. Computed when first asked for, once per ``OutOfFold``.

Serve (``explain``, ``explain_rows``): the fitted model scores a window's features in bulk (or
one feature row per symbol) and runs the same score-to-weight rule from flat, leaving its own
trading state as it was; one fitted model answers for any symbols.

Scores to weights: a score is standardised with the centre and scale of the model's own scores
on its training rows (z = (score - centre) / scale). A flat symbol goes long when z > ``entry``
(short when z < -entry, if ``allow_short``) and leaves when z falls back below ``exit`` (hysteresis,
so a score hovering at a threshold does not churn), each position ``weight`` of equity (default
1/S). ``decide_every`` re-evaluates positions only on bars whose global index is a multiple of it.

Subclasses implement five hooks (signatures below):
``_fit(X, y) -> metrics``, ``_predict(X) -> scores``, ``_attribute(X, rows, cols) -> Attribution``,
``_save(folder)``, ``_load(folder)``; and set ``kind``, ``method``, ``Params`` (a subclass of
``LearnedParams``), ``score_name`` and, for sequence models, ``context``.
"""

from __future__ import annotations

import itertools
import json
import math
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Feature, action_phrase
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.ml.labels import forward_returns, triple_barrier
from titan_ray.ml.validation import purged_kfold
from titan_ray.models.base import Inputs, OutOfFold, Prediction, Reasons, TradingModel
from titan_ray.models.params import LearnedParams, ModelParams

ARTIFACT_FILE = "learned.json"


@dataclass(frozen=True)
class Attribution:
    """Why a model scored some cells as it did: one row per cell, k named inputs each.

    ``base`` + the sum of a row's ``attributions`` should equal ``output`` (the model's output in the
    attribution's units: SHAP's raw margin, the network's output for Integrated Gradients); the
    base class records |sum + base - output| as the explanation's ``gap``. Leave ``output`` None
    for a method that is not additive (attention weights): the gap is NaN then, unless ``gap``
    gives it directly (Integrated Gradients' completeness gap, say).
    """

    names: tuple[str, ...]
    values: np.ndarray  # (n, k) the inputs' values (what a trader sees)
    attributions: np.ndarray  # (n, k)
    base: np.ndarray | float  # (n,) or one value
    output: np.ndarray | None = None  # (n,)
    gap: np.ndarray | None = None  # (n,)

    def gaps(self) -> np.ndarray:
        n = len(self.values)
        if self.gap is not None:
            return np.asarray(self.gap, dtype=np.float64).reshape(n)
        if self.output is None:
            return np.full(n, np.nan)
        total = np.asarray(self.attributions, dtype=np.float64).sum(axis=1) + np.broadcast_to(self.base, (n,))
        return np.abs(total - np.asarray(self.output, dtype=np.float64))


@dataclass
class _Buffer:
    """Feature rows and closes of the bars seen, for (re)fitting; at most ``limit`` rows."""

    features: list[np.ndarray]
    close: list[np.ndarray]
    rows: int = 0

    def add(self, feats: np.ndarray, close: np.ndarray, limit: int | None) -> None:
        self.features.append(feats)
        self.close.append(np.asarray(close))
        self.rows += len(feats)
        if limit is not None and self.rows > limit:
            x, c = np.concatenate(self.features)[-limit:], np.concatenate(self.close)[-limit:]
            self.features, self.close, self.rows = [x], [c], limit

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.features), np.concatenate(self.close)


class LearnedModel(TradingModel):
    method: ClassVar[str] = "learned"
    long_only: ClassVar[bool] = True
    Params: ClassVar[type[ModelParams]] = LearnedParams
    score_name: ClassVar[str] = "score"  # how sentences name the score ("LightGBM P(up)")
    context: int = 1  # feature rows one prediction looks at (a sequence model's window)

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        p: LearnedParams = self.params  # type: ignore[assignment]
        self.long_only = not p.allow_short
        self.features = FeatureEngine(p.features)
        self._stream = self.features.stream()
        self._buffer = _Buffer([], [])
        self._ctx: np.ndarray | None = None  # the last context - 1 feature rows (NaN before any)
        self._position = np.zeros(len(self.symbols))  # -1 / 0 / +1 per symbol
        self._size = p.weight or self.default_weight()
        self.fitted = False
        self.center, self.scale = 0.0, 1.0
        self.metrics: dict[str, float] = {}
        self.training_window: dict[str, Any] = {}
        self._first_bar: int | None = None  # global bar of the first decision
        self._next_bar = 0  # global index of the bar after the last it saw
        # while a meta-model stacks this one: the first fit's window (start bar, X, close) and its
        # out-of-fold weights per OutOfFold asked for
        self._first_window: tuple[int, np.ndarray, np.ndarray] | None = None
        self._oof: dict[OutOfFold, np.ndarray] = {}

    # --- subclass hooks -----------------------------------------------------------------------

    @abstractmethod
    def _fit(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Train on features X (T, S, F) and labels y (T, S), both NaN where unknown; return
        validation metrics (name -> float) for the registry."""

    @abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Scores (n - context + 1, S) for the rows of X (n, S, F) that have ``context`` rows up
        to them; NaN where a row's features are incomplete."""

    @abstractmethod
    def _attribute(self, X: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Attribution:
        """Explain the scores of cells (rows[i], cols[i]); row r of the chunk is X[r + context - 1]."""

    @abstractmethod
    def _save(self, folder: Path) -> None:
        """Write the fitted model's own files into ``folder`` (it exists)."""

    @abstractmethod
    def _load(self, folder: Path) -> None:
        """Read what ``_save`` wrote."""

    # --- training -----------------------------------------------------------------------------

    def labels(self, close: np.ndarray) -> np.ndarray:
        p: LearnedParams = self.params  # type: ignore[assignment]
        if p.label == "triple_barrier":
            return triple_barrier(close, p.horizon, width=p.barrier_width).label
        return forward_returns(close, p.horizon, demean=p.demean)

    def fit(self, history: BarBatch) -> None:
        """Fit on a window of past bars (features in bulk from a fresh stream)."""
        X = self.features.transform(history)
        self._fit_arrays(X, history.close, history.start, history.stop)

    def _fit_arrays(self, X: np.ndarray, close: np.ndarray, start: int, stop: int) -> None:
        y = self.labels(close)
        usable = int((np.isfinite(X).all(axis=2) & np.isfinite(y)).sum())
        need = self.params.min_history()
        if len(X) < need or usable < 50:
            raise ValueError(
                f"model {self.name!r}: {len(X)} bars ({usable} labelled feature rows) in [{start}, {stop}) are "
                f"too few to fit on; give it more history: raise replay.warmup_bars (at least {need})")
        self.metrics = {k: float(v) for k, v in self._fit(X, y).items()}
        scores = self._predict(X)
        finite = scores[np.isfinite(scores)]
        self.center = float(np.median(finite)) if len(finite) else 0.0
        sd = float(np.std(finite)) if len(finite) > 1 else 0.0
        self.scale = sd if sd > 0 else 1.0
        self.training_window = {"start_bar": int(start), "stop_bar": int(stop), "rows": len(X),
                                "labelled_cells": usable}
        self.fitted = True

    # --- trading ------------------------------------------------------------------------------

    def observe(self, bars: BarBatch) -> None:
        feats = self._stream.update(bars)
        self._keep(feats, bars)

    def _rows(self, bars: BarBatch) -> np.ndarray:
        """Hook: the input rows (T, S, F) of a chunk to decide: its engineered features (the stream)."""
        return self._stream.update(bars)

    def _keep(self, feats: np.ndarray, bars: BarBatch) -> None:
        p: LearnedParams = self.params  # type: ignore[assignment]
        self._next_bar = bars.stop
        if not self.fitted or p.refit_every is not None:
            self._buffer.add(feats, bars.close, p.train_window)
        if self.context > 1:
            self._ctx = np.concatenate([self._context_rows(), feats])[-(self.context - 1):]

    def _context_rows(self) -> np.ndarray:
        if self._ctx is None:
            self._ctx = np.full((self.context - 1, len(self.symbols), len(self.features.names)), np.nan)
        return self._ctx

    def _pieces(self, bars: BarBatch) -> Iterator[BarBatch]:
        """Fit before the first decision; with ``refit_every``, refit at each refit point of the chunk
        and decide the piece after it on the refitted model."""
        p: LearnedParams = self.params  # type: ignore[assignment]
        if self._first_bar is None:
            self._first_bar = bars.start
        if not self.fitted:
            self._refit(bars.start)
        if p.refit_every is None:
            yield bars
            return
        first, every = self._first_bar, p.refit_every
        cuts = [i for i in range(len(bars)) if bars.start + i > first and (bars.start + i - first) % every == 0]
        edges = sorted({0, *cuts, len(bars)})
        for lo, hi in itertools.pairwise(edges):
            if lo in cuts:
                self._refit(bars.start + lo)
            yield bars.slice(lo, hi)

    def _refit(self, bar: int) -> None:
        if self._buffer.rows == 0:
            raise ValueError(f"model {self.name!r} has no bars to fit on before bar {bar}; set replay.warmup_bars "
                             f"(at least {self.params.min_history()})")
        X, close = self._buffer.arrays()
        if self._log is not None and not self.fitted:  # a meta-model will ask for out-of-fold signals here
            self._first_window = (bar - len(X), X, close)
        self._fit_arrays(X, close, bar - len(X), bar)
        if self.params.refit_every is None:  # type: ignore[attr-defined]
            self._buffer = _Buffer([], [])

    def score(self, X: np.ndarray) -> np.ndarray:
        """Scores of feature rows X (n, S, F): (n - context + 1, S)."""
        if not self.fitted:
            raise RuntimeError(f"model {self.name!r} is not fitted: call fit(history) or load_artifacts(folder)")
        return self._predict(X)

    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        feats = self._rows(bars)
        X = np.concatenate([self._context_rows(), feats]) if self.context > 1 else feats
        self._keep(feats, bars)
        scores = self.score(X)
        z = (scores - self.center) / self.scale
        weights = self._hysteresis(z, bars.start)
        return weights, {"X": X, "score": scores, "z": z}

    def _hysteresis(self, z: np.ndarray, start: int) -> np.ndarray:
        """Weights after each row of standardised scores ``z`` (T, S) from ``self._position``, which
        moves to the last row's positions (``positions`` has the rule)."""
        out, self._position = positions(z, start, self._position, self.params)  # type: ignore[arg-type]
        return out * self._size

    # --- out-of-sample signals for a meta-model ---------------------------------------------------

    def _warmup_signals(self, start: int, stop: int, oof: OutOfFold) -> np.ndarray:
        out = np.full((stop - start, len(self.symbols)), np.nan)
        if not self.fitted and self._buffer.rows:
            # asked before its first decision (a restarted actor asked by a restarted meta-model, before
            # the arena's next chunk reaches it): the fit that decision would make, on the bars observed
            self._refit(self._next_bar)
        if self._first_window is None:  # never fitted here (loaded from the registry): nothing out of sample
            return out
        first, X, close = self._first_window
        if oof not in self._oof:
            self._oof[oof] = self._out_of_fold(X, close, first, oof)
        lo, hi = max(start, first), min(stop, first + len(X))
        if hi > lo:
            out[lo - start : hi - start] = self._oof[oof][lo - first : hi - first]
        return out

    def _out_of_fold(self, X: np.ndarray, close: np.ndarray, start: int, oof: OutOfFold) -> np.ndarray:
        """Out-of-fold target weights (T, S) over a fit window X (T, S, F) that starts at global bar ``start``;
        NaN on the rows of a fold too small to fit."""
        p: LearnedParams = self.params  # type: ignore[assignment]
        y = self.labels(close)
        n = len(X)
        z = np.full(y.shape, np.nan)
        unfitted = np.zeros(n, dtype=bool)
        embargo = math.ceil(oof.embargo * n) if 0 < oof.embargo < 1 else int(oof.embargo)
        embargo = max(embargo, p.horizon, oof.horizon)
        for split in purged_kfold(n, n_splits=oof.folds, horizon=p.horizon, embargo=embargo):
            train = np.zeros(n, dtype=bool)
            train[split.train] = True
            fold = self._fresh(self.symbols)
            try:
                fold._fit(X, np.where(train[:, None], y, np.nan))  # type: ignore[attr-defined]
            except ValueError:  # too few rows to learn from: no signal on this block
                unfitted[split.test] = True
                continue
            scores = np.full(y.shape, np.nan)
            scores[self.context - 1 :] = fold._predict(X)  # type: ignore[attr-defined]
            own = scores[train]
            own = own[np.isfinite(own)]
            center = float(np.median(own)) if len(own) else 0.0
            sd = float(np.std(own)) if len(own) > 1 else 0.0
            z[split.test] = (scores[split.test] - center) / (sd if sd > 0 else 1.0)
        weights, _ = positions(z, start, np.zeros(len(self.symbols)), p)
        weights = weights * self._size
        weights[unfitted] = np.nan
        return weights

    def _explain(self, rows, cols, old, new, info, bars):
        attr = self._attribute(info["X"], rows, cols)
        return Reasons(attr.names, attr.values, attr.attributions, attr.base, gap=attr.gaps(),
                       scores=info["score"][rows, cols])

    # --- Serve: decisions from flat, the model's own state untouched ------------------------------

    def inputs(self) -> Inputs:
        return Inputs(self.features.names, self.features.lookback, self.context)

    def explain(self, bars: BarBatch) -> Prediction:
        """Features of the window in bulk, their scores, the score-to-weight rule from flat (the first
        ``context - 1`` bars have no score and stay flat), and the last bar explained."""
        X = self.features.transform(bars)
        if len(X) < self.context:
            raise ValueError(f"model {self.name!r} looks at {self.context} feature rows; "
                             f"{len(X)} bars are too few")
        scores = self.score(X)
        weights = np.vstack([np.zeros((self.context - 1, len(bars.symbols))), self._from_flat(scores)])
        last = len(scores) - 1
        return self._scored(bars.symbols, weights, X, np.full(len(bars.symbols), last), scores[last])

    def explain_rows(self, symbols: tuple[str, ...], rows: np.ndarray) -> Prediction:
        if not self.inputs().accepts_rows:
            return super().explain_rows(symbols, rows)
        X = np.asarray(rows, dtype=np.float64)[None, :, :]
        scores = self.score(X)
        first = np.zeros(len(symbols), dtype=np.int64)
        return self._scored(symbols, self._from_flat(scores), X, first, scores[-1])

    def _from_flat(self, scores: np.ndarray) -> np.ndarray:
        """Weights (n, S) of the score-to-weight rule over ``scores`` from flat, sized for their S symbols."""
        p: LearnedParams = self.params  # type: ignore[assignment]
        out, _ = positions((scores - self.center) / self.scale, 0, np.zeros(scores.shape[1]), p)
        return out * (p.weight or 1.0 / scores.shape[1])

    def _scored(self, symbols: tuple[str, ...], weights: np.ndarray, X: np.ndarray, rows: np.ndarray,
                scores: np.ndarray) -> Prediction:
        attr = self._attribute(X, rows, np.arange(len(symbols)))
        reasons = Reasons(attr.names, attr.values, attr.attributions, attr.base, scores=scores)
        return self._prediction(symbols, weights, reasons)

    # --- sentences ----------------------------------------------------------------------------

    def _sentence(self, symbol: str, old: float, new: float, features: tuple[Feature, ...],
                  score: float) -> str:
        return self.sentence(symbol, old, new, score, features)

    def sentence(self, symbol: str, old: float, new: float, score: float, features: tuple[Feature, ...]) -> str:
        """'Went long BBB (weight 0 → 0.0833): 5-bar return −2.1σ and RSI 24 pushed the LightGBM
        score to 0.71; top drivers ret_5 (+0.31), rsi_14 (+0.12), vol_20 (−0.05).'"""
        ranked = sorted((f for f in features if math.isfinite(f.attribution)), key=lambda f: -abs(f.attribution))
        push = [f for f in ranked if (f.attribution > 0) == (new > old)][:2] or ranked[:2]
        lead = " and ".join(describe(f, features) for f in push) or "its inputs"
        drivers = ", ".join(f"{f.name} ({f.attribution:+.3g})" for f in ranked[:3])
        return (f"{action_phrase(symbol, old, new)}: {lead} pushed the {self.score_name} to {score:.3g}"
                f"{'; top drivers ' + drivers if drivers else ''}.")

    @classmethod
    def render(cls, symbol: str, old: float, new: float, features: tuple[Feature, ...]) -> str:
        ranked = sorted(features, key=lambda f: -abs(f.attribution) if math.isfinite(f.attribution) else 0.0)
        drivers = ", ".join(f"{f.name} = {f.value:.4g} ({f.attribution:+.3g})" for f in ranked[:3])
        return f"{action_phrase(symbol, old, new)}: top drivers {drivers}."

    # --- artefacts ----------------------------------------------------------------------------

    def save_artifacts(self, folder: Path) -> None:
        """Write everything a fresh instance needs to trade without fitting: ``learned.json`` and
        the subclass's files."""
        if not self.fitted:
            raise RuntimeError(f"model {self.name!r} is not fitted; nothing to save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "params": self.params.model_dump(mode="json"), "features": list(self.features.names),
                "center": self.center, "scale": self.scale, "metrics": self.metrics,
                "training_window": self.training_window, "symbols": list(self.symbols)}
        (folder / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        self._save(folder)

    def load_artifacts(self, folder: Path) -> None:
        folder = Path(folder)
        path = folder / ARTIFACT_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a saved {self.kind} model")
        meta = json.loads(path.read_text())
        if meta["kind"] != self.kind:
            raise ValueError(f"{folder} holds a {meta['kind']!r} model, not {self.kind!r}")
        if tuple(meta["features"]) != self.features.names:
            raise ValueError(f"{folder} was trained on features {meta['features']}, this model computes "
                             f"{list(self.features.names)}; use the same `features` param")
        self.center, self.scale = float(meta["center"]), float(meta["scale"])
        self.metrics, self.training_window = meta.get("metrics", {}), meta.get("training_window", {})
        self._load(folder)
        self.fitted = True


def positions(z: np.ndarray, start: int, position: np.ndarray, p: LearnedParams
              ) -> tuple[np.ndarray, np.ndarray]:
    """Positions (-1, 0, 1) after each row of standardised scores ``z`` (T, S), from ``position``
    (S,), and the positions after the last row: rows whose global index (``start`` + row) is not a
    multiple of ``decide_every``, and non-finite scores, keep the position. A scalar loop per
    symbol: T x S is small and the rule branches."""
    n_rows, n_symbols = z.shape
    decide = ((start + np.arange(n_rows)) % p.decide_every == 0)[:, None] & np.isfinite(z)
    up, down = (z > p.entry).T.tolist(), ((z < -p.entry) & p.allow_short).T.tolist()
    leave_long, leave_short = (z < p.exit).T.tolist(), (z > -p.exit).T.tolist()
    out = np.empty((n_symbols, n_rows))
    last = position.tolist()
    columns = zip(decide.T.tolist(), up, down, leave_long, leave_short, strict=True)
    for s, (dec, u, d, ll, ls) in enumerate(columns):
        q = last[s]
        row = [0.0] * n_rows
        for i in range(n_rows):
            if dec[i]:
                if q > 0:
                    q = 0.0 if ll[i] else 1.0
                elif q < 0:
                    q = 0.0 if ls[i] else -1.0
                elif d[i]:
                    q = -1.0
                elif u[i]:
                    q = 1.0
            row[i] = q
        out[s] = row
        last[s] = q
    return out.T, np.asarray(last, dtype=np.float64)


_PHRASES = {
    "rsi_14": lambda v: f"RSI {v:.0f}",
    "vol_20": lambda v: f"20-bar volatility {v * 100:.2f}%",
    "atr_14": lambda v: f"ATR {v * 100:.2f}% of price",
    "bb_pos_20": lambda v: f"Bollinger position {v:+.2f}",
    "volume_z_20": lambda v: f"volume {v:+.1f}σ",
    "macd": lambda v: f"MACD {v * 100:+.2f}%",
    "macd_signal": lambda v: f"MACD signal {v * 100:+.2f}%",
    "macd_hist": lambda v: f"MACD histogram {v * 100:+.3f}%",
    "tod_sin": lambda v: "the time of day",
    "tod_cos": lambda v: "the time of day",
}


def describe(f: Feature, features: tuple[Feature, ...] = ()) -> str:
    """A feature as a trader reads it: '5-bar return −2.1σ', 'RSI 24', 'rank of 5-bar return 0.92'."""
    name = f.name.split("@")[0]  # sequence models may name inputs 'ret_5@t-3'
    if name.startswith("ret_") and name[4:].isdigit():
        h = int(name[4:])
        vol = next((x.value for x in features if x.name == "vol_20"), math.nan)
        if math.isfinite(vol) and vol > 0:
            return f"{h}-bar return {f.value / (vol * math.sqrt(h)):+.1f}σ"
        return f"{h}-bar return {f.value * 100:+.2f}%"
    if name.startswith("rank_"):
        return f"cross-sectional rank of {name[5:]} {f.value:.2f}"
    if name in _PHRASES:
        return _PHRASES[name](f.value)
    return f"{f.name} {f.value:.4g}"

