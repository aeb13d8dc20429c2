"""``ppo``: a trading policy trained with RLlib PPO (``titan-ray train-ppo``), loaded from the registry.

The artefact folder (written by ``titan_ray.train.ppo``) holds ``rl_module/`` (RLlib's RLModule
checkpoint) and ``policy.json`` (symbols, feature names, the training window's feature scaler and
the env settings that map actions to weights). The model computes the same observation the env
did (``titan_ray.ml.env.observation``: each symbol's normalised feature row from the causal
feature stream, then the fractions of budget it holds), calls the RLModule's
``forward_inference`` once per bar and takes the most likely action (or samples it, with
``deterministic: false``). ``ActionMap`` turns the action into target weights exactly as in the
env, so the arena trades what the env trained.

Explanation (``captum.IntegratedGradients``): for each changed weight, the attributions of the
chosen level's probability (for that symbol) over the observation, against an all-zero baseline
(every feature at its training mean, no position). The columns are the symbol's own features
(raw values shown), the weight it held before, and ``other_symbols`` (the summed attributions of
every other symbol's entries), so base + the row's attributions = the probability, up to IG's
completeness gap (recorded as the explanation's ``gap``).

The RLModule is rebuilt from its checkpoint files, kept in memory, whenever the model is
unpickled (a Ray actor receives a copy): nothing reads the registry folder on another node.

Start-up training: a model with no policy but a ``trainer`` (an arena's ``ppo`` model with no
``artifact``; ``titan_ray.train.ppo.StartupTrainer``) keeps the warm-up bars it observes and, at
its first decision, hands exactly those bars (every bar before the first traded one, nothing
after) to the trainer, which finds a policy trained on them in the registry or trains and
registers one; the model then loads it and trades. torch is loaded on first use, so building
the model (on the arena's driver) stays light.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Feature, action_phrase
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.lazy import load
from titan_ray.ml.env import ActionMap, EnvSettings, FeatureScaler, observation
from titan_ray.models.base import Reasons, TradingModel
from titan_ray.models.params import PpoParams

POLICY_FILE = "policy.json"
MODULE_DIR = "rl_module"


def torch_threads(n: int) -> Any:
    """``titan_ray.explain.threads.torch_threads``, loaded on first use (it imports torch)."""
    return load("titan_ray.explain.threads:torch_threads")(n)


class PolicyTrainer(Protocol):
    """Start-up training: a saved ``ppo`` policy folder for ``model``, trained on ``history``."""

    def __call__(self, model: PpoModel, history: BarBatch) -> Path: ...


def _pack(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


@contextmanager
def quiet_rllib() -> Iterator[None]:
    """RLlib's notices that concern its own code (a deprecated constructor it calls itself, "the new API
    stack is on"), silenced for a block: an arena's terminal shows what a trader needs to read."""
    loggers = [logging.getLogger(n) for n in ("ray._common.deprecation", "ray.rllib.algorithms.algorithm_config")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def load_module(folder: Path) -> Any:
    """The RLModule saved in ``folder`` (an RLlib checkpoint of one module)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    with quiet_rllib():
        module = RLModule.from_checkpoint(str(folder))
    module.eval()
    return module


def write_policy(folder: Path, module: Path, *, symbols: Sequence[str], scaler: dict[str, Any], env: dict[str, Any],
                 extra: dict[str, Any] | None = None) -> None:
    """Write a ``ppo`` artefact into ``folder``: the RLModule checkpoint ``module`` and ``policy.json``."""
    shutil.copytree(module, Path(folder) / MODULE_DIR)
    meta = {"symbols": list(symbols), "scaler": scaler, "env": env, **(extra or {})}
    (Path(folder) / POLICY_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")


class Policy:
    """A loaded RLModule plus the action map: observations in, actions and probabilities out."""

    def __init__(self, module: Any, actions: Any) -> None:
        self.module, self.actions = module, actions

    def logits(self, obs: np.ndarray) -> Any:
        import torch

        with torch.no_grad():
            out = self.module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)})
        return out["action_dist_inputs"]

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions for a batch of observations (n, n_obs): greedy, or sampled with ``rng``."""
        inputs = self.logits(obs).numpy().astype(np.float64)
        n, s = len(obs), self.actions.n_symbols
        if self.actions.settings.actions == "discrete":
            logits = inputs.reshape(n, s, len(self.actions.levels))
            if rng is None:
                return logits.argmax(axis=2)
            p = np.exp(logits - logits.max(axis=2, keepdims=True))
            p /= p.sum(axis=2, keepdims=True)
            u = rng.random((n, s, 1))
            return (p.cumsum(axis=2) < u).sum(axis=2).clip(0, p.shape[2] - 1)
        mean, log_std = inputs[:, :s], inputs[:, s:]
        a = mean if rng is None else mean + np.exp(log_std) * rng.standard_normal(mean.shape)
        # RLlib normalises Box actions to [-1, 1] (normalize_actions): map back to [low, 1].
        low = self.actions.low
        return low + (np.clip(a, -1.0, 1.0) + 1.0) * (1.0 - low) / 2.0

    def probabilities(self, obs: Any) -> Any:
        """Torch (n, S * L) per-symbol softmax probabilities of each level (discrete policies).

        ``forward_inference`` runs under ``no_grad``; ``forward_train`` is the same forward pass
        (the same ``action_dist_inputs``, checked in the tests) with gradients, which captum needs.
        """
        import torch

        out = self.module.forward_train({"obs": obs})["action_dist_inputs"]
        s, levels = self.actions.n_symbols, len(self.actions.levels)
        return torch.softmax(out.reshape(-1, s, levels), dim=2).reshape(-1, s * levels)


class PpoModel(TradingModel):
    """A PPO policy from the registry; see the module docstring."""

    kind = "ppo"
    method = "captum.IntegratedGradients"
    Params = PpoParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        self._blob: bytes | None = None  # the rl_module folder, packed
        self._meta: dict[str, Any] | None = None
        self._policy: Policy | None = None
        # what the registry records beside a saved policy; the training driver registers its own
        self.training_window: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}
        # start-up training (no policy yet): trains on the warm-up bars kept in ``_history``
        self.trainer: PolicyTrainer | None = None
        self._history: list[BarBatch] = []
        self._setup_state()

    # --- artefacts ------------------------------------------------------------------------------

    def load_artifacts(self, folder: Path) -> None:
        folder = Path(folder)
        meta_path, module_dir = folder / POLICY_FILE, folder / MODULE_DIR
        if not meta_path.exists() or not module_dir.is_dir():
            raise FileNotFoundError(f"{folder} is not a saved ppo policy ({POLICY_FILE} and {MODULE_DIR}/ expected); "
                                    "train one with `titan-ray train-ppo`")
        self._adopt(json.loads(meta_path.read_text()), _pack(module_dir), f"the policy in {folder}")

    def _adopt(self, meta: dict[str, Any], blob: bytes, where: str) -> None:
        if tuple(meta["symbols"]) != self.symbols:
            raise ValueError(f"{where} trades {meta['symbols']}, but the arena's symbols are "
                             f"{list(self.symbols)}; a PPO policy needs the symbols it was trained on, in order")
        self._meta, self._blob = meta, blob
        self._setup_state()

    def save_artifacts(self, folder: Path) -> None:
        if self._meta is None or self._blob is None:
            raise RuntimeError(f"model {self.name!r} has no policy to save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / POLICY_FILE).write_text(json.dumps(self._meta, indent=2) + "\n")
        with tarfile.open(fileobj=io.BytesIO(self._blob), mode="r:gz") as tar:
            tar.extractall(folder / MODULE_DIR, filter="data")

    def _setup_state(self) -> None:
        """Per-run state: the feature stream, the held fractions, the sampling generator."""
        n = len(self.symbols)
        self._fractions = np.zeros(n)
        self._rng = np.random.default_rng(self.seed)
        if self._meta is None:
            self.features = None
            return
        settings = EnvSettings.model_validate(self._meta["env"])
        self.settings = settings
        self.actions = ActionMap(settings, n)
        self.scaler = FeatureScaler.from_dict(self._meta["scaler"])
        self.features = FeatureEngine(self.scaler.names)
        self._stream = self.features.stream()
        self.long_only = settings.long_only

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_policy"] = None  # rebuilt from the packed files where the copy lands
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            if self._blob is None:
                raise RuntimeError(
                    f"model {self.name!r} (ppo) has no trained policy: give it `artifact: NAME` in the arena "
                    "config (a policy registered by `titan-ray train-ppo`), or leave `artifact` out in an arena, "
                    "which trains one on its warm-up bars (replay.warmup_bars)")
            with tempfile.TemporaryDirectory(prefix="titan-ray-ppo-") as tmp:
                with tarfile.open(fileobj=io.BytesIO(self._blob), mode="r:gz") as tar:
                    tar.extractall(tmp, filter="data")
                module = load_module(Path(tmp))
            self._policy = Policy(module, self.actions)
        return self._policy

    # --- trading --------------------------------------------------------------------------------

    def observe(self, bars: BarBatch) -> None:
        if self._meta is None:
            if self.trainer is None:
                _ = self.policy  # raises the "no trained policy" error
            self._history.append(bars)  # warm-up bars: what the start-up policy trains on
            return
        self._stream.update(bars)

    def _pieces(self, bars: BarBatch) -> Iterator[BarBatch]:
        if self._meta is None and self.trainer is not None:
            self._train(bars.start)
        yield bars

    def _train(self, first: int) -> None:
        """Get a policy for the warm-up bars seen (every bar before ``first``) and catch up on them."""
        if not self._history:
            raise ValueError(f"model {self.name!r} (ppo) has no policy and no warm-up bars to train one on before "
                             f"bar {first}: set replay.warmup_bars (at least {self.params.min_history()}) or give "
                             "it `artifact: NAME`")
        history = BarBatch.concat(self._history)
        assert history.stop == first, (history.stop, first)  # the bars before the first decision, no more
        folder = self.trainer(self, history)
        self.load_artifacts(folder)
        if not self.long_only:  # the ledger was told the side before training: a start-up book is long-only
            raise RuntimeError(f"the start-up policy in {folder} can go short, but model {self.name!r} trades a "
                               "long-only book; a start-up trainer must train levels >= 0")
        self._history = []
        self._stream.update(history)

    def _fresh(self, symbols: Sequence[str]) -> PpoModel:
        fresh = PpoModel(self.name, self.params.model_dump(), tuple(symbols), seed=self.seed)
        if self._meta is not None and self._blob is not None:
            fresh._adopt(self._meta, self._blob, f"the policy of model {self.name!r}")
            fresh._policy = self.policy  # the RLModule only reads while deciding: load it once, share it
        return fresh

    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        with torch_threads(self.params.threads):
            return self._act(bars)

    def _act(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        policy = self.policy
        feats = self._stream.update(bars)
        norm = self.scaler.transform(feats, self.settings.clip_obs)
        n_t, n_s = len(bars), len(self.symbols)
        weights = np.empty((n_t, n_s))
        obs_rows = np.empty((n_t, norm.shape[1] * norm.shape[2] + n_s), dtype=np.float32)
        actions = np.empty((n_t, n_s))
        held = np.empty((n_t, n_s))
        rng = None if self.params.deterministic else self._rng
        for t in range(n_t):
            obs = observation(norm[t], self._fractions)
            a = policy.act(obs[None, :], rng)[0]
            obs_rows[t], actions[t], held[t] = obs, a, self._fractions
            self._fractions = self.actions.fractions(a)
            weights[t] = self._fractions * self.actions.budget
        return weights, {"obs": obs_rows, "action": actions, "raw": feats, "held": held}

    def _explain(self, rows, cols, old, new, info, bars):
        with torch_threads(self.params.threads):
            return self._attribute(rows, cols, info)

    def _attribute(self, rows: np.ndarray, cols: np.ndarray, info: dict[str, np.ndarray]) -> Reasons:
        names = [*self.scaler.names, "held_weight", "other_symbols"]
        n_f = len(self.scaler.names)
        held = info["held"][rows, cols] * self.actions.budget
        values = np.column_stack([info["raw"][rows, cols], held, np.full(len(rows), np.nan)])
        if self.settings.actions != "discrete":
            # A Gaussian policy's mean has no "chosen class" to attribute; show inputs only.
            return Reasons(names, values, np.full(values.shape, np.nan), np.nan)
        attr, base, gap = self._integrated_gradients(info["obs"][rows], cols, info["action"][rows, cols])
        n_s = len(self.symbols)
        own = np.take_along_axis(attr, cols[:, None] * n_f + np.arange(n_f)[None, :], axis=1)  # the symbol's block
        weight_attr = attr[np.arange(len(rows)), n_s * n_f + cols]  # its held fraction, after the feature blocks
        other = attr.sum(axis=1) - own.sum(axis=1) - weight_attr
        return Reasons(names, values, np.column_stack([own, weight_attr, other]), base, gap=gap)

    def _integrated_gradients(self, obs: np.ndarray, cols: np.ndarray, chosen: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """IG of P(chosen level of symbol col) over each observation: (attributions, base, gap)."""
        import torch
        from captum.attr import IntegratedGradients

        policy = self.policy
        x = torch.as_tensor(obs, dtype=torch.float32)
        target = torch.as_tensor(cols * len(self.actions.levels) + chosen.astype(np.int64), dtype=torch.long)
        baseline = torch.zeros_like(x)
        ig = IntegratedGradients(policy.probabilities)
        attr, delta = ig.attribute(x, baselines=baseline, target=target, n_steps=self.params.ig_steps,
                                   return_convergence_delta=True)
        with torch.no_grad():
            base = policy.probabilities(baseline).gather(1, target[:, None])[:, 0]
        return (attr.detach().numpy().astype(np.float64), base.numpy().astype(np.float64),
                np.abs(delta.detach().numpy().astype(np.float64)))

    @classmethod
    def render(cls, symbol: str, old: float, new: float, features: tuple[Feature, ...]) -> str:
        ranked = sorted((f for f in features if math.isfinite(f.attribution)), key=lambda f: -abs(f.attribution))
        if not ranked:
            return f"{action_phrase(symbol, old, new)}: the PPO policy's action."
        drivers = ", ".join(
            f"{f.name}" + (f" = {f.value:.4g}" if math.isfinite(f.value) else "") + f" ({f.attribution:+.3f})"
            for f in ranked[:3]
        )
        return f"{action_phrase(symbol, old, new)}: the PPO policy chose it; top drivers of its probability {drivers}."
