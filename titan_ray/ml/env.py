"""TradingEnv: a gymnasium environment whose P&L is the arena ledger's, bar for bar.

The parts and how they connect:

- ``MarketWindow``: the training period's bars, the feature pipeline's rows for them (normalised
  with statistics of that same period) and the first bar where every feature is valid. Built once
  on the driver and shipped to env runners inside the env config.
- ``EnvSettings``: strict, typed settings (episode length, action style, levels, reward scale).
- ``ActionMap``: agent action → target weights (discrete levels or continuous), shared with the
  arena's ``ppo`` model so that both turn the same action into the same weights.
- ``TradingEnv``: one virtual portfolio in a real ``Ledger`` (the arena's own validator, risk,
  sizing, slippage, fill and commission code). Episodes start at a bar drawn with
  ``self.np_random`` inside the window, never outside it.

Timing is the arena's: the agent sees bar t's close (features of row t and the weights it holds),
its action is staged at bar t and fills at bar t+1's open (``fill: next_open``), and the reward
of step t is the change of equity from close t to close t+1, net of slippage and commission, in
units of the episode's starting equity times ``reward_scale``. The env drives the ledger one bar
per step and stages the action *after* the bar is booked, exactly where the arena's ledger
stages a weight row that changed, so the same action sequence gives the same fills and the same
equity curve in both (``tests/unit/train/test_env.py`` proves it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from titan_ray.config import LedgerConfig, RiskConfig
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import Calendar
from titan_ray.domain.decisions import Decisions
from titan_ray.ledger.engine import Ledger

AGENT = "agent"


class EnvSettings(BaseModel):
    """How the environment turns actions into weights and P&L into rewards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_bars: int = Field(256, ge=2, description="steps (bars) per episode")
    actions: Literal["discrete", "continuous"] = Field(
        "discrete", description="discrete: one level per symbol; continuous: a weight fraction per symbol"
    )
    levels: tuple[float, ...] = Field(
        (-1.0, 0.0, 1.0),
        description="discrete: the choices per symbol, as fractions of its budget (-1 short .. 1 long)",
    )
    allow_short: bool = Field(True, description="continuous: allow -1..0 (short); discrete: from the levels")
    max_weight: float | None = Field(
        None, gt=0, le=1, description="a symbol's budget (weight at level 1); default 1 / number of symbols"
    )
    reward_scale: float = Field(100.0, gt=0, description="reward = change of equity / starting equity x this")
    clip_obs: float = Field(5.0, gt=0, description="normalised features are clipped to +-clip_obs")

    @model_validator(mode="after")
    def _levels(self) -> EnvSettings:
        if len(self.levels) < 2:
            raise ValueError("levels: give at least two choices, e.g. [-1, 0, 1] or [0, 1]")
        if any(not -1 <= x <= 1 for x in self.levels):
            raise ValueError(f"levels: every level must lie in [-1, 1]; got {list(self.levels)}")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels: repeated values in {list(self.levels)}")
        return self

    @property
    def long_only(self) -> bool:
        if self.actions == "discrete":
            return min(self.levels) >= 0
        return not self.allow_short


class ActionMap:
    """Agent actions → target weights (S,), the one mapping the env and the ``ppo`` model share."""

    def __init__(self, settings: EnvSettings, n_symbols: int) -> None:
        self.settings, self.n_symbols = settings, n_symbols
        self.budget = settings.max_weight if settings.max_weight is not None else 1.0 / n_symbols
        self.levels = np.asarray(settings.levels, dtype=np.float64)
        self.low = 0.0 if settings.long_only else -1.0

    def space(self) -> gym.Space:
        if self.settings.actions == "discrete":
            return gym.spaces.MultiDiscrete([len(self.levels)] * self.n_symbols)
        return gym.spaces.Box(self.low, 1.0, shape=(self.n_symbols,), dtype=np.float32)

    def fractions(self, action: Any) -> np.ndarray:
        """Each symbol's weight as a fraction of its budget, in [-1, 1]."""
        a = np.asarray(action)
        if self.settings.actions == "discrete":
            return self.levels[a.astype(np.int64).reshape(self.n_symbols)]
        return np.clip(a.astype(np.float64).reshape(self.n_symbols), self.low, 1.0)

    def weights(self, action: Any) -> np.ndarray:
        return self.fractions(action) * self.budget


@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature mean and standard deviation over a training window (pooled over symbols)."""

    names: tuple[str, ...]
    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)

    @classmethod
    def fit(cls, names: Sequence[str], rows: np.ndarray) -> FeatureScaler:
        flat = rows.reshape(-1, rows.shape[-1])
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(flat, axis=0)
            std = np.nanstd(flat, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return cls(tuple(names), mean, std)

    def transform(self, rows: np.ndarray, clip: float) -> np.ndarray:
        """(..., F) raw features → normalised float32, clipped, NaN → 0 (the training mean)."""
        z = (rows - self.mean) / self.std
        return np.clip(np.nan_to_num(z, nan=0.0, posinf=clip, neginf=-clip), -clip, clip).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureScaler:
        return cls(tuple(d["names"]), np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


def observation(features: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """One observation: a bar's normalised features (S, F) flattened, then the held fractions (S,)."""
    return np.concatenate([features.ravel(), fractions.astype(np.float32)]).astype(np.float32, copy=False)


def observation_names(symbols: Sequence[str], feature_names: Sequence[str]) -> list[str]:
    """Names of the observation vector's entries, in its order."""
    return [f"{f}[{s}]" for s in symbols for f in feature_names] + [f"weight[{s}]" for s in symbols]


@dataclass(frozen=True)
class MarketWindow:
    """The training period as the env sees it: bars, normalised feature rows, first valid bar."""

    bars: BarBatch
    features: np.ndarray  # (T, S, F) float32, normalised
    scaler: FeatureScaler
    first_valid: int
    calendar: str

    @classmethod
    def build(cls, bars: BarBatch, raw_features: np.ndarray, names: Sequence[str], *,
              calendar: Calendar | str, clip: float = 5.0, scaler: FeatureScaler | None = None) -> MarketWindow:
        """From bars and the feature pipeline's rows for them; the scaler is fitted on the valid
        rows unless one is given (a validation window reuses its training window's)."""
        if raw_features.shape[:2] != (len(bars), bars.n_symbols) or raw_features.shape[2] != len(names):
            raise ValueError(f"features of shape {raw_features.shape} do not match {len(bars)} bars x "
                             f"{bars.n_symbols} symbols x {len(names)} names")
        valid = np.isfinite(raw_features).all(axis=(1, 2))
        if not valid.any():
            raise ValueError(f"no bar of the {len(bars)}-bar training window has every feature valid; "
                             "give a longer training period")
        first = int(np.argmax(valid))
        scaler = scaler or FeatureScaler.fit(names, raw_features[first:])
        return cls(bars, scaler.transform(raw_features, clip), scaler, first, Calendar(calendar).value)

    @property
    def n_symbols(self) -> int:
        return self.bars.n_symbols


class TradingEnv(gym.Env):
    """One portfolio trading the training window; see the module docstring.

    ``config`` (RLlib's env_config) holds ``window`` (a ``MarketWindow``), ``ledger`` and ``risk``
    (the arena's ``LedgerConfig`` / ``RiskConfig``, or their dicts) and ``settings`` (``EnvSettings``
    or its dict).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.window: MarketWindow = config["window"]
        self.ledger_cfg = LedgerConfig.model_validate(config.get("ledger") or {})
        self.risk_cfg = RiskConfig.model_validate(config.get("risk") or {})
        settings = config.get("settings") or EnvSettings()
        self.settings = settings if isinstance(settings, EnvSettings) else EnvSettings.model_validate(settings)
        w = self.window
        self.last_start = len(w.bars) - 1 - self.settings.episode_bars
        if self.last_start < w.first_valid:
            raise ValueError(
                f"settings.episode_bars={self.settings.episode_bars} does not fit the training window: "
                f"{len(w.bars)} bars, the first {w.first_valid} of them feature warm-up; shorten episodes "
                "or lengthen the training period"
            )
        self.actions = ActionMap(self.settings, w.n_symbols)
        self.action_space = self.actions.space()
        n_obs = w.n_symbols * w.features.shape[2] + w.n_symbols
        self.observation_space = gym.spaces.Box(-self.settings.clip_obs, self.settings.clip_obs, shape=(n_obs,),
                                                dtype=np.float32)
        self._ledger: Ledger | None = None
        self._t = 0  # bar index (within the window) whose close the agent has just seen
        self._end = 0
        self._seq = 0
        self._equity0 = 1.0
        self._fractions = np.zeros(w.n_symbols)

    # --- gymnasium API --------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        start = options.get("start")
        if start is None:
            start = int(self.np_random.integers(self.window.first_valid, self.last_start + 1))
        elif not self.window.first_valid <= start <= self.last_start:
            raise ValueError(f"options.start={start} outside [{self.window.first_valid}, {self.last_start}]")
        steps = int(options.get("steps", self.settings.episode_bars))
        self._t, self._end = start, min(start + steps, len(self.window.bars) - 1)
        self._ledger = Ledger(ledger=self.ledger_cfg, risk=self.risk_cfg, symbols=self.window.bars.symbols,
                                  calendar=self.window.calendar, models={AGENT: self.settings.long_only})
        self._fractions = np.zeros(self.window.n_symbols)
        self._seq = 0
        self._book_bar(start, np.zeros(self.window.n_symbols))  # flat at the first bar's close
        self._equity0 = self._equity()
        return self._obs(), {"bar": self.window.bars.start + start, "equity": self._equity0}

    def step(self, action: Any):
        if self._ledger is None:
            raise RuntimeError("call reset() before step()")
        if self._t >= self._end:
            raise RuntimeError("the episode is over (truncated or terminated); call reset() to start another")
        fractions = self.actions.fractions(action)
        weights = fractions * self.actions.budget
        bars, t = self.window.bars, self._t
        before = self._equity()
        n_fills = self._ledger.books[AGENT].n_fills
        self._ledger.stage(AGENT, weights, bars.start + t, int(bars.timestamps[t]))
        self._t = t + 1
        self._book_bar(self._t, weights)
        self._fractions = fractions
        equity = self._equity()
        new_fills = self._ledger.fills(AGENT, n_fills)
        reward = (equity - before) / self._equity0 * self.settings.reward_scale
        terminated = equity <= 0  # bankrupt: the episode ends here
        truncated = self._t >= self._end and not terminated
        if terminated:
            self._end = self._t
        info = {
            "bar": bars.start + self._t,
            "equity": equity,
            "weights": weights,
            "n_fills": len(new_fills),
            "commission": sum(f.commission_micro for f in new_fills) / 1e6,
        }
        return self._obs(), float(reward), bool(terminated), bool(truncated), info

    # --- helpers --------------------------------------------------------------------------------

    def _book_bar(self, t: int, weights: np.ndarray) -> None:
        bar = self.window.bars.slice(t, t + 1)
        self._ledger.apply(self._seq, bar, [Decisions(AGENT, bar.start, weights[None, :].copy())])
        self._seq += 1

    def _equity(self) -> float:
        return self._ledger.books[AGENT].last_equity

    def _obs(self) -> np.ndarray:
        return observation(self.window.features[self._t], self._fractions)

    @property
    def ledger(self) -> Ledger:
        """The episode's ledger (for inspection: fills, orders, equity)."""
        if self._ledger is None:
            raise RuntimeError("call reset() first")
        return self._ledger
