"""A small, deterministic CPU training loop for the nets of this package.

- **Samples** are windows cut from a feature panel (T, S, F) on demand (``Windows``): sample i is
  the W bars of symbol ``cols[i]`` ending at bar ``rows[i]``. Nothing is copied per sample, so a
  panel of a few thousand bars x a dozen symbols trains without materialising every window.
- **Validation** is the time-ordered tail: the last ``val_fraction`` of the bars (all symbols),
  with ``purge`` bars dropped before it so that no training label overlaps a validation one.
  Early stopping keeps the epoch with the best validation loss and restores its weights.
- **Determinism**: the net is built and trained inside a forked torch RNG seeded with ``seed``
  (the global generator of the process is left as it was), batches are shuffled by a seeded
  generator, and torch runs on ``threads`` threads (default 1: the arena runs many models on a
  few cores, and the thread count is part of what makes float results repeatable). The same data,
  config and seed give the same weights, bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from titan_ray.explain.threads import torch_threads
from titan_ray.models.nets.common import NetOutput, point_loss, quantile_loss


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """A torch RNG seeded with ``seed`` inside the block; the process's own generator is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean and standard deviation of the training rows; NaN stays NaN."""

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    clip: float = 8.0  # standardised values are clipped to ±clip (one bad tick must not dominate)

    @classmethod
    def fit(cls, values: np.ndarray, clip: float = 8.0) -> Standardizer:
        """From a (..., F) array of training rows; features with no spread get std 1."""
        flat = values.reshape(-1, values.shape[-1])
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(np.isfinite(flat), flat, np.nan), axis=0)
            std = np.nanstd(np.where(np.isfinite(flat), flat, np.nan), axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return cls(mean=mean, std=std, clip=clip)

    def transform(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            z = (values - self.mean) / self.std
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(mean=np.asarray(d["mean"], dtype=np.float64), std=np.asarray(d["std"], dtype=np.float64),
                   clip=float(d["clip"]))


@dataclass(frozen=True)
class Windows:
    """Samples as windows of a panel: sample i = panel[rows[i]-length+1 : rows[i]+1, cols[i], :]."""

    panel: np.ndarray  # (T, S, F) float32, standardised
    rows: np.ndarray  # (N,) int64: the bar each window ends at (its decision bar)
    cols: np.ndarray  # (N,) int64: the symbol
    length: int

    def __post_init__(self) -> None:
        if len(self.rows) and int(self.rows.min()) < self.length - 1:
            raise ValueError(f"a window of {self.length} bars cannot end at bar {int(self.rows.min())}")

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, idx: np.ndarray | slice) -> np.ndarray:
        """The windows of samples ``idx`` as (n, length, F) float32."""
        view = sliding_window_view(self.panel, self.length, axis=0)  # (T-L+1, S, F, L)
        return np.ascontiguousarray(view[self.rows[idx] - self.length + 1, self.cols[idx]].transpose(0, 2, 1))

    def subset(self, mask: np.ndarray) -> Windows:
        return Windows(self.panel, self.rows[mask], self.cols[mask], self.length)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 3  # epochs without a better validation loss before stopping
    val_fraction: float = 0.2  # the time-ordered tail of bars used for early stopping
    purge: int = 0  # bars dropped between training and validation (at least the label horizon)
    grad_clip: float = 1.0
    threads: int = 1


@dataclass(frozen=True)
class TrainReport:
    epochs_run: int
    best_epoch: int  # 1-based; 0 when the net was never better than at initialisation
    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    n_train: int
    n_val: int
    seconds: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def split_tail(rows: np.ndarray, val_fraction: float, purge: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, validation): validation = the last ``val_fraction`` of the bars seen."""
    if val_fraction <= 0 or not len(rows):
        return np.ones(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool)
    bars = np.unique(rows)
    cut = bars[min(len(bars) - 1, math.floor(len(bars) * (1 - val_fraction)))]
    return rows < cut - purge, rows >= cut


def loss_fn(quantiles: tuple[float, ...] | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if quantiles:
        return lambda pred, y: quantile_loss(pred, y, quantiles)
    return point_loss


def train(
    net: nn.Module,
    windows: Windows,
    target: np.ndarray,
    *,
    config: TrainConfig,
    seed: int,
    quantiles: tuple[float, ...] | None = None,
    progress: Callable[[int, float, float], None] | None = None,
) -> TrainReport:
    """Fit ``net`` on (windows, target) with Adam and early stopping; returns what happened.

    ``target`` (N,) is finite; ``progress(epoch, train_loss, val_loss)`` is called after each epoch.
    """
    if len(windows) != len(target):
        raise ValueError(f"{len(windows)} windows but {len(target)} targets")
    if not np.isfinite(target).all():
        raise ValueError("targets must be finite: drop the rows whose label is not known yet")
    started = time.perf_counter()
    is_train, is_val = split_tail(windows.rows, config.val_fraction, config.purge)
    fit_w, val_w = windows.subset(is_train), windows.subset(is_val)
    y_fit = torch.as_tensor(target[is_train], dtype=torch.float32)
    y_val = torch.as_tensor(target[is_val], dtype=torch.float32)
    if len(fit_w) < config.batch_size // 4 + 1:
        raise ValueError(
            f"only {len(fit_w)} training windows: give the model more warm-up bars (replay.warmup_bars) "
            "or a shorter window"
        )
    loss = loss_fn(quantiles)
    train_hist: list[float] = []
    val_hist: list[float] = []
    with seeded(seed), torch_threads(config.threads):
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
        best = _evaluate(net, val_w, y_val, loss, config) if len(val_w) else math.inf
        best_state, best_epoch, stale = _copy_state(net), 0, 0
        for epoch in range(1, config.epochs + 1):
            net.train()
            order = torch.randperm(len(fit_w), generator=gen).numpy()
            total, count = 0.0, 0
            for i in range(0, len(order), config.batch_size):
                idx = order[i : i + config.batch_size]
                x = torch.from_numpy(fit_w.take(idx))
                out: NetOutput = net(x)
                batch_loss = loss(out.prediction, y_fit[idx])
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                opt.step()
                total += float(batch_loss.detach()) * len(idx)
                count += len(idx)
            train_hist.append(total / count)
            if len(val_w):
                val = _evaluate(net, val_w, y_val, loss, config)
                val_hist.append(val)
                if val < best:
                    best, best_state, best_epoch, stale = val, _copy_state(net), epoch, 0
                else:
                    stale += 1
            else:
                best_state, best_epoch = _copy_state(net), epoch
            if progress is not None:
                progress(epoch, train_hist[-1], val_hist[-1] if val_hist else math.nan)
            if len(val_w) and stale >= config.patience:
                break
        net.load_state_dict(best_state)
        net.eval()
    return TrainReport(
        epochs_run=len(train_hist), best_epoch=best_epoch, train_loss=tuple(train_hist),
        val_loss=tuple(val_hist), n_train=len(fit_w), n_val=len(val_w),
        seconds=time.perf_counter() - started,
    )


def _copy_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _evaluate(net: nn.Module, windows: Windows, y: torch.Tensor, loss, config: TrainConfig) -> float:
    net.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(windows), config.batch_size * 4):
            sl = slice(i, i + config.batch_size * 4)
            out = net(torch.from_numpy(windows.take(sl)))
            total += float(loss(out.prediction, y[sl])) * len(y[sl])
    return total / len(windows)


@dataclass(frozen=True)
class Prediction:
    prediction: np.ndarray  # (N, n_outputs) float64
    attention: np.ndarray  # (N, W)
    variable_weights: np.ndarray | None  # (N, W, F)


def predict(net: nn.Module, x: np.ndarray, *, threads: int = 1, block: int = 256) -> Prediction:
    """The net's outputs for windows ``x`` (N, W, F), in eval mode, without gradients.

    Windows go through the net in blocks of exactly ``block`` rows (the last one padded with
    zeros), so the floating-point path of a row never depends on how many rows came with it:
    a decision is the same whether its bar arrived alone or in a chunk of thousands.
    """
    n = len(x)
    preds, attns, vws = [], [], []
    net.eval()
    with torch.inference_mode(), torch_threads(threads):
        for i in range(0, max(n, 1), block):
            part = x[i : i + block]
            if len(part) < block:
                part = np.concatenate([part, np.zeros((block - len(part), *x.shape[1:]), dtype=x.dtype)])
            out: NetOutput = net(torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32)))
            k = min(block, n - i)
            preds.append(out.prediction[:k].double().numpy())
            attns.append(out.attention[:k].double().numpy())
            if out.variable_weights is not None:
                vws.append(out.variable_weights[:k].double().numpy())
    return Prediction(
        prediction=np.concatenate(preds) if preds else np.zeros((0, 1)),
        attention=np.concatenate(attns) if attns else np.zeros((0, x.shape[1] if x.ndim == 3 else 0)),
        variable_weights=np.concatenate(vws) if vws else None,
    )
