"""``stacking``: a meta-model over several base signals, trained on out-of-fold signals only.

The base signals live inside the model, so it needs nothing else in the arena:

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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np

from titan_ray.domain.decisions import Feature, action_phrase
from titan_ray.ml.validation import purged_kfold, spearman
from titan_ray.models.learned import Attribution, LearnedModel
from titan_ray.models.params import StackingParams


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


def _dot(x: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Row-wise x · coef, summed the same way whatever the number of rows (BLAS is not)."""
    return (x * coef).sum(axis=1)
