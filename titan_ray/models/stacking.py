"""``stacking``: a meta-model over several base signals, trained on out-of-fold signals only.

Two modes. With ``params.inputs`` (``ArenaStackingModel``, below) the bases are other models of
the arena, named. Without it, the base signals live inside the model, so it needs nothing else in
the arena:

- ``lightgbm``: a small LightGBM regressor on the features (fixed rounds);
- ``ridge``: ridge regression on the standardised features;
- ``momentum``: the 20-bar return (``ret_20``), no training;
- ``reversion``: (50 - RSI(14)) / 50, no training.

Fitting, no look-ahead: purged K-fold over the training window (label windows overlapping a test
fold purged, ``embargo`` after it). In each fold the trainable bases fit on the training rows and
predict the test rows, so every row gets out-of-fold signals, produced by models that never saw
its label. The meta-model, a ridge regression of the label on the standardised out-of-fold
signals, learns how much to trust each base. Then the bases refit on the whole window for trading.

Explanation: score = intercept + Σ coef_i × z_i, where z_i is base i's standardised signal, so
each base model's contribution coef_i × z_i is exact and additive (``gap`` ~ 1e-16); the
feature values shown are the raw base signals.

Stacking the arena's models (``inputs: [sma, rsi, lgbm, lstm, tft]``): base i's signal at bar t is
the target weight that model decided at the close of bar t, the same information the meta-model
has when it decides at t. In the arena (``arena/cluster.py``) the inputs decide first and the
meta-model's decide call takes their decision references as arguments: Ray hands it their
decisions on the chunk, no trip through the driver (``feed``). An input left out of a chunk
(taken out of the arena by the watchdog) is read as flat (weight 0), and the sentences say so; an
input whose decision failed fails the meta-model's call too, so the ledger skips the meta-model
on that chunk, and its next call replays the chunk from its inputs' ``signals``. Fitting: over
the warm-up bars, each input's out-of-sample signals (``TradingModel.signals``: a rule model's
weights as it observed, a learned model's out-of-fold weights: purged K-fold with ``cv_folds``
folds, ``embargo`` at least this model's ``horizon``), read when the meta-model fits (``attach``:
from the input actors; a model loaded from the registry, or PPO, has none and is read as flat
there, so its weight is 0); labels as for every learned model. The meta-model is a ridge
regression of the label on the standardised signals (an input that never moved gets weight 0);
its score, a forecast of the label, is standardised around 0 (not its median) before the usual
``entry``/``exit`` rule; ``refit_every`` refits it on the live decisions since. Explanation: each
input's contribution coef_i × z_i, named by the input model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Feature, action_phrase
from titan_ray.ml.validation import purged_kfold, spearman
from titan_ray.models.base import (
    Inputs,
    OutOfFold,
    Prediction,
    SignalSource,
    Stacker,
    TradingModel,
    fed_weights,
)
from titan_ray.models.learned import Attribution, LearnedModel
from titan_ray.models.params import StackingParams

log = logging.getLogger(__name__)


def _ridge(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Coefficients and intercept of ridge regression (the intercept is not penalised)."""
    mx, my = x.mean(axis=0), y.mean()
    xc = x - mx
    a = xc.T @ xc + l2 * len(x) * np.eye(x.shape[1])
    coef = np.linalg.solve(a, xc.T @ (y - my))
    return coef, float(my - mx @ coef)


class StackingModel(LearnedModel):
    kind = "stacking"
    method = "stacking.contributions"
    Params = StackingParams
    score_name: ClassVar[str] = "stacked score"

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        if self.params.inputs is not None and not isinstance(self, ArenaStackingModel):
            raise ValueError(f"model {name!r} stacks arena models (params.inputs: {self.params.inputs}): it runs "
                             "only in an arena, built by titan_ray.models.kinds.build_model; remove `inputs` to "
                             "stack the internal base signals")
        self.bases: tuple[str, ...] = tuple(self.params.bases)
        self._booster: lgb.Booster | None = None
        self._ridge: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}

    # --- base signals ---------------------------------------------------------------------------

    def _fit_bases(self, x: np.ndarray, y: np.ndarray) -> None:
        p: StackingParams = self.params  # type: ignore[assignment]
        if "lightgbm" in self.bases:
            params = {"objective": "regression", "num_leaves": p.lgb_leaves, "learning_rate": 0.05,
                      "min_child_samples": 50, "feature_fraction": 0.8, "lambda_l2": 1.0, "seed": self.seed,
                      "num_threads": 1, "deterministic": True, "force_col_wise": True, "verbose": -1}
            self._booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=p.lgb_rounds)
        if "ridge" in self.bases:
            mu, sd = x.mean(axis=0), x.std(axis=0)
            sd = np.where(sd > 0, sd, 1.0)
            coef, icpt = _ridge((x - mu) / sd, y, p.ridge_l2)
            self._ridge = {"mu": mu, "sd": sd, "coef": coef, "intercept": icpt}

    def _signals(self, x: np.ndarray) -> np.ndarray:
        """(n, B) raw base signals of feature rows x (n, F)."""
        names = self.features.names
        cols = []
        for b in self.bases:
            if b == "lightgbm":
                cols.append(self._booster.predict(x) if len(x) else np.zeros(0))
            elif b == "ridge":
                r = self._ridge
                cols.append(_dot((x - r["mu"]) / r["sd"], r["coef"]) + r["intercept"])
            elif b == "momentum":
                cols.append(x[:, names.index("ret_20")])
            else:
                cols.append((50.0 - x[:, names.index("rsi_14")]) / 50.0)
        return np.column_stack(cols) if cols else np.zeros((len(x), 0))

    # --- hooks ----------------------------------------------------------------------------------

    def _fit(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        p: StackingParams = self.params  # type: ignore[assignment]
        t, s, _ = X.shape
        ok = np.isfinite(X).all(axis=2) & np.isfinite(y)
        rows_t = np.broadcast_to(np.arange(t)[:, None], (t, s))[ok]
        x, target = X[ok], y[ok]
        oof = np.full((len(x), len(self.bases)), np.nan)
        for split in purged_kfold(t, n_splits=p.cv_folds, horizon=p.horizon, embargo=p.embargo):
            tr, te = np.isin(rows_t, split.train), np.isin(rows_t, split.test)
            if tr.sum() < 100 or not te.any():
                continue
            self._fit_bases(x[tr], target[tr])
            oof[te] = self._signals(x[te])
        done = np.isfinite(oof).all(axis=1)
        if done.sum() < 50:
            raise ValueError(f"model {self.name!r}: only {int(done.sum())} out-of-fold rows; give it more history "
                             "(replay.warmup_bars) or fewer cv_folds")
        mu, sd = oof[done].mean(axis=0), oof[done].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        coef, icpt = _ridge((oof[done] - mu) / sd, target[done], p.meta_l2)
        self.meta = {"mu": mu, "sd": sd, "coef": coef, "intercept": icpt}
        self._fit_bases(x, target)  # the bases that trade see the whole window
        metrics: dict[str, float] = {"oof_rows": float(done.sum())}
        for i, b in enumerate(self.bases):
            metrics[f"oof_ic_{b}"] = spearman(oof[done, i], target[done])
            metrics[f"weight_{b}"] = float(coef[i])
        metrics["oof_ic_meta"] = spearman((oof[done] - mu) / sd @ coef, target[done])
        return metrics

    def _predict(self, X: np.ndarray) -> np.ndarray:
        n, s, f = X.shape
        flat = X.reshape(n * s, f)
        ok = np.isfinite(flat).all(axis=1)
        out = np.full(n * s, np.nan)
        if ok.any():
            z = (self._signals(flat[ok]) - self.meta["mu"]) / self.meta["sd"]
            out[ok] = _dot(z, self.meta["coef"]) + self.meta["intercept"]
        return out.reshape(n, s)

    def _attribute(self, X: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Attribution:
        x = X[rows, cols]
        ok = np.isfinite(x).all(axis=1)
        values = np.full((len(x), len(self.bases)), np.nan)
        contrib = np.full_like(values, np.nan)
        output = np.full(len(x), np.nan)
        if ok.any():
            sig = self._signals(x[ok])
            z = (sig - self.meta["mu"]) / self.meta["sd"]
            values[ok], contrib[ok] = sig, z * self.meta["coef"]
            output[ok] = _dot(z, self.meta["coef"]) + self.meta["intercept"]
        return Attribution(names=self.bases, values=values, attributions=contrib,
                           base=np.full(len(x), self.meta["intercept"]), output=output)

    def sentence(self, symbol: str, old: float, new: float, score: float, features: tuple[Feature, ...]) -> str:
        """'Bought BBB ...: the lightgbm signal at +1.3σ and momentum at +0.8σ pushed the stacked score
        to 0.00015; contributions lightgbm +0.00012, momentum +2.9e-05, ridge -2.5e-06.'"""
        sd = dict(zip(self.bases, np.asarray(self.meta.get("sd", np.ones(len(self.bases)))), strict=True))
        mu = dict(zip(self.bases, np.asarray(self.meta.get("mu", np.zeros(len(self.bases)))), strict=True))
        ranked = sorted((f for f in features if np.isfinite(f.attribution)), key=lambda f: -abs(f.attribution))
        push = [f for f in ranked if (f.attribution > 0) == (new > old)][:2] or ranked[:2]
        lead = " and ".join(f"the {f.name} signal at {(f.value - mu[f.name]) / sd[f.name]:+.1f}σ" for f in push)
        contributions = ", ".join(f"{f.name} {f.attribution:+.2g}" for f in ranked)
        return (f"{action_phrase(symbol, old, new)}: {lead or 'its base signals'} pushed the stacked score to "
                f"{score:.3g}; contributions {contributions}.")

    def _save(self, folder: Path) -> None:
        if self._booster is not None:
            self._booster.save_model(str(folder / "base_lightgbm.txt"))

        def plain(d: dict[str, Any]) -> dict[str, Any]:
            return {k: np.asarray(v).tolist() for k, v in d.items()}

        (folder / "stacking.json").write_text(json.dumps({"bases": list(self.bases), "meta": plain(self.meta),
                                                          "ridge": plain(self._ridge)}, indent=2) + "\n")

    def _load(self, folder: Path) -> None:
        saved = json.loads((folder / "stacking.json").read_text())
        if tuple(saved["bases"]) != self.bases:
            raise ValueError(f"{folder} stacks bases {saved['bases']}, this model {list(self.bases)}")

        def arrays(d: dict[str, Any]) -> dict[str, Any]:
            return {k: (float(v) if k == "intercept" else np.asarray(v, dtype=np.float64)) for k, v in d.items()}

        self.meta, self._ridge = arrays(saved["meta"]), arrays(saved["ridge"])
        booster = folder / "base_lightgbm.txt"
        self._booster = lgb.Booster(model_file=str(booster)) if booster.exists() else None


class ArenaStackingModel(StackingModel):
    """``stacking`` with ``params.inputs``: a ridge meta-model over other arena models' decisions.

    Its input rows are (T, S, B): the target weight each of its B input models decided for each bar
    and symbol. ``feed`` gives them for the chunk it decides next; ``attach`` says where to read them
    otherwise (``signals`` of the input models: the warm-up bars it fits on, a replayed history).
    """

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        self.stacked: tuple[str, ...] = tuple(self.params.inputs)
        self.bases = self.stacked
        self._source: SignalSource | None = None
        self._fed: tuple[int, int, dict[str, np.ndarray | None]] | None = None
        self._left_out: tuple[str, ...] = ()  # inputs read as flat in the piece being decided
        self.known: dict[str, float] = {}  # share of the first fit's cells each input had a signal for

    @property
    def oof(self) -> OutOfFold:
        """How its learned inputs make out-of-fold signals over the warm-up bars it fits on."""
        p: StackingParams = self.params  # type: ignore[assignment]
        return OutOfFold(folds=p.cv_folds, embargo=p.embargo, horizon=p.horizon)

    def attach(self, source: SignalSource) -> None:
        self._source = source

    def feed(self, start: int, stop: int, decisions: Mapping[str, Any]) -> None:
        """The input models' decisions (``Decisions``, or weights (T, S); None: left out) on bars [start, stop)."""
        fed = fed_weights(self.name, self.stacked, "stacks", len(self.symbols), start, stop, decisions)
        self._fed = (start, stop, fed)

    # --- input rows ---------------------------------------------------------------------------

    def observe(self, bars: BarBatch) -> None:
        # the inputs' signals on warm-up bars exist once the learned ones have fitted: read at the fit
        self._keep(np.full((len(bars), len(self.symbols), len(self.stacked)), np.nan), bars)

    def _rows(self, bars: BarBatch) -> np.ndarray:
        if self._fed is not None and self._fed[0] <= bars.start and bars.stop <= self._fed[1]:
            start, _, fed = self._fed
            lo, hi = bars.start - start, bars.stop - start
            flat = np.zeros((len(bars), len(self.symbols)))
            self._left_out = tuple(n for n in self.stacked if fed[n] is None)
            if self._left_out:
                log.warning("%s: %s left out of bars [%d, %d): read as flat", self.name,
                            ", ".join(self._left_out), bars.start, bars.stop)
            return np.stack([flat if fed[n] is None else fed[n][lo:hi] for n in self.stacked], axis=2)
        x, known = self._read(bars.start, bars.stop)
        self._left_out = tuple(n for i, n in enumerate(self.stacked) if not known[:, :, i].all())
        return x

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The inputs' signals (T, S, B) over bars [start, stop), NaN read as flat, and where they were known."""
        if self._source is None:
            raise RuntimeError(f"model {self.name!r} stacks {list(self.stacked)} and has nothing to read their "
                               f"signals on bars [{start}, {stop}) from: attach a source (stack_in_process, or "
                               "the arena's actors)")
        got = self._source(start, stop, self.oof)
        x = np.stack([np.asarray(got[n], dtype=np.float64).reshape(stop - start, len(self.symbols))
                      for n in self.stacked], axis=2)
        known = np.isfinite(x)
        return np.where(known, x, 0.0), known

    def _refit(self, bar: int) -> None:
        if self._buffer.rows:  # rows it only observed get their inputs' out-of-sample signals now
            X, close = self._buffer.arrays()
            hole = np.isnan(X).all(axis=(1, 2))
            if hole.any():
                lo = bar - len(X)
                hi = lo + int(np.flatnonzero(hole)[-1]) + 1
                pulled, known = self._read(lo, hi)
                X = X.copy()
                X[: hi - lo][hole[: hi - lo]] = pulled[hole[: hi - lo]]
                self._buffer.features, self._buffer.close = [X], [close]
                self.known = {n: float(known[..., i].mean()) for i, n in enumerate(self.stacked)}
        super()._refit(bar)
        # The score forecasts the label, so it is standardised around 0, not around its median: its
        # inputs are target weights, so it takes few values, and the commonest one (no input moved)
        # would sit at the median, where z = 0 never falls below `exit` and a long would never leave.
        self.center = 0.0
        self.metrics.update({f"known_{n}": v for n, v in self.known.items()})

    # --- the meta-model -------------------------------------------------------------------------

    def _signals(self, x: np.ndarray) -> np.ndarray:
        return x  # the input rows are the base models' signals

    def _fit(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        p: StackingParams = self.params  # type: ignore[assignment]
        ok = np.isfinite(X).all(axis=2) & np.isfinite(y)
        x, target = X[ok], y[ok]
        if len(x) < 50:
            raise ValueError(f"model {self.name!r}: only {len(x)} labelled rows of its inputs' signals; give it "
                             "more history (replay.warmup_bars)")
        mu, sd = x.mean(axis=0), x.std(axis=0)
        varies = sd > 0  # an input that never moved (no signal, or always flat) gets no weight
        coef, icpt = np.zeros(len(self.stacked)), float(target.mean())
        if varies.any():
            coef[varies], icpt = _ridge((x[:, varies] - mu[varies]) / sd[varies], target, p.meta_l2)
        sd = np.where(varies, sd, 1.0)
        self.meta = {"mu": mu, "sd": sd, "coef": coef, "intercept": icpt}
        metrics: dict[str, float] = {"oof_rows": float(len(x))}
        for i, name in enumerate(self.stacked):
            metrics[f"oof_corr_{name}"] = _corr(x[:, i], target)
            metrics[f"weight_{name}"] = float(coef[i])
        metrics["oof_corr_meta"] = _corr(_dot((x - mu) / sd, coef), target)
        return metrics

    def sentence(self, symbol: str, old: float, new: float, score: float, features: tuple[Feature, ...]) -> str:
        """'Went long BBB (weight 0 → 0.0833): lgbm long (0.0833) and sma long (0.0833) pushed the stacked
        score to 0.00012; contributions lgbm +0.0001, sma +2.1e-05, tft -3e-06.'"""
        ranked = sorted((f for f in features if np.isfinite(f.attribution)), key=lambda f: -abs(f.attribution))
        push = [f for f in ranked if (f.attribution > 0) == (new > old)][:2] or ranked[:2]
        lead = " and ".join(f"{f.name} {_holding(f.value)}" for f in push)
        contributions = ", ".join(f"{f.name} {f.attribution:+.2g}" for f in ranked)
        note = f" ({', '.join(self._left_out)} left out: read as flat)" if self._left_out else ""
        return (f"{action_phrase(symbol, old, new)}: {lead or 'its inputs'} pushed the stacked score to "
                f"{score:.3g}; contributions {contributions}{note}.")

    # --- not outside an arena -------------------------------------------------------------------

    def fit(self, history: BarBatch) -> None:
        raise TypeError(f"model {self.name!r} fits on its input models' signals, in an arena: not on bars alone")

    def inputs(self) -> Inputs:
        return Inputs()

    def explain(self, bars: BarBatch) -> Prediction:
        raise TypeError(f"model {self.name!r} decides from the decisions of {list(self.stacked)}, in an arena; "
                        "it cannot explain a window of bars alone")


def stack_in_process(meta: TradingModel, inputs: Sequence[TradingModel]) -> None:
    """Wire a meta-model to its input models in this process (tests, ``ml.backtest``): the inputs keep
    their signals and the meta-model reads them when it decides, so decide the inputs first. Call it
    before any of them sees a bar."""
    if not isinstance(meta, Stacker):
        raise TypeError(f"model {meta.name!r} reads no arena models (params.inputs)")
    by_name = {m.name: m for m in inputs}
    missing = [n for n in meta.stacked if n not in by_name]
    if missing:
        raise ValueError(f"model {meta.name!r} stacks {missing}, which are not among the models given")
    for name in meta.stacked:
        by_name[name].record_signals()
    meta.attach(lambda start, stop, oof: {n: by_name[n].signals(start, stop, oof) for n in meta.stacked})


def _holding(weight: float) -> str:
    if weight > 0:
        return f"long ({weight:.3g})"
    return f"short ({weight:.3g})" if weight < 0 else "flat"


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either is constant (inputs are target weights: ranks would tie)."""
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _dot(x: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Row-wise x · coef, summed the same way whatever the number of rows (BLAS is not)."""
    return (x * coef).sum(axis=1)
