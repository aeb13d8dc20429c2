"""``lightgbm``: gradient-boosted trees on the engineered features, explained by SHAP.

One booster is pooled over every symbol: a training row is one (timestamp, symbol) cell with all
features valid and a known label. ``objective: regression`` predicts the label (forward log return
or triple-barrier label); ``objective: binary`` predicts the probability that it is positive.

Model selection, no look-ahead: with ``cv_folds`` ≥ 2 the number of boosting rounds is chosen by
early stopping on purged K-fold splits of the training window (label windows that overlap a test
fold are purged, ``embargo`` bars after it left out); the out-of-fold predictions give the
validation metrics stored with the model (``oof_ic``: Spearman correlation of prediction and
label; ``oof_hit_rate``: share of cells where the signs agree). The final booster trains on the
whole window with the chosen number of rounds.

Explanation: ``shap.TreeExplainer`` values of the decision's feature row, in the booster's raw
output units (the log-odds for ``binary``): the base value plus the row's SHAP values add up to
the raw output, to 1e-6 (``gap`` records it per decision).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np

from titan_ray.ml.validation import purged_kfold, spearman
from titan_ray.models.learned import Attribution, LearnedModel
from titan_ray.models.params import LightGBMParams


class LightGBMModel(LearnedModel):
    kind = "lightgbm"
    method = "shap.TreeExplainer"
    Params = LightGBMParams
    score_name: ClassVar[str] = "LightGBM score"

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        self.booster: lgb.Booster | None = None
        self._explainer: Any = None
        if self.params.objective == "binary":
            self.score_name = "LightGBM P(up)"

    def _lgb_params(self) -> dict[str, Any]:
        p: LightGBMParams = self.params  # type: ignore[assignment]
        return {
            "objective": p.objective, "learning_rate": p.learning_rate, "num_leaves": p.num_leaves,
            "min_child_samples": p.min_child_samples, "feature_fraction": p.feature_fraction,
            "bagging_fraction": p.bagging_fraction, "bagging_freq": 1 if p.bagging_fraction < 1 else 0,
            "lambda_l2": p.lambda_l2, "seed": self.seed, "num_threads": p.num_threads,
            "deterministic": True, "force_col_wise": True, "verbose": -1,
        }

    def _target(self, y: np.ndarray) -> np.ndarray:
        return (y > 0).astype(np.float64) if self.params.objective == "binary" else y

    def _fit(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        p: LightGBMParams = self.params  # type: ignore[assignment]
        t, s, _f = X.shape
        ok = np.isfinite(X).all(axis=2) & np.isfinite(y)
        rows_t = np.broadcast_to(np.arange(t)[:, None], (t, s))[ok]
        x, target = X[ok], self._target(y[ok])
        params = self._lgb_params()
        rounds, metrics = p.n_estimators, {}
        if p.cv_folds >= 2:
            best, oof = [], np.full(len(x), np.nan)
            for split in purged_kfold(t, n_splits=p.cv_folds, horizon=p.horizon, embargo=p.embargo):
                tr, te = np.isin(rows_t, split.train), np.isin(rows_t, split.test)
                if tr.sum() < 2 * p.min_child_samples or not te.any():
                    continue
                train = lgb.Dataset(x[tr], target[tr], free_raw_data=False)
                valid = lgb.Dataset(x[te], target[te], reference=train)
                booster = lgb.train(params, train, num_boost_round=p.n_estimators, valid_sets=[valid],
                                    callbacks=[lgb.early_stopping(p.early_stopping, verbose=False)])
                best.append(booster.best_iteration or p.n_estimators)
                oof[te] = booster.predict(x[te], num_iteration=best[-1])
            if best:
                rounds = max(1, round(float(np.median(best))))
                metrics = _oof_metrics(oof, y[ok], binary=p.objective == "binary")
        self.booster = lgb.train(params, lgb.Dataset(x, target), num_boost_round=rounds)
        self._explainer = None
        return {**metrics, "rounds": float(rounds), "train_rows": float(len(x))}

    def _predict(self, X: np.ndarray) -> np.ndarray:
        n, s, f = X.shape
        flat = X.reshape(n * s, f)
        ok = np.isfinite(flat).all(axis=1)
        out = np.full(n * s, np.nan)
        if ok.any():
            out[ok] = self.booster.predict(flat[ok])
        return out.reshape(n, s)

    def explainer(self) -> Any:
        if self._explainer is None:
            import shap

            self._explainer = shap.TreeExplainer(self.booster)
        return self._explainer

    def _attribute(self, X: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Attribution:
        x = X[rows, cols]
        names = self.features.names
        ok = np.isfinite(x).all(axis=1)
        values = np.full(x.shape, np.nan)
        base = np.full(len(x), np.nan)
        output = np.full(len(x), np.nan)
        if ok.any():
            ex = self.explainer()
            with warnings.catch_warnings():  # shap notes that binary LightGBM output is a list per class
                warnings.simplefilter("ignore", UserWarning)
                sv = ex.shap_values(x[ok])
            if isinstance(sv, list):  # older shap: one array per class
                sv = sv[-1]
            expected = np.ravel(ex.expected_value)[-1]
            values[ok] = sv
            base[ok] = expected
            output[ok] = self.booster.predict(x[ok], raw_score=True)
        return Attribution(names=names, values=x, attributions=values, base=base, output=output)

    def _save(self, folder: Path) -> None:
        self.booster.save_model(str(folder / "booster.txt"))

    def _load(self, folder: Path) -> None:
        self.booster = lgb.Booster(model_file=str(folder / "booster.txt"))
        self._explainer = None


def _oof_metrics(pred: np.ndarray, label: np.ndarray, *, binary: bool) -> dict[str, float]:
    ok = np.isfinite(pred) & np.isfinite(label)
    if ok.sum() < 3:
        return {}
    a, b = pred[ok], label[ok]
    ic = spearman(a, b)
    hit = float(np.mean((a > 0.5) == (b > 0))) if binary else float(np.mean(np.sign(a) == np.sign(b)))
    return {"oof_ic": ic, "oof_hit_rate": hit, "oof_rows": float(ok.sum())}
