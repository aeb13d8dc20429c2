"""The Serve application's settings: the ``args`` of ``serve_configs/*.yaml``, validated strictly.

    models:       the served models, one Serve deployment each (``model-NAME``): a rule model built
                  from ``kind`` + ``params``, or a registered version (``artifact: NAME@VERSION``),
                  trained at start-up from ``train`` when the registry does not hold it yet
    experiments:  A/B tests between served models, one router deployment each (``experiment-NAME``)
                  whose arm weights live in its ``user_config`` (``weights: {arm: w}``)
    arena:        the live arena the HTTP API reads: attach to the named actor, or start it
    auth:         the environment variable that holds the bearer token of mutating routes

Every error names the field and the fix (``titan_ray.config.format_validation_error``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from titan_ray.config import ConfigError, format_validation_error

NAME = r"^[A-Za-z0-9_\-]{1,40}$"
DEFAULT_ARENA_ACTOR = "titan-ray-arena"
ARENA_NAMESPACE = "titan-ray"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainSpec(_Strict):
    """How to train a registered model that the registry does not hold yet (at start-up)."""

    kind: str = Field(description="model kind to train (lightgbm, lstm_attention, ...)")
    params: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(
        default_factory=lambda: {"provider": "synthetic", "n_symbols": 8, "bars": 3000},
        description="an arena `data` section: the bars to train on",
    )
    seed: int = 7


class ServedModel(_Strict):
    name: str = Field(pattern=NAME, description="the {model} of /v1/predict/{model}")
    kind: str | None = Field(None, description="a model kind (sma_crossover, ...); or give `artifact`")
    params: dict[str, Any] = Field(default_factory=dict)
    artifact: str | None = Field(None, description="registry reference NAME or NAME@VERSION")
    train: TrainSpec | None = Field(None, description="train and register `artifact` when it is missing")
    arena_model: str | None = Field(None, description="the arena competitor trading this model; default `name`")

    @model_validator(mode="after")
    def _source(self) -> ServedModel:
        if (self.kind is None) == (self.artifact is None):
            raise ValueError("give exactly one of `kind` (a rule model) or `artifact` (a registered model)")
        if self.kind is not None:
            from titan_ray.models.kinds import MODEL_KINDS

            if self.kind not in MODEL_KINDS:
                raise ValueError(f"unknown model kind {self.kind!r}; known kinds: {sorted(MODEL_KINDS)}")
            MODEL_KINDS[self.kind].Params.model_validate(self.params)
        if self.artifact is not None and not re.match(r"^[A-Za-z0-9_.\-]{1,80}(@[1-9][0-9]*)?$", self.artifact):
            raise ValueError(f"artifact {self.artifact!r}: write NAME or NAME@VERSION")
        if self.train is not None and self.artifact is None:
            raise ValueError("`train` only applies to an `artifact` model")
        return self

    @property
    def deployment(self) -> str:
        return f"model-{self.name}"


class ArmSpec(_Strict):
    name: str = Field(pattern=NAME)
    model: str = Field(description="a served model's name")
    weight: float = Field(0.0, ge=0, description="share of traffic answered by this arm (normalised)")
    shadow: bool = Field(False, description="receives a copy of requests; logged, never answered")
    mirror: float = Field(1.0, ge=0, le=1, description="shadow arms: share of requests copied to it")


class ExperimentSpec(_Strict):
    name: str = Field(pattern=NAME)
    arms: list[ArmSpec] = Field(min_length=2)
    seed: int = Field(0, description="seeds the arm choice of requests without X-Client-Key")

    @model_validator(mode="after")
    def _arms(self) -> ExperimentSpec:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique; got {names}")
        live = [a for a in self.arms if not a.shadow]
        if not live:
            raise ValueError("an experiment needs at least one arm that is not a shadow")
        if sum(a.weight for a in live) <= 0:
            raise ValueError("the weights of the non-shadow arms must add up to more than 0")
        return self

    @property
    def deployment(self) -> str:
        return f"experiment-{self.name}"

    def weights(self) -> dict[str, float]:
        return {a.name: a.weight for a in self.arms if not a.shadow}


class ArenaSettings(_Strict):
    actor: str = Field(DEFAULT_ARENA_ACTOR, pattern=NAME, description="name of the detached arena actor")
    start: bool = Field(True, description="start the arena when no actor of that name runs in the cluster")
    config: dict[str, Any] | None = Field(
        None, description="the arena config (titan_ray/config.py); null = the packaged default")
    folder: str | None = Field(None, description="serve a finished run folder instead of a live arena")
    refresh_s: float = Field(1.0, gt=0, description="how stale the routes' view of the live ledger may be")
    leaderboard_refresh_s: float = Field(
        3.0, gt=0, description="how often the live leaderboard (with its bootstrap test) is recomputed")

    @field_validator("config")
    @classmethod
    def _config(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            from titan_ray.config import parse_config

            try:
                parse_config(v, source="arena.config")
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return v


class AuthSettings(_Strict):
    token_env: str = Field("TITAN_RAY_API_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                           description="environment variable with the bearer token of mutating routes")


class AppSettings(_Strict):
    """The ``args`` of the TitanRay Serve application."""

    models: list[ServedModel] = Field(default_factory=list)
    experiments: list[ExperimentSpec] = Field(default_factory=list)
    arena: ArenaSettings = ArenaSettings()
    auth: AuthSettings = AuthSettings()
    registry: str | None = Field(None, description="model registry folder; default $TITAN_RAY_REGISTRY or ./registry")
    seed: int = Field(7, description="seeds example requests")

    @model_validator(mode="after")
    def _refs(self) -> AppSettings:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"served model names must be unique; got {names}")
        exps = [e.name for e in self.experiments]
        if len(set(exps)) != len(exps):
            raise ValueError(f"experiment names must be unique; got {exps}")
        for e in self.experiments:
            for a in e.arms:
                if a.model not in names:
                    raise ValueError(f"experiment {e.name!r} arm {a.name!r} serves model {a.model!r}, which is not "
                                     f"in `models` ({names})")
        return self


def parse_settings(raw: dict[str, Any] | None) -> AppSettings:
    try:
        return AppSettings.model_validate(raw or {})
    except ValidationError as err:
        text = format_validation_error(err, AppSettings).replace("invalid arena config", "invalid serve args")
        raise ConfigError(text) from None


def normalised(weights: dict[str, float], arms: list[str]) -> dict[str, float]:
    """Weights over exactly ``arms``, non-negative, finite, summing to 1 (errors name the arm)."""
    unknown = sorted(set(weights) - set(arms))
    if unknown:
        raise ValueError(f"weights name unknown arms {unknown}; the arms are {arms}")
    for arm, w in weights.items():
        if not (isinstance(w, int | float) and math.isfinite(w) and w >= 0):
            raise ValueError(f"weights.{arm} must be a finite number >= 0, got {w!r}")
    full = {a: float(weights.get(a, 0.0)) for a in arms}
    total = sum(full.values())
    if total <= 0:
        raise ValueError("weights must add up to more than 0")
    return {a: w / total for a, w in full.items()}
