"""The Serve applications' settings: the ``args`` of ``serve_configs/*.yaml``, validated strictly.

A TitanRay Serve config holds three kinds of application (``import_path`` in ``titan_ray.serve.app``):

    build_app             ``titan-ray`` at ``/``: the main ingress (``AppSettings``)
        models:           the names of the served models (each has its own application)
        experiments:      the names of the experiments (each has its own application)
        arena:            the live arena the HTTP API reads: attach to the named actor, or start it
        auth:             who may call what: tokens, scopes, rate limits, the audit trail
    build_model_app       ``model-NAME`` at ``/v1/predict/NAME``: one served model version
                          (``ModelAppSettings``): a rule model built from ``kind`` + ``params``, or
                          a registered version (``artifact: NAME@VERSION``), trained at start-up
                          from ``train`` when the registry does not hold it yet
    build_experiment_app  ``experiment-NAME`` at ``/v1/experiments/NAME/predict``: an A/B test
                          between served models (``ExperimentSpec``); its arm weights live in the
                          router deployment's ``user_config`` (``weights: {arm: w}``)

``check_deploy_config`` checks a whole file: every app's args, and that the names, application
names, route prefixes and arms agree. Every error names the field and the fix
(``titan_ray.config.format_validation_error``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from titan_ray.config import ConfigError, format_validation_error, parse_config
from titan_ray.lifecycle.settings import LifecycleSettings, parse_lifecycle
from titan_ray.models.params import MODEL_PARAMS
from titan_ray.net import free_port
from titan_ray.registry import ALIASES, REF_PATTERN, parse_ref

NAME = r"^[A-Za-z0-9_\-]{1,40}$"
DEFAULT_ARENA_ACTOR = "titan-ray-arena"
ARENA_NAMESPACE = "titan-ray"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
RATE = r"^\s*([1-9][0-9]{0,8})\s*/\s*(second|minute|hour|day)\s*$"
RATE_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
RATE_LIMIT_ENV = "TITAN_RAY_RATE_LIMIT"
JWKS_URL_ENV = "TITAN_RAY_JWKS_URL"
AUDIT_PATH_ENV = "TITAN_RAY_AUDIT_PATH"


def parse_rate(text: str) -> tuple[int, float]:
    """``"600/minute"`` -> (600, 60.0): requests, and the period they are counted over (seconds)."""
    match = re.match(RATE, text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate: write N/second, N/minute, N/hour or N/day (N >= 1)")
    return int(match.group(1)), RATE_PERIODS[match.group(2)]


class RateLimits(_Strict):
    """Requests per identity (a token's subject, else the client's address) and route class."""

    read: str = Field("1200/minute", description="GET routes of /v1 (leaderboard, trades, experiments, ...)")
    predict: str = Field("60000/minute", description="POST /v1/predict/{model}, /v1/experiments/{name}/predict")
    mutate: str = Field("60/minute", description="routes that change state (weights, kill switch, promotion)")

    @field_validator("read", "predict", "mutate")
    @classmethod
    def _rate(cls, v: str) -> str:
        parse_rate(v)
        return v

    def resolved(self, env: str | None = None) -> dict[str, tuple[int, float]]:
        """The limits in effect: ``$TITAN_RAY_RATE_LIMIT`` (``N/minute`` for every class, or
        ``read=N/minute,mutate=M/hour``) over this section."""
        out = {k: parse_rate(getattr(self, k)) for k in RateLimits.model_fields}
        env = os.environ.get(RATE_LIMIT_ENV) if env is None else env
        if env and env.strip():
            if "=" not in env:
                try:
                    return dict.fromkeys(out, parse_rate(env))
                except ValueError as err:
                    raise ConfigError(f"${RATE_LIMIT_ENV}: {err}") from None
            for part in env.split(","):
                klass, _, rate = part.partition("=")
                if klass.strip() not in out:
                    raise ConfigError(f"${RATE_LIMIT_ENV}: unknown route class {klass.strip()!r}; the classes are "
                                      f"{list(out)} (e.g. read=600/minute,mutate=30/minute)")
                try:
                    out[klass.strip()] = parse_rate(rate)
                except ValueError as err:
                    raise ConfigError(f"${RATE_LIMIT_ENV}: {err}") from None
        return out


class AuditSettings(_Strict):
    backend: Literal["auto", "sqlite", "redis"] = Field(
        "auto", description="auto: a Redis Stream when `redis_url` is set, else SQLite")
    path: str | None = Field(None, description="sqlite: the file; default $TITAN_RAY_AUDIT_PATH, else "
                             "audit.sqlite in the model registry folder")


class AuthSettings(_Strict):
    """Who may call what (``titan_ray.serve.security``); every TitanRay app of a Serve config has the same.

    Credentials: the static token in ``$token_env`` (an admin credential), and JWTs: HS256 signed with
    ``$jwt_secret_env``, or RS256/ES256 signed by a key of the JWKS at ``jwks_url`` (an OIDC provider's
    ``jwks_uri``, or a file). Scopes: ``read`` (the GET routes, predictions), ``trade`` (the kill
    switch), ``admin`` (weights, promotion, the registry, the audit trail); admin holds trade and
    read, trade holds read. Secrets are read from the replicas' environment only: never from here."""

    token_env: str = Field("TITAN_RAY_API_TOKEN", pattern=ENV_NAME,
                           description="environment variable with the static admin bearer token")
    jwt_secret_env: str = Field("TITAN_RAY_JWT_SECRET", pattern=ENV_NAME,
                                description="environment variable with the HS256 secret of JWTs (>= 32 bytes)")
    jwks_url: str | None = Field(None, description="JWKS of RS256/ES256 JWTs: https://..., a file, or env:VAR; "
                                 "default $TITAN_RAY_JWKS_URL")
    issuer: str | None = Field(None, description="the `iss` every JWT must have; null: not checked")
    audience: str | None = Field(None, description="the `aud` every JWT must name; null: not checked")
    leeway_s: float = Field(30.0, ge=0, le=600, description="clock skew allowed on exp / nbf")
    require_auth_for_reads: bool = Field(False, description="GET routes and predictions need the `read` scope; "
                                         "false leaves them open (a laptop)")
    rate_limits: RateLimits = RateLimits()
    redis_url: str | None = Field(None, description="redis://... or env:VAR: rate limits shared by every replica "
                                  "(and the audit trail's stream); null: per replica")
    audit: AuditSettings = AuditSettings()
    max_body_bytes: int = Field(8 * 2**20, ge=1024, description="larger request bodies are refused (413)")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed to call from a "
                                    "browser (CORS); empty: none")
    trust_forwarded_for: bool = Field(False, description="rate-limit anonymous clients by X-Forwarded-For (only "
                                      "behind a proxy that sets it)")


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
            if self.kind not in MODEL_PARAMS:
                raise ValueError(f"unknown model kind {self.kind!r}; known kinds: {sorted(MODEL_PARAMS)}")
            MODEL_PARAMS[self.kind].model_validate(self.params)
        if self.artifact is not None and not re.match(REF_PATTERN, self.artifact):
            raise ValueError(f"artifact {self.artifact!r}: write NAME, NAME@VERSION or NAME@ALIAS "
                             f"(aliases: {', '.join(ALIASES)})")
        if self.train is not None and self.artifact is None:
            raise ValueError("`train` only applies to an `artifact` model")
        return self

    @property
    def deployment(self) -> str:
        return model_app(self.name)


class ModelAppSettings(ServedModel):
    """The ``args`` of a model application (``build_model_app``): the served model, and where from.

    An ``artifact`` that names an alias (``lgbm@champion``) is followed: each replica re-reads the
    alias every ``follow_s`` seconds and, when it names another version, loads that version beside
    the one answering and swaps it in (no request fails during the switch; the other apps are not
    touched). The version the ``shadow`` alias names (``lgbm@challenger``), when set, gets a copy of
    every request after the answer: compared, timed, never returned. ``lifecycle`` starts the
    model's lifecycle controller (``titan_ray.lifecycle``): drift, alerts, retraining, promotion.
    """

    registry: str | None = Field(None, description="model registry folder; default $TITAN_RAY_REGISTRY or ./registry")
    seed: int = Field(7, description="seeds rule models and the example request")
    follow_s: float = Field(2.0, gt=0, description="how often an alias artifact (NAME@champion) is re-read")
    shadow: str | None = Field("challenger", description="with an alias artifact: the alias whose version "
                               "shadows every request; null: none")
    lifecycle: dict[str, Any] | None = Field(None, description="the model's lifecycle (titan_ray/lifecycle/"
                                             "settings.py): its live feed, drift thresholds, retraining, promotion")
    auth: AuthSettings = Field(AuthSettings(), description="the main app's `auth` section (the same in every app)")

    @field_validator("lifecycle")
    @classmethod
    def _lifecycle(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            parse_lifecycle(v)
        return v

    @field_validator("shadow")
    @classmethod
    def _shadow(cls, v: str | None) -> str | None:
        if v is not None and v not in ALIASES:
            raise ValueError(f"{v!r} is not an alias; the aliases are {list(ALIASES)}")
        return v

    def alias(self) -> str | None:
        """The alias the artifact follows (``champion`` of ``lgbm@champion``), else None."""
        if self.artifact is None:
            return None
        selector = parse_ref(self.artifact)[1]
        return selector if isinstance(selector, str) else None

    def lifecycle_settings(self) -> LifecycleSettings | None:
        """The lifecycle section with the model's registry name, served name and registry filled in."""
        if self.lifecycle is None:
            return None
        name = parse_ref(self.artifact)[0] if self.artifact else self.name
        raw = {"model": name, "registry": self.registry, **self.lifecycle, "served": self.name}
        return parse_lifecycle(raw)


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
    auth: AuthSettings = Field(AuthSettings(), description="the main app's `auth` section (the same in every app)")

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
        return experiment_app(self.name)

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
    nice: int | None = Field(
        19, ge=0, le=19, description="the niceness the live arena's processes run at (its service actor, "
        "market, models, ledger, watchdog), above the Serve replicas' so that predictions keep their "
        "latency while it trades (its pace is slow: it catches up); null leaves Ray's")

    @field_validator("config")
    @classmethod
    def _config(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            try:
                parse_config(v, source="arena.config")
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return v


class AppSettings(_Strict):
    """The ``args`` of the main TitanRay application (``build_app``)."""

    models: list[str] = Field(default_factory=list, description="served model names (apps model-NAME)")
    experiments: list[str] = Field(default_factory=list, description="experiment names (apps experiment-NAME)")
    arena: ArenaSettings = ArenaSettings()
    auth: AuthSettings = AuthSettings()
    registry: str | None = Field(None, description="the model registry the /v1/registry routes manage; "
                                 "default $TITAN_RAY_REGISTRY or ./registry")

    @field_validator("models", "experiments")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.match(NAME, name):
                raise ValueError(f"{name!r} is not a name: use 1-40 letters, digits, '_' or '-'")
        if len(set(v)) != len(v):
            raise ValueError(f"names must be unique; got {v}")
        return v


# A model's and an experiment's application and its one deployment have the same name.


def model_app(name: str) -> str:
    return f"model-{name}"


def experiment_app(name: str) -> str:
    return f"experiment-{name}"


def model_route(name: str) -> str:
    return f"/v1/predict/{name}"


def experiment_route(name: str) -> str:
    return f"/v1/experiments/{name}/predict"


def _parse(model: type[BaseModel], raw: dict[str, Any] | None, what: str) -> Any:
    try:
        return model.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model).replace("invalid arena config", what)) from None


def parse_settings(raw: dict[str, Any] | None) -> AppSettings:
    return _parse(AppSettings, raw, "invalid args of the main app (build_app)")


def parse_model_app(raw: dict[str, Any] | None) -> ModelAppSettings:
    return _parse(ModelAppSettings, raw, "invalid args of a model app (build_model_app)")


def parse_experiment_app(raw: dict[str, Any] | None) -> ExperimentSpec:
    return _parse(ExperimentSpec, raw, "invalid args of an experiment app (build_experiment_app)")


APP_BUILDERS = {
    "titan_ray.serve.app:build_app": "main",
    "titan_ray.serve.app:build_model_app": "model",
    "titan_ray.serve.app:build_experiment_app": "experiment",
}


def check_deploy_config(raw: dict[str, Any], source: str = "the Serve config") -> dict[str, Any]:
    """Check the TitanRay applications of a Serve config together; errors name the app and field.

    Answers ``{"main": AppSettings | None, "models": {name: ModelAppSettings}, "experiments":
    {name: ExperimentSpec}}``. Applications with other import paths are left alone.
    """
    main: AppSettings | None = None
    models: dict[str, ModelAppSettings] = {}
    experiments: dict[str, ExperimentSpec] = {}
    for i, app in enumerate(raw.get("applications") or []):
        kind = APP_BUILDERS.get(str(app.get("import_path", "")))
        if kind is None:
            continue
        where = f"{source}: applications[{i}] ({app.get('name')!r})"
        try:
            if kind == "main":
                if main is not None:
                    raise ConfigError("a second main app (build_app): deploy one")
                main = parse_settings(app.get("args"))
                continue
            if kind == "model":
                spec: Any = parse_model_app(app.get("args"))
                name, app_name, route, seen = spec.name, model_app(spec.name), model_route(spec.name), models
            else:
                spec = parse_experiment_app(app.get("args"))
                name, app_name, route, seen = (spec.name, experiment_app(spec.name), experiment_route(spec.name),
                                               experiments)
            if name in seen:
                raise ConfigError(f"a second {kind} app named {name!r}")
            if app.get("name") != app_name:
                raise ConfigError(f"name: the {kind} {name!r} must be deployed as the application {app_name!r}")
            if app.get("route_prefix") != route:
                raise ConfigError(f"route_prefix: the {kind} {name!r} is served at {route!r}; set "
                                  f"route_prefix: {route}")
            for j, d in enumerate(app.get("deployments") or []):
                if d.get("name") != app_name:
                    raise ConfigError(f"deployments[{j}].name: the {kind} app's one deployment is {app_name!r}, "
                                      f"not {d.get('name')!r}")
                weights = (d.get("user_config") or {}).get("weights")
                if kind == "experiment" and weights is not None:
                    try:
                        normalised(dict(weights), list(spec.weights()))
                    except (TypeError, ValueError) as err:
                        raise ConfigError(f"deployments[{j}].user_config.weights: {err}") from None
            seen[name] = spec
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    _check_secrets(raw, source)
    if main is not None:
        for kind, specs in (("model", models), ("experiment", experiments)):
            for name, spec in specs.items():
                if spec.auth != main.auth:
                    raise ConfigError(
                        f"{source}: the {kind} app {name!r} has another `auth` section than the main app: every "
                        "app checks the same tokens, scopes and limits. Write it once with a YAML anchor (main "
                        "app: `auth: &auth {...}`, the others: `auth: *auth`)")
        for field, listed, deployed in (("models", main.models, models), ("experiments", main.experiments, experiments)):
            missing, unlisted = sorted(set(listed) - set(deployed)), sorted(set(deployed) - set(listed))
            if missing:
                raise ConfigError(f"{source}: the main app's args.{field} lists {missing}, which have no "
                                  f"application; add one per name ({'build_model_app' if field == 'models' else 'build_experiment_app'})")
            if unlisted:
                raise ConfigError(f"{source}: {field} {unlisted} have an application but are not in the main "
                                  f"app's args.{field}; list them there")
    for e in experiments.values():
        for a in e.arms:
            if a.model not in models:
                raise ConfigError(f"{source}: experiment {e.name!r} arm {a.name!r} serves model {a.model!r}, which "
                                  f"has no model application (served: {sorted(models)})")
    return {"main": main, "models": models, "experiments": experiments}


SECRET_ENVS = ("TITAN_RAY_API_TOKEN", "TITAN_RAY_JWT_SECRET")


def _check_secrets(raw: dict[str, Any], source: str) -> None:
    """No secret in a ``runtime_env``: Ray writes runtime environments, values included, to its logs
    (``runtime_env_agent.log``) and keeps them in the GCS. Secrets reach the replicas through the
    environment of the Ray nodes (a Kubernetes Secret, or the shell that runs ``ray start``)."""
    secret = set(SECRET_ENVS)
    for app in raw.get("applications") or []:
        auth = (app.get("args") or {}).get("auth") or {}
        secret |= {auth.get("token_env") or SECRET_ENVS[0], auth.get("jwt_secret_env") or SECRET_ENVS[1]}
    places = [("runtime_env", raw.get("runtime_env"))]
    for i, app in enumerate(raw.get("applications") or []):
        places.append((f"applications[{i}].runtime_env", app.get("runtime_env")))
        for j, d in enumerate(app.get("deployments") or []):
            places.append((f"applications[{i}].deployments[{j}].ray_actor_options.runtime_env",
                           (d.get("ray_actor_options") or {}).get("runtime_env")))
    for where, env in places:
        leaked = sorted(secret & set((env or {}).get("env_vars") or {}))
        if leaked:
            raise ConfigError(f"{source}: {where}.env_vars sets {leaked}: Ray writes runtime_env values to its logs. "
                              "Set secrets in the environment of the Ray nodes instead (export them before "
                              "`ray start` / `titan-ray serve`, or a Kubernetes Secret in the pod's env)")


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


# --- Ray Serve's throughput-optimized mode ----------------------------------------------------------

# Read by every Serve process when it starts: set them in the environment of each Ray node before
# `ray start` (the Helm chart, k8s/ and cluster/ do), or let `titan-ray serve` set them for the
# private Ray it starts. HAProxy (bundled with ray[serve]) then takes HTTP on http_options.port and
# hands each request to the replica's own HTTP server: no Python proxy hop (docs/serve.md).
FAST_SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def private_serve_env(files: Path) -> dict[str, str]:
    """``FAST_SERVE_ENV`` for a Ray private to one process, on free ports wherever Serve would take a
    fixed one, so that two private Rays on one machine never answer for each other: HAProxy's stats
    (8404) and metrics (9101), and the Python fallback proxy (HTTP 8500, gRPC 9500) that HAProxy
    sends a request to while an application has no running ingress replica yet. HAProxy's config,
    sockets, state and logs go under ``files`` (Ray adds the node id) instead of /tmp/haproxy-serve,
    where every run would leave them. Ingress replicas stop after 1 s instead of waiting 30 s for a
    load balancer to let go."""
    return {
        **FAST_SERVE_ENV,
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(files / "metrics.sock"),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    }


PRIVATE_FILES_PREFIX = "trhap-"  # the temporary folder of a private Ray's HAProxy files


@contextmanager
def private_serve_environ() -> Iterator[dict[str, str]]:
    """``private_serve_env`` set in this process's environment (a key already set there wins) for the
    Ray it starts next, HAProxy's files in a temporary folder that is removed on exit: exit after
    that Ray has shut down. Yields the values in effect."""
    # Under /tmp, not $TMPDIR: HAProxy's socket paths (folder + 56-character node id + name) must stay
    # under the 108 bytes a Unix socket path may have.
    files = Path(tempfile.mkdtemp(prefix=PRIVATE_FILES_PREFIX, dir="/tmp" if Path("/tmp").is_dir() else None))
    try:
        yield {key: os.environ.setdefault(key, value) for key, value in private_serve_env(files).items()}
    finally:
        shutil.rmtree(files, ignore_errors=True)
