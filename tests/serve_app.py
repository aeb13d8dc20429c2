"""The TitanRay Serve app as tests start it: small, fast, on the shared Ray session, real HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

APP_NAME = "titan-ray"
# Every test shares the anonymous loopback client's budget: the limits are the tests' own business
# (tests/integration/test_security.py), not the other tests'.
AUTH = {"rate_limits": {"read": "1000000/minute", "predict": "1000000/minute", "mutate": "100000/minute"}}


SMA = {"fast": 3, "slow": 8}
SMA_FAST = {"fast": 2, "slow": 5}
RSI = {"period": 5, "low": 40, "high": 60}
MODELS = [
    {"name": "sma", "kind": "sma_crossover", "params": SMA},
    {"name": "sma_fast", "kind": "sma_crossover", "params": SMA_FAST},
    {"name": "rsi", "kind": "rsi_reversion", "params": RSI},
    {"name": "hold", "kind": "buy_and_hold"},
]
# The control arm's model needs the shortest window (5 bars), the treatment's the longest (8): an
# example built for the control alone would be refused by the treatment.
EXPERIMENT = {"name": "ab", "seed": 1, "arms": [
    {"name": "control", "model": "sma_fast", "weight": 0.7},
    {"name": "treatment", "model": "sma", "weight": 0.3},
    {"name": "shadow", "model": "rsi", "shadow": True},
]}


# ~5 bars a second: 40 minutes of arena, longer than the whole suite, so that the tests that need
# it running (the kill switch) find it running however slow the machine is that day (4,000 bars,
# 13 minutes, once ran out before them)
ARENA_BARS = 12_000


def app_args(arena_actor: str, extra_models: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The main app: a small arena (3 symbols, 1-minute bars, ~5 bars a second) of the served models."""
    return {
        "models": [m["name"] for m in MODELS] + [m["name"] for m in extra_models],
        "experiments": [EXPERIMENT["name"]],
        "arena": {
            "actor": arena_actor,
            "refresh_s": 0.5,
            "leaderboard_refresh_s": 1.0,
            "config": {
                "seed": 5,
                "data": {"provider": "synthetic", "n_symbols": 3, "bars": ARENA_BARS, "frequency": "1min",
                         "calendar": "continuous"},
                "replay": {"chunk_size": 2, "pace": {"speed": 300}},
                "ledger": {"initial_cash": 100000, "commission_bps": 5},
                "significance": {"n_resamples": 200},
                "models": [{**m, "num_cpus": 0} for m in MODELS],
            },
        },
    }


def app_config(arena_actor: str, token: str, weights: dict[str, float] | None = None,
               extra_models: list[dict[str, Any]] = (), extra_apps: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The apps as a Serve config (what `serve deploy` sends): the main ingress, one app per model,
    the A/B experiment ``ab`` with a shadow arm, and ``extra_models`` (model app args) served beside
    them. num_cpus 0 everywhere, since the session's 2 CPUs are shared with other tests' actors. The
    tokens reach the replicas through the environment of the session's Ray (tests/conftest.py)."""
    zero = {"num_cpus": 0}
    apps = [{"name": APP_NAME, "route_prefix": "/", "import_path": "titan_ray.serve.app:build_app",
             "args": {**app_args(arena_actor, extra_models), "auth": AUTH},
             "deployments": [{"name": "Ingress", "ray_actor_options": zero}]}]
    apps += [{"name": f"model-{m['name']}", "route_prefix": f"/v1/predict/{m['name']}",
              "import_path": "titan_ray.serve.app:build_model_app", "args": {**m, "auth": AUTH},
              "deployments": [{"name": f"model-{m['name']}", "ray_actor_options": zero}]}
             for m in [*MODELS, *extra_models]]
    live = weights or {a["name"]: a["weight"] for a in EXPERIMENT["arms"] if not a.get("shadow")}
    apps.append({"name": f"experiment-{EXPERIMENT['name']}", "route_prefix": f"/v1/experiments/{EXPERIMENT['name']}/predict",
                 "import_path": "titan_ray.serve.app:build_experiment_app", "args": {**EXPERIMENT, "auth": AUTH},
                 "deployments": [{"name": f"experiment-{EXPERIMENT['name']}", "ray_actor_options": zero,
                                  "user_config": {"weights": live}}]})
    return {"applications": [*apps, *extra_apps]}


LOCKED_PREFIX = "/locked"
LOCKED_LIMITS = {"read": "40/hour", "predict": "40/hour", "mutate": "30/hour"}


def locked_app(arena_actor: str, *, redis_url: str, jwks_url: str, issuer: str, audience: str) -> dict[str, Any]:
    """A second main app at /locked, as a cluster runs it: reads need a token; two ingress replicas
    share their (small) rate limits and the audit trail (a stream, ``titan-ray:audit``) through Redis;
    JWTs are HS256 (the session's secret) or RS256/ES256 of the provider at ``jwks_url``, with ``iss``
    and ``aud`` checked. It reads the session's arena."""
    auth = {"require_auth_for_reads": True, "redis_url": redis_url, "jwks_url": jwks_url, "issuer": issuer,
            "audience": audience, "rate_limits": LOCKED_LIMITS}
    return {"name": "titan-ray-locked", "route_prefix": LOCKED_PREFIX, "import_path": "titan_ray.serve.app:build_app",
            "args": {"models": [], "experiments": [], "auth": auth,
                     "arena": {"actor": arena_actor, "start": False, "refresh_s": 0.5}},
            "deployments": [{"name": "Ingress", "num_replicas": 2, "ray_actor_options": {"num_cpus": 0}}]}


def deploy(config: dict[str, Any], port: int) -> None:
    """Deploy a config the way `serve deploy` does (the controller builds it from import_path)."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    client = serve_start(http_options={"host": "127.0.0.1", "port": port})
    client.deploy_apps(ServeDeploySchema.model_validate(config), _blocking=True)


@dataclass(frozen=True)
class ServeApp:
    url: str
    port: int
    token: str
    arena_actor: str
    extra_apps: list[dict[str, Any]] = field(default_factory=list)  # deployed with every redeploy

    def redeploy(self, weights: dict[str, float] | None = None, extra_models: list[dict[str, Any]] = ()) -> None:
        """The same config again, with other experiment weights in its user_config (a live change), and
        ``extra_models`` served beside the others (model app args); without them, the session's apps
        (and ``extra_apps``, which stay for the session)."""
        deploy(app_config(self.arena_actor, self.token, weights, extra_models, self.extra_apps), self.port)


@contextmanager
def serve_app(port: int, token: str, *, min_bars: int = 40, timeout: float = 180.0) -> Iterator[ServeApp]:
    """Start the app on 127.0.0.1:``port`` (Ray must be initialised) and wait until its arena trades."""
    import ray

    from titan_ray.commands.serve import shutdown_serve
    from titan_ray.serve.settings import ARENA_NAMESPACE

    arena_actor = f"titan-ray-arena-test-{uuid.uuid4().hex[:8]}"
    base = f"http://127.0.0.1:{port}"
    try:
        deploy(app_config(arena_actor, token), port)
        deadline = time.monotonic() + timeout
        while True:  # the arena has traded a little: every route has data
            board = requests.get(f"{base}/v1/leaderboard", timeout=30).json()
            if board["progress"]["bars_done"] >= min_bars and board["rows"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test arena did not get going in {timeout:.0f} s: {board}")
            time.sleep(0.5)
        yield ServeApp(base, port, token, arena_actor)
    finally:
        shutdown_serve()
        try:
            ray.kill(ray.get_actor(arena_actor, namespace=ARENA_NAMESPACE), no_restart=True)
        except ValueError:
            pass
