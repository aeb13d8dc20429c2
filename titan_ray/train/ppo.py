"""PPO on RLlib's new API stack, run through ``ray.tune.Tuner``, registered for the arena.

The parts:

- ``PpoConfig``: the YAML (``tune_configs/ppo.yaml``, ``tune_configs/ppo_small.yaml``): data and
  the training period (``train_bars``; its last ``validation_bars`` are held out of the episodes),
  the features, the costs (the arena's ``ledger`` / ``risk`` sections), the env settings, PPO's
  settings (any of which ``search`` may sample), rollout resources, iterations and checkpoints,
  the Tune settings (metric, ASHA) and where the winner is registered.
- ``build_windows``: loads the bars of the training period only, computes the feature pipeline's
  rows in bulk, fits the scaler on the episodes' window and returns the env's window and the
  validation window (same scaler).
- ``train_ppo``: registers the env with Tune under a per-run name (the window travels inside the
  env creator), runs the trials (``tune.Tuner("PPO", ...)``, checkpoints in the run folder), then
  runs each trial's final policy greedily over the validation bars with the arena's ledger and
  registers the best (kind ``ppo``: the RLModule checkpoint and ``policy.json``). The summary
  table (trial, searched settings, iterations, training return, validation return and Sharpe,
  buy-and-hold over the same bars) is printed and saved.
- ``StartupTrainer`` and ``startup_models``: an arena ``ppo`` model with no ``artifact`` trains at
  start-up, in its own actor, on the warm-up bars it saw before its first decision (the
  ``STARTUP_*`` recipe below: RLlib PPO built directly, no Tune, on one thread, seeded, so the
  same bars give the same policy bit for bit). The policy is registered as ``NAME-startup`` with
  the recipe and the bars' fingerprint; a later run whose warm-up bars and recipe match loads it
  instead of training.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from titan_ray.config import (
    ArenaConfig,
    ConfigError,
    DataConfig,
    LedgerConfig,
    RegistryConfig,
    RiskConfig,
    TrackingConfig,
)
from titan_ray.data.providers import make_provider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import periods_per_year
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.metrics.performance import returns_from_equity, sharpe
from titan_ray.ml.env import ActionMap, EnvSettings, MarketWindow, TradingEnv
from titan_ray.models.ppo import Policy, PpoModel, load_module, quiet_rllib, torch_threads, write_policy
from titan_ray.registry import ModelRegistry, ModelVersion, default_root, fingerprint
from titan_ray.tracking import checked_uri, log_run
from titan_ray.train.space import (
    Domain,
    Strict,
    TuneSettings,
    echo,
    load_yaml,
    lookup,
    param_cells,
    progress_callback,
    text_table,
)

TRAIN_METRIC = "env_runners/episode_return_mean"


class PpoSettings(Strict):
    """RLlib PPO settings (``PPOConfig.training`` / ``.rl_module``); ``search`` may sample the numbers."""

    lr: float = Field(3e-4, gt=0, description="Adam learning rate")
    gamma: float = Field(0.99, gt=0, le=1, description="discount per bar")
    lambda_: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    clip_param: float = Field(0.2, gt=0, description="PPO's policy-ratio clip")
    entropy_coeff: float = Field(0.01, ge=0, description="entropy bonus (exploration)")
    kl_coeff: float = Field(0.2, ge=0, description="initial weight of the KL penalty against the sampling "
                            "policy (RLlib adapts it); 0 = no KL penalty, the clip alone")
    vf_loss_coeff: float = Field(0.5, ge=0, description="value-function loss weight")
    grad_clip: float | None = Field(0.5, gt=0, description="gradient-norm clip; null = none")
    num_epochs: int = Field(8, ge=1, description="passes over each train batch")
    minibatch_size: int = Field(256, ge=8, description="samples per SGD step")
    train_batch_size: int = Field(4000, ge=32, description="env steps per training iteration")
    fcnet_hiddens: list[int] = Field([64, 64], min_length=1, description="hidden layers of the policy and value nets")
    fcnet_activation: Literal["tanh", "relu"] = "tanh"

    @model_validator(mode="after")
    def _sizes(self) -> PpoSettings:
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(f"minibatch_size ({self.minibatch_size}) must not exceed train_batch_size "
                             f"({self.train_batch_size})")
        return self


SEARCHABLE = ("lr", "gamma", "lambda_", "clip_param", "entropy_coeff", "vf_loss_coeff", "grad_clip", "num_epochs",
              "minibatch_size")


class RolloutSettings(Strict):
    num_env_runners: int = Field(0, ge=0, description="sampling actors per trial; 0 = sample in the trial itself "
                                 "(best on 2 cores)")
    num_envs_per_env_runner: int = Field(4, ge=1, description="vectorised envs per runner")


class TrainingSettings(Strict):
    iterations: int = Field(50, ge=1, description="training iterations of a full trial (ASHA's max_t)")
    checkpoint_every: int = Field(10, ge=0, description="iterations between checkpoints (0 = only at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept per trial (the latest)")


class PpoConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,80}$", description="registry name of the trained policy")
    seed: int = Field(7, description="seeds the data, the env, RLlib and the search")
    data: DataConfig = DataConfig()
    train_bars: int = Field(ge=100, description="the first N bars are the training period; the arena trades after")
    validation_bars: int = Field(
        0, ge=0, description="the training period's last N bars: never in an episode; each trial's policy is "
        "scored on them and the best registered (0 = pick by the training metric)"
    )
    features: list[str] | None = Field(None, description="feature names (titan_ray.features); null = all")
    ledger: LedgerConfig = LedgerConfig()
    risk: RiskConfig = RiskConfig()
    env: EnvSettings = EnvSettings()
    ppo: PpoSettings = PpoSettings()
    rollout: RolloutSettings = RolloutSettings()
    training: TrainingSettings = TrainingSettings()
    search: dict[str, Domain] = Field(default_factory=dict, description=f"sampled PPO settings: {', '.join(SEARCHABLE)}")
    tune: TuneSettings = TuneSettings(num_samples=1, metric=TRAIN_METRIC)
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    storage: str = Field("runs", description="folder under which each training run gets its run folder")

    @model_validator(mode="after")
    def _check(self) -> PpoConfig:
        if self.features is not None:
            try:
                FeatureEngine(self.features)
            except ValueError as err:
                raise ValueError(f"features: {err}") from None
        for key, domain in self.search.items():
            if key not in SEARCHABLE:
                raise ValueError(f"search.{key}: not a searchable PPO setting; use one of {', '.join(SEARCHABLE)}")
            for value in domain.examples():
                try:
                    PpoSettings.model_validate({**self.ppo.model_dump(), key: value})
                except ValueError as err:
                    raise ValueError(f"search.{key} = {value!r}: {str(err).splitlines()[-1].strip()}") from None
        episode_room = self.train_bars - self.validation_bars
        if episode_room < self.env.episode_bars + 50:
            raise ValueError(f"train_bars - validation_bars = {episode_room} leaves no room for episodes of "
                             f"env.episode_bars={self.env.episode_bars} after the features' warm-up; lower "
                             "validation_bars or env.episode_bars, or raise train_bars")
        if self.validation_bars and self.validation_bars < 10:
            raise ValueError("validation_bars: use 0 (none) or at least 10 bars")
        if self.tune.metric not in (TRAIN_METRIC, "val_return", "val_sharpe") and not self.tune.metric.startswith(
                ("env_runners/", "learners/")):
            raise ValueError(f"tune.metric: {self.tune.metric!r} is not reported; use {TRAIN_METRIC}")
        if self.tune.metric in ("val_return", "val_sharpe"):
            raise ValueError(f"tune.metric: {self.tune.metric} is computed after the trials (see validation_bars); "
                             f"Tune needs a metric reported while training, such as {TRAIN_METRIC}")
        return self


def load_ppo_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PpoConfig:
    return load_yaml(path, PpoConfig, what="PPO", overrides=overrides)


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    train: MarketWindow  # episodes are drawn from it
    validation: MarketWindow | None  # the whole training period; greedy runs start at ``validation_start``
    validation_start: int
    bars: BarBatch  # the training period
    periods_per_year: float


def build_windows(cfg: PpoConfig) -> Windows:
    market = make_provider(cfg.data, cfg.seed).load()
    if cfg.train_bars > len(market.bars):
        raise ConfigError(f"train_bars: {cfg.train_bars} but the data has only {len(market.bars)} bars; lower "
                          "train_bars or load more data (data.bars)")
    bars = market.bars.slice(0, cfg.train_bars)  # the trading period is never touched
    engine = FeatureEngine(cfg.features)
    raw = engine.transform(bars)
    cut = cfg.train_bars - cfg.validation_bars
    clip = cfg.env.clip_obs
    train = MarketWindow.build(bars.slice(0, cut), raw[:cut], engine.names, calendar=market.calendar, clip=clip)
    validation = None
    if cfg.validation_bars:
        validation = MarketWindow.build(bars, raw, engine.names, calendar=market.calendar, clip=clip,
                                        scaler=train.scaler)
    return Windows(train, validation, cut - 1, bars, periods_per_year(market.frequency, market.calendar))


# --- evaluation -------------------------------------------------------------------------------


def greedy_run(policy: Any, window: MarketWindow, cfg: PpoConfig, start: int, steps: int) -> np.ndarray:
    """Equity after each bar of a greedy episode from ``start`` (flat) for ``steps`` bars."""
    return _episode(window, cfg, start, steps, lambda obs: policy.act(obs[None, :])[0])


def hold_run(window: MarketWindow, cfg: PpoConfig, start: int, steps: int) -> np.ndarray:
    """Equity of holding every symbol at its full budget over the same bars (the yardstick)."""
    return _episode(window, cfg, start, steps, lambda obs: np.ones(window.n_symbols),
                    actions="continuous", allow_short=False)


def _episode(window: MarketWindow, cfg: PpoConfig, start: int, steps: int,
             act: Callable[[np.ndarray], np.ndarray], **settings: Any) -> np.ndarray:
    """Equity after each bar of one episode whose actions ``act(observation)`` chooses."""
    env = TradingEnv({"window": window, "ledger": cfg.ledger, "risk": cfg.risk,
                      "settings": cfg.env.model_copy(update={"episode_bars": min(cfg.env.episode_bars, steps),
                                                             **settings})})
    obs, _info = env.reset(options={"start": start, "steps": steps})
    equity, done = [], False
    while not done:
        obs, _r, term, trunc, info = env.step(act(obs))
        equity.append(info["equity"])
        done = term or trunc
    return np.asarray(equity)


def _scores(equity: np.ndarray, initial: float, periods: float) -> dict[str, float]:
    s = sharpe(returns_from_equity(equity, initial), periods)
    return {"return": float(equity[-1] / initial - 1.0), "sharpe": float(s) if np.isfinite(s) else 0.0}


# --- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PpoResult:
    run_dir: Path
    registered: str
    rows: list[dict[str, Any]]
    table: str
    best: dict[str, Any]


def algorithm_config(cfg: PpoConfig, env_name: str | type) -> Any:
    """The RLlib ``PPOConfig`` of a trial (searched settings as Tune domains); ``env_name`` is an env
    registered with Tune, or an env class."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    p = cfg.ppo.model_dump()
    for key, domain in cfg.search.items():
        p[key] = domain.to_tune()
    r = cfg.rollout
    envs = r.num_envs_per_env_runner * max(1, r.num_env_runners)
    fragment = max(1, cfg.ppo.train_batch_size // envs)
    return (
        PPOConfig()
        .environment(env_name, env_config={"ledger": cfg.ledger.model_dump(mode="json"),
                                           "risk": cfg.risk.model_dump(mode="json"),
                                           "settings": cfg.env.model_dump(mode="json")})
        .env_runners(num_env_runners=r.num_env_runners, num_envs_per_env_runner=r.num_envs_per_env_runner,
                     rollout_fragment_length=fragment)
        .training(lr=p["lr"], gamma=p["gamma"], lambda_=p["lambda_"], clip_param=p["clip_param"],
                  entropy_coeff=p["entropy_coeff"], vf_loss_coeff=p["vf_loss_coeff"], grad_clip=p["grad_clip"],
                  use_kl_loss=cfg.ppo.kl_coeff > 0, kl_coeff=cfg.ppo.kl_coeff,
                  num_epochs=p["num_epochs"], minibatch_size=p["minibatch_size"],
                  train_batch_size_per_learner=cfg.ppo.train_batch_size)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(cfg.ppo.fcnet_hiddens),
                                                   fcnet_activation=cfg.ppo.fcnet_activation))
        .resources(num_cpus_for_main_process=cfg.tune.cpus_per_trial)
        .debugging(seed=cfg.seed)
        .reporting(metrics_num_episodes_for_smoothing=20)
    )


def module_dir(checkpoint: Path) -> Path:
    """The RLModule inside an Algorithm checkpoint (RLlib's new API stack layout)."""
    from ray.rllib.core import (
        COMPONENT_LEARNER,
        COMPONENT_LEARNER_GROUP,
        COMPONENT_RL_MODULE,
        DEFAULT_MODULE_ID,
    )

    return Path(checkpoint) / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER / COMPONENT_RL_MODULE / DEFAULT_MODULE_ID


def train_ppo(cfg: PpoConfig, run_dir: Path, *, progress: bool = True, print_fn: Any = None) -> PpoResult:
    """Train, pick, register; Ray must be up. See the module docstring."""
    emit = print_fn or echo
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    run_dir = Path(run_dir).resolve()
    checked_uri(cfg.tracking.mlflow_uri)  # a bad setting fails before the training, not after it
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    w = build_windows(cfg)
    window = w.train
    TradingEnv({"window": window, "ledger": cfg.ledger, "risk": cfg.risk, "settings": cfg.env})  # fail early
    env_name = f"titan_ray_trading_{uuid.uuid4().hex[:8]}"
    # The window goes to the object store once; every env (on any node) maps it read-only.
    window_ref = ray.put(window)
    tune.register_env(env_name, lambda env_config: TradingEnv({**env_config, "window": ray.get(window_ref)}))
    emit(f"train-ppo {cfg.name}: {cfg.tune.num_samples} trial(s) x {cfg.training.iterations} iterations of "
             f"{cfg.ppo.train_batch_size} steps; {window.n_symbols} symbols x {len(window.scaler.names)} features; "
             f"episodes of {cfg.env.episode_bars} bars from bars {window.first_valid}..{len(window.bars) - 1}"
             f"{f', validation on the next {cfg.validation_bars}' if cfg.validation_bars else ''}; "
             f"run folder {run_dir}")

    tuner = tune.Tuner(
        "PPO",
        param_space=algorithm_config(cfg, env_name),
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric, mode=cfg.tune.mode, num_samples=cfg.tune.num_samples,
            scheduler=cfg.tune.scheduler_for(cfg.training.iterations),
            # the generator's own cap: Tune ignores TuneConfig.max_concurrent_trials with a generator
            search_alg=BasicVariantGenerator(random_state=cfg.seed, max_concurrent=cfg.tune.max_concurrent_trials),
        ),
        run_config=tune.RunConfig(
            name="trials", storage_path=str(run_dir), verbose=0,
            callbacks=[progress_callback(cfg.tune.metric, cfg.training.iterations, print_fn)] if progress else [],
            stop={"training_iteration": cfg.training.iterations},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=cfg.training.checkpoint_every,
                                                    checkpoint_at_end=True,
                                                    num_to_keep=cfg.training.keep_checkpoints),
        ),
    )
    grid = tuner.fit()

    actions = ActionMap(cfg.env, window.n_symbols)
    initial = float(cfg.ledger.initial_cash)
    hold = None
    if w.validation is not None:
        hold = _scores(hold_run(w.validation, cfg, w.validation_start, cfg.validation_bars), initial,
                       w.periods_per_year)
    rows = []
    for res in grid:
        m = res.metrics or {}
        row: dict[str, Any] = {
            "trial": m.get("trial_id") or Path(res.path).name,
            "config": {k: lookup(res.config, k) for k in cfg.search},
            "iterations": int(m.get("training_iteration", 0)),
            "train_return": float(lookup(m, TRAIN_METRIC, np.nan)),
            "val_return": np.nan, "val_sharpe": np.nan, "checkpoint": None,
            "error": str(res.error) if res.error else None,
        }
        if res.checkpoint is not None:
            row["checkpoint"] = str(module_dir(Path(res.checkpoint.path)))
            if w.validation is not None:
                policy = Policy(load_module(Path(row["checkpoint"])), actions)
                equity = greedy_run(policy, w.validation, cfg, w.validation_start, cfg.validation_bars)
                s = _scores(equity, initial, w.periods_per_year)
                row["val_return"], row["val_sharpe"] = s["return"], s["sharpe"]
        rows.append(row)
    usable = [r for r in rows if r["checkpoint"] is not None]
    if not usable:
        errors = [r["error"] for r in rows if r["error"]]
        raise RuntimeError(f"no PPO trial left a checkpoint{'; first error: ' + errors[0] if errors else ''}")
    if w.validation is not None:
        best = max(usable, key=lambda r: (r["val_return"], r["train_return"]))
    else:
        sign = 1 if cfg.tune.mode == "max" else -1
        best = max(usable, key=lambda r: sign * np.nan_to_num(r["train_return"], nan=-np.inf))
    for r in rows:
        r["status"] = "best" if r is best else ("complete" if r["iterations"] >= cfg.training.iterations
                                                else f"stopped at {r['iterations']}" if r["iterations"] else "failed")

    def save(folder: Path) -> None:
        write_policy(folder, Path(best["checkpoint"]), symbols=w.bars.symbols, scaler=window.scaler.to_dict(),
                     env=cfg.env.model_dump(mode="json"),
                     extra={"ppo": {**cfg.ppo.model_dump(mode="json"), **best["config"]},
                            "checkpoint": best["checkpoint"]})

    metrics = {"train_episode_return_mean": best["train_return"], "iterations": float(best["iterations"])}
    if w.validation is not None:
        metrics |= {"val_return": best["val_return"], "val_sharpe": best["val_sharpe"],
                    "val_buy_and_hold_return": hold["return"], "val_buy_and_hold_sharpe": hold["sharpe"]}
    version = ModelRegistry(cfg.registry.path).register(
        cfg.name, "ppo", {"deterministic": True}, save=save, features=window.scaler.names,
        training_window={"start_bar": 0, "stop_bar": cfg.train_bars, "episode_bars": [window.first_valid,
                         len(window.bars)], "validation_bars": cfg.validation_bars,
                         "first_timestamp": int(w.bars.timestamps[0]), "last_timestamp": int(w.bars.timestamps[-1])},
        metrics=metrics, data_fingerprint=fingerprint(w.bars),
        extra={"run_dir": str(run_dir), "trials": len(rows), "env": cfg.env.model_dump(mode="json")},
    )
    rows.sort(key=lambda r: (r["status"] != "best", -np.nan_to_num(r["val_return"], nan=-np.inf),
                             -np.nan_to_num(r["train_return"], nan=-np.inf)))
    table = summary_table(rows, list(cfg.search), hold)
    _save(run_dir, rows, table, version.ref, best)
    url = log_run(cfg.tracking.mlflow_uri, "titan-ray-ppo", f"{cfg.name}-{run_dir.name}",
                  params={**cfg.model_dump(mode="json", exclude={"tracking"}), "best": best["config"],
                          "registered": version.ref},
                  metrics=metrics, artifacts=[run_dir / "summary.txt", run_dir / "best.json"],
                  tags={"titan_ray.kind": "ppo", "titan_ray.model": cfg.name})
    if url:
        emit(f"tracked in MLflow: {url}")
    return PpoResult(run_dir, version.ref, rows, table, best)


def summary_table(rows: list[dict[str, Any]], params: list[str], hold: dict[str, float] | None) -> str:
    head = ["trial", *params, "iters", "train_return", "val_return", "val_sharpe", "status"]
    body = []
    for r in rows:
        cells = [str(r["trial"]), *param_cells(r["config"], params)]
        cells += [str(r["iterations"]), f"{r['train_return']:.3f}", f"{r['val_return']:+.4f}", f"{r['val_sharpe']:.3f}",
                  r["status"]]
        body.append(cells)
    note = "(train_return: mean episode reward while training, in % of starting equity"
    if hold is not None:
        note += f"; buy-and-hold over the validation bars: return {hold['return']:+.4f}, Sharpe {hold['sharpe']:.3f}"
    return text_table(head, body) + "\n" + note + ")"


def _save(run_dir: Path, rows: list[dict[str, Any]], table: str, ref: str, best: dict[str, Any]) -> None:
    pd.DataFrame([{k: v for k, v in r.items() if k != "config"} | r["config"] for r in rows]).to_csv(
        run_dir / "summary.csv", index=False)
    (run_dir / "summary.txt").write_text(table + "\n")
    (run_dir / "best.json").write_text(json.dumps({"registered": ref, **best}, indent=2, default=str) + "\n")


# --- start-up training: the policy of an arena `ppo` model with no `artifact` --------------------

# The recipe, chosen on the default arena (12 symbols, 1,000 warm-up bars of 15 minutes, 11 bps a
# trade; docs/training.md has the figures): long or flat per symbol, so the ledger's long-only
# book fits; slow features (``PpoParams.train_features``), so a greedy policy does not flip with
# every bar's noise; a short horizon (gamma 0.5) because a trade's cost is paid at once; and
# PPO's ratio (one for all the symbols' actions together) clipped at 0.5 with no KL penalty: the
# defaults (0.3 and an adaptive KL penalty) let each symbol's policy move only a little per
# update, and learned the same several times slower.
STARTUP_ENV = EnvSettings(episode_bars=64, actions="discrete", levels=(0.0, 1.0))
STARTUP_PPO = PpoSettings(lr=3e-3, gamma=0.5, lambda_=0.5, clip_param=0.5, kl_coeff=0.0, entropy_coeff=0.0,
                          num_epochs=20, minibatch_size=512, train_batch_size=4096, fcnet_hiddens=[32, 32])
STARTUP_ROLLOUT = RolloutSettings(num_env_runners=0, num_envs_per_env_runner=32)
STEPS_PER_CPU_SECOND = 1300  # what the estimate printed before training assumes (measured: 1,300-1,500)
RLLIB_START_S = 4.0  # importing RLlib and building the algorithm (measured: ~4 CPU-s)


def startup_config(name: str, history: BarBatch, params: Any, *, seed: int, ledger: LedgerConfig,
                   risk: RiskConfig, registry: str) -> PpoConfig:
    """The start-up recipe as a ``PpoConfig``: ``params`` (``PpoParams``) set the steps and features."""
    batch = STARTUP_PPO.train_batch_size
    return PpoConfig(
        name=name, seed=seed, train_bars=len(history), features=list(params.train_features), ledger=ledger,
        risk=risk, env=STARTUP_ENV, ppo=STARTUP_PPO, rollout=STARTUP_ROLLOUT,
        training=TrainingSettings(iterations=max(1, math.ceil(params.train_steps / batch)), checkpoint_every=0,
                                  keep_checkpoints=1),
        registry=RegistryConfig(path=registry),
    )


def startup_recipe(cfg: PpoConfig, calendar: str) -> dict[str, Any]:
    """What makes two start-up policies the same, besides their bars: the registry's match key."""
    recipe = cfg.model_dump(mode="json", include={"seed", "features", "ledger", "risk", "env", "ppo", "rollout",
                                                  "training"})
    recipe["ledger"].pop("journal", None)  # where the arena's ledger journals changes no trade
    return json.loads(json.dumps({**recipe, "calendar": calendar}))


@dataclass(frozen=True)
class StartupTrainer:
    """An arena ``ppo`` model's ``trainer`` (``models.ppo.PolicyTrainer``): the folder of a policy for
    the warm-up bars the model hands over, from the registry when one was trained on the same bars
    with the same recipe, else trained here (in the model's actor) and registered."""

    registry: str  # the registry's root, absolute
    name: str  # the registry name of this model's start-up policies
    calendar: str
    ledger: LedgerConfig
    risk: RiskConfig
    say: Callable[[str], None] = echo

    def __call__(self, model: PpoModel, history: BarBatch) -> Path:
        found = self.find(model, history)
        if found is not None:
            self.say(f"{model.name}: the PPO policy {found.ref} in {self.registry} was trained on these "
                     f"{len(history):,} warm-up bars; using it")
            return found.path
        cfg = self.config(model, history)
        return train_startup(cfg, history, calendar=self.calendar, recipe=startup_recipe(cfg, self.calendar),
                             label=model.name, say=self.say).path

    def config(self, model: PpoModel, history: BarBatch) -> PpoConfig:
        return startup_config(self.name, history, model.params, seed=model.seed, ledger=self.ledger, risk=self.risk,
                              registry=self.registry)

    def find(self, model: PpoModel, history: BarBatch) -> ModelVersion | None:
        """The latest registered start-up policy trained on ``history`` with this recipe, if any."""
        recipe, key = startup_recipe(self.config(model, history), self.calendar), fingerprint(history)
        for version in reversed(ModelRegistry(self.registry).versions(self.name)):
            if version.meta.get("data_fingerprint") == key and version.meta.get("extra", {}).get("recipe") == recipe:
                return version
        return None


def train_startup(cfg: PpoConfig, history: BarBatch, *, calendar: str, recipe: dict[str, Any], label: str,
                  say: Callable[[str], None] = echo, clock: Callable[[], float] = time.perf_counter) -> ModelVersion:
    """Train the start-up policy on ``history`` (RLlib PPO, no Tune, in this process), register it."""
    engine = FeatureEngine(cfg.features)
    window = MarketWindow.build(history, engine.transform(history), engine.names, calendar=calendar,
                                clip=cfg.env.clip_obs)
    iterations, batch = cfg.training.iterations, cfg.ppo.train_batch_size
    say(f"{label}: no PPO policy in {cfg.registry.path} for these warm-up bars yet; training one with RLlib PPO on "
        f"bars {history.start}..{history.stop - 1} ({window.n_symbols} symbols x {', '.join(engine.names)}): "
        f"{iterations} iteration{'s' if iterations > 1 else ''} of {batch:,} steps, about "
        f"{RLLIB_START_S + iterations * batch / STEPS_PER_CPU_SECOND:.0f} s on an idle core")
    start = clock()
    algo_cfg = algorithm_config(cfg, TradingEnv)
    algo_cfg.environment(env_config={**algo_cfg.env_config, "window": window}).debugging(log_sys_usage=False)
    # one torch thread: the arena's other models share the cores, and the floats repeat run to run
    with torch_threads(1), quiet_rllib():
        algo = algo_cfg.build_algo()
        try:
            returns = []
            for i in range(iterations):
                began = clock()
                returns.append(float(lookup(algo.train(), TRAIN_METRIC, np.nan)))
                if i == 0 and iterations > 1:
                    took = clock() - began
                    say(f"{label}: iteration 1/{iterations} took {took:.1f} s; about {took * (iterations - 1):.0f} s "
                        "to go")
            with tempfile.TemporaryDirectory(prefix="titan-ray-ppo-") as tmp:
                module = module_dir(Path(algo.save_to_path(str(Path(tmp) / "algorithm"))))
                metrics = {"train_episode_return_first": returns[0], "train_episode_return_mean": returns[-1],
                           "iterations": float(iterations), "env_steps": float(iterations * batch),
                           "train_seconds": clock() - start}
                version = _register_startup(cfg, history, window, module, recipe, metrics)
        finally:
            algo.stop()
            # RLlib makes an empty folder under ~/ray_results for an algorithm built outside Tune: no trace in ~
            shutil.rmtree(algo.logdir, ignore_errors=True)
            with contextlib.suppress(OSError):  # ~/ray_results itself, unless something else is in it
                Path(algo.logdir).parent.rmdir()
    m = version.meta["metrics"]
    say(f"{label}: trained in {clock() - start:.0f} s ({iterations * batch:,} steps; mean episode return "
        f"{returns[0]:+.2f} -> {returns[-1]:+.2f} % per {cfg.env.episode_bars} bars); greedy over the warm-up bars "
        f"{m['warmup_greedy_return']:+.1%} (buy-and-hold {m['warmup_buy_and_hold_return']:+.1%}); registered "
        f"{version.ref}")
    return version


def _register_startup(cfg: PpoConfig, history: BarBatch, window: MarketWindow, module: Path, recipe: dict[str, Any],
                      metrics: dict[str, float]) -> ModelVersion:
    """Register a start-up policy (the RLModule in ``module``), with its greedy and buy-and-hold returns
    over the warm-up bars it trained on, its recipe and the bars' fingerprint (what a later run matches)."""
    policy = Policy(load_module(module), ActionMap(cfg.env, window.n_symbols))
    first, n = window.first_valid, len(history) - 1 - window.first_valid
    initial = float(cfg.ledger.initial_cash)
    metrics = {**metrics, "warmup_greedy_return": float(greedy_run(policy, window, cfg, first, n)[-1] / initial - 1),
               "warmup_buy_and_hold_return": float(hold_run(window, cfg, first, n)[-1] / initial - 1)}
    return ModelRegistry(cfg.registry.path).register(
        cfg.name, "ppo", {"deterministic": True},
        save=lambda folder: write_policy(folder, module, symbols=history.symbols, scaler=window.scaler.to_dict(),
                                         env=cfg.env.model_dump(mode="json"),
                                         extra={"ppo": cfg.ppo.model_dump(mode="json")}),
        features=window.scaler.names, metrics=metrics, data_fingerprint=fingerprint(history),
        training_window={"start_bar": history.start, "stop_bar": history.stop,
                         "episode_bars": [window.first_valid, len(history)],
                         "first_timestamp": int(history.timestamps[0]), "last_timestamp": int(history.timestamps[-1])},
        extra={"recipe": recipe, "symbols": list(history.symbols),
               "trained_by": "titan-ray arena (start-up training on the warm-up bars)"},
    )


def startup_models(config: ArenaConfig, symbols: tuple[str, ...], calendar: str) -> dict[str, PpoModel]:
    """The arena's ``ppo`` models with no ``artifact``, each with its ``StartupTrainer`` (built on the
    driver, light: torch and RLlib load in the model's actor, when it trains)."""
    root = str(default_root(config.registry.path).resolve())
    out: dict[str, PpoModel] = {}
    for spec in config.models:
        if spec.kind == "ppo" and spec.artifact is None:
            model = PpoModel(spec.name, spec.params, tuple(symbols), seed=config.seed)
            model.trainer = StartupTrainer(root, f"{spec.name}-startup", calendar, config.ledger, config.risk)
            out[spec.name] = model
    return out
