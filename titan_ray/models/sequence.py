"""What the torch sequence models (``lstm_attention``, ``tft``) share on top of ``LearnedModel``.

A prediction for (bar t, symbol s) reads the ``window`` feature rows of s ending at t (the
``context`` of ``LearnedModel``), standardised with the training rows' mean and spread. One net
is pooled over every symbol. A window with any missing feature gets no score (NaN: no trade).

Training (``_fit``): every window with complete features and a known label, the most recent
``max_train_windows`` of them; the label is standardised (and clipped at ±5σ, so a crash bar does
not dominate a squared loss); early stopping on the last ``val_fraction`` of the bars, with
``horizon`` bars purged before it. The score is the net's forecast of the label in units of its
training spread (σ), or the median for a quantile head. Above ``max_train_windows`` the windows
are thinned to every k-th bar. Validation metrics for the registry:
``val_ic`` (Spearman correlation of forecast and label on the validation tail), ``val_hit_rate``,
``val_loss``, ``best_epoch``, ``epochs_run``, ``train_rows``.

Determinism: nets are initialised and trained from the model's seed (see
``nets.training``), and scored in fixed-size blocks, so a replay in chunks of 1 or 512 bars gives
the same scores bit for bit, and a restarted actor that refits gets the same net.

Artefacts: ``net.pt`` (the state dict) and ``net.json`` (architecture, net config,
standardisation stats, label stats, training report) beside ``learned.json``.
"""

from __future__ import annotations

import json
import logging
import math
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from titan_ray.domain.decisions import Feature, action_phrase
from titan_ray.ml.validation import spearman
from titan_ray.models.learned import LearnedModel, describe
from titan_ray.models.nets import build_net
from titan_ray.models.nets.training import (
    Prediction,
    Standardizer,
    TrainConfig,
    Windows,
    predict,
    split_tail,
    train,
)
from titan_ray.models.params import SequenceParams

log = logging.getLogger(__name__)

NET_WEIGHTS = "net.pt"
NET_META = "net.json"
ATTENTION_PREFIX = "attention@t-"
_PIECE = 8192  # windows standardised and scored at once (bounds memory on long replays)
_LABEL_CLIP = 5.0


class SequenceModel(LearnedModel):
    """A ``LearnedModel`` scored by a torch net over a window of feature rows."""

    arch: ClassVar[str]
    Params = SequenceParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        self.context = self.params.window
        self.net: torch.nn.Module | None = None
        self.standardizer: Standardizer | None = None
        self.label_mean, self.label_std = 0.0, 1.0
        self.train_report: dict[str, Any] = {}

    @abstractmethod
    def _net_config(self, n_features: int) -> dict[str, Any]:
        """The net's config dict (what ``nets.build_net`` takes)."""

    @property
    def _score_column(self) -> int:
        q = self.params.quantiles
        return 0 if q is None else q.index(0.5)

    # --- training -----------------------------------------------------------------------------

    def _valid_windows(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(end rows, symbols) of the windows of X whose ``window`` feature rows are all complete."""
        w = self.params.window
        if len(X) < w:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        complete = np.isfinite(X).all(axis=2)
        ok = sliding_window_view(complete, w, axis=0).all(axis=-1)  # (n - w + 1, S)
        rows, cols = np.nonzero(ok)
        return rows + w - 1, cols

    def _fit(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        p: SequenceParams = self.params  # type: ignore[assignment]
        rows, cols = self._valid_windows(X)
        labelled = np.isfinite(y[rows, cols])
        rows, cols = rows[labelled], cols[labelled]
        if p.max_train_windows is not None and len(rows) > p.max_train_windows:
            # thin evenly over time (every k-th bar, the latest kept): neighbouring windows share all
            # but one bar, so this loses little and keeps every regime of the history
            k = math.ceil(len(rows) / p.max_train_windows)
            keep = (rows.max() - rows) % k == 0
            rows, cols = rows[keep], cols[keep]
        if len(rows) < 100:
            raise ValueError(
                f"model {self.name!r}: only {len(rows)} complete {p.window}-bar windows with a label to train on; "
                f"raise replay.warmup_bars or lower params.window")
        feats = X[np.isfinite(X).all(axis=2)]
        self.standardizer = Standardizer.fit(feats)
        label = y[rows, cols]
        self.label_mean, self.label_std = float(label.mean()), float(label.std()) or 1.0
        target = np.clip((label - self.label_mean) / self.label_std, -_LABEL_CLIP, _LABEL_CLIP)
        windows = Windows(self.standardizer.transform(np.nan_to_num(X)), rows, cols, p.window)
        config = TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, weight_decay=p.weight_decay,
                             patience=p.patience, val_fraction=p.val_fraction, purge=p.horizon, threads=p.threads)
        self.net = build_net(self.arch, self._net_config(X.shape[2]), self.seed)

        def progress(epoch: int, train_loss: float, val_loss: float) -> None:
            log.info("%s (%s): epoch %d/%d train loss %.4f, validation loss %.4f", self.name, self.kind, epoch,
                     p.epochs, train_loss, val_loss)

        quantiles = tuple(p.quantiles) if p.quantiles else None
        report = train(self.net, windows, target, config=config, seed=self.seed, quantiles=quantiles,
                       progress=progress)
        log.info("%s (%s): trained on %d windows in %.1f s (best epoch %d of %d)", self.name, self.kind,
                 report.n_train, report.seconds, report.best_epoch, report.epochs_run)
        self.train_report = report.to_dict()
        metrics = {"train_rows": float(report.n_train), "val_rows": float(report.n_val),
                   "epochs_run": float(report.epochs_run), "best_epoch": float(report.best_epoch)}
        if report.n_val:
            _, is_val = split_tail(rows, p.val_fraction, p.horizon)
            pred = self._net_predict(windows.subset(is_val)).prediction[:, self._score_column]
            metrics.update(_val_metrics(pred, target[is_val]))
            metrics["val_loss"] = float(min(report.val_loss)) if report.val_loss else math.nan
        return metrics

    # --- scoring ------------------------------------------------------------------------------

    def _net_predict(self, windows: Windows) -> Prediction:
        p: SequenceParams = self.params  # type: ignore[assignment]
        parts = [predict(self.net, windows.take(slice(i, i + _PIECE)), threads=p.threads, block=p.block)
                 for i in range(0, len(windows), _PIECE)]
        if not parts:
            return predict(self.net, np.zeros((0, p.window, len(self.features.names)), np.float32))
        vw = None if parts[0].variable_weights is None else np.concatenate([q.variable_weights for q in parts])
        return Prediction(np.concatenate([q.prediction for q in parts]),
                          np.concatenate([q.attention for q in parts]), vw)

    def _windows(self, X: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Windows:
        return Windows(self.standardizer.transform(np.nan_to_num(X)), rows, cols, self.params.window)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        w = self.params.window
        out = np.full((max(len(X) - w + 1, 0), X.shape[1]), np.nan)
        rows, cols = self._valid_windows(X)
        if len(rows):
            pred = self._net_predict(self._windows(X, rows, cols))
            out[rows - w + 1, cols] = pred.prediction[:, self._score_column]
        return out

    def _decision_windows(self, X: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[Windows, np.ndarray]:
        """Windows of the decision cells (chunk row r = X row r + window - 1), and their raw feature rows."""
        end = rows + self.params.window - 1
        return self._windows(X, end, cols), X[end, cols]

    def _attention_columns(self, attention: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Attention over the window as explanation columns 'attention@t-0' (the decision bar) .. t-(W-1)."""
        w = attention.shape[1]
        names = [f"{ATTENTION_PREFIX}{k}" for k in range(w)]
        values = attention[:, ::-1]  # column k = k bars before the decision bar
        return names, values, np.zeros_like(values)

    # --- artefacts ----------------------------------------------------------------------------

    def _save(self, folder: Path) -> None:
        torch.save(self.net.state_dict(), folder / NET_WEIGHTS)
        meta = {"arch": self.arch, "net": self._net_config(len(self.features.names)),
                "standardizer": self.standardizer.to_dict(), "label_mean": self.label_mean,
                "label_std": self.label_std, "train_report": self.train_report}
        (folder / NET_META).write_text(json.dumps(meta, indent=2) + "\n")

    def _load(self, folder: Path) -> None:
        meta = json.loads((folder / NET_META).read_text())
        if meta["arch"] != self.arch:
            raise ValueError(f"{folder} holds a {meta['arch']!r} net, not {self.arch!r}")
        expected = self._net_config(len(self.features.names))
        if meta["net"] != expected:
            raise ValueError(f"{folder} holds a net built with {meta['net']}, these params build {expected}; "
                             "load it with the params it was registered with")
        self.net = build_net(self.arch, meta["net"], self.seed)
        self.net.load_state_dict(torch.load(folder / NET_WEIGHTS, weights_only=True))
        self.net.eval()
        self.standardizer = Standardizer.from_dict(meta["standardizer"])
        self.label_mean, self.label_std = float(meta["label_mean"]), float(meta["label_std"])
        self.train_report = meta.get("train_report", {})

    # --- sentences ----------------------------------------------------------------------------

    def _forecast_name(self) -> str:
        """"LSTM's 5-bar return forecast": what the score is, for sentences (its unit is σ of the label)."""
        p: SequenceParams = self.params  # type: ignore[assignment]
        what = "return" if p.label == "forward_return" else "triple-barrier label"
        return f"{self.score_name}'s {p.horizon}-bar {what} forecast"


def split_columns(features: tuple[Feature, ...]) -> tuple[list[Feature], list[Feature]]:
    """(input features, attention columns) of one explanation."""
    attention = [f for f in features if f.name.startswith(ATTENTION_PREFIX)]
    return [f for f in features if not f.name.startswith(ATTENTION_PREFIX)], attention


def attention_phrase(attention: list[Feature]) -> str:
    """'attention peaked on bar t-3 (41%)' from the attention columns."""
    if not attention:
        return ""
    peak = max(attention, key=lambda f: f.value)
    lag = peak.name[len(ATTENTION_PREFIX):]
    where = "the decision bar" if lag == "0" else f"bar t-{lag}"
    return f"attention peaked on {where} ({peak.value:.0%})"


def lead_phrase(inputs: list[Feature], up: bool) -> str:
    """The one or two inputs that pushed the score the way the decision went."""
    ranked = sorted((f for f in inputs if math.isfinite(f.attribution)), key=lambda f: -abs(f.attribution))
    push = [f for f in ranked if (f.attribution > 0) == up][:2] or ranked[:2]
    return " and ".join(describe(f, tuple(inputs)) for f in push) or "its inputs"


def render_sequence(symbol: str, old: float, new: float, features: tuple[Feature, ...]) -> str:
    inputs, attention = split_columns(features)
    ranked = sorted(inputs, key=lambda f: -abs(f.attribution) if math.isfinite(f.attribution) else 0.0)
    drivers = ", ".join(f"{f.name} = {f.value:.4g} ({f.attribution:+.3g})" for f in ranked[:3])
    tail = attention_phrase(attention)
    return f"{action_phrase(symbol, old, new)}: top drivers {drivers}{'; ' + tail if tail else ''}."


def _val_metrics(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    if len(pred) < 3:
        return {}
    return {"val_ic": spearman(pred, label), "val_hit_rate": float(np.mean(np.sign(pred) == np.sign(label)))}
