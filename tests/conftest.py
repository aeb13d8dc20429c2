"""Shared fixtures: one local Ray session for the whole run, and the real data in ../shared/data."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LEAN = SHARED_DATA / "lean"

sys.path.insert(0, str(Path(__file__).parent))  # for tests/peers.py

# Hypothesis' per-example deadline measures the machine's load, not the code: CI shares 2 cores.
from hypothesis import settings as _hypothesis_settings

_hypothesis_settings.register_profile("titan-ray", deadline=None)
_hypothesis_settings.load_profile("titan-ray")


def pytest_configure(config: pytest.Config) -> None:
    """The model registry of every test that names none (the default arena's ppo registers the policy it
    trains there): a folder of the session's, never ./registry in the checkout. Set before Ray starts,
    so its workers see it too."""
    if "TITAN_RAY_REGISTRY" not in os.environ:
        import tempfile

        os.environ["TITAN_RAY_REGISTRY"] = tempfile.mkdtemp(prefix="titan-ray-test-registry-")
    # The HTTP API's secrets, as a deployment gives them: in the environment of the Ray nodes (never a
    # runtime_env, whose values Ray logs). The session's own, random: tests/test_security*.py grep the
    # session's logs and results for them.
    import secrets

    os.environ.setdefault("TITAN_RAY_API_TOKEN", f"test-{secrets.token_hex(12)}")
    os.environ.setdefault("TITAN_RAY_JWT_SECRET", secrets.token_hex(32))


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray, started once: starting Ray costs seconds, so tests share it. Serve runs in
    the mode `titan-ray serve` gives it (throughput-optimized, HAProxy in front of the replicas)."""
    import ray

    from titan_ray.serve.settings import private_serve_environ

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with private_serve_environ():
        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
                     _node_ip_address="127.0.0.1")  # tests keep their traffic on loopback
        yield ray
        ray.shutdown()


@pytest.fixture(scope="session")
def lean_dir() -> Path:
    if not LEAN.is_dir():
        pytest.fail(f"the shared LEAN data is missing at {LEAN}; tests expect ../shared/data beside the repo")
    return LEAN


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port, started once for the session.

    `.ci/run` installs Debian's redis-server; a test that needs Redis fails, never skips, without it.
    """
    from servers import redis_server

    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory):
    """A real `mlflow server` (SQLite store, served artifacts) on a free loopback port, started once.

    `pip install -e '.[test]'` installs MLflow (the product speaks its REST API without it)."""
    from servers import mlflow_server

    try:
        with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
            yield url
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def serve_token() -> str:
    """The static admin bearer token of the test Serve apps ($TITAN_RAY_API_TOKEN of the session)."""
    return os.environ["TITAN_RAY_API_TOKEN"]


@pytest.fixture(scope="session")
def minted() -> list[str]:
    """Every token ``mint`` made in the session (none may show up in a log or a result)."""
    return []


@pytest.fixture(scope="session")
def mint(minted):
    """mint("read", "trade", sub="alice", ttl_s=600, issuer=None, audience=None) -> an HS256 JWT signed
    with the session's $TITAN_RAY_JWT_SECRET (what `titan-ray token` makes); a negative ttl_s makes an
    expired one."""
    import jwt

    from titan_ray.serve.security import mint_token

    def _mint(*scopes: str, sub: str = "tester", ttl_s: float = 600, issuer: str | None = None,
              audience: str | None = None) -> str:
        secret = os.environ["TITAN_RAY_JWT_SECRET"]
        if ttl_s > 0:
            token = mint_token(secret, sub, list(scopes), ttl_s, issuer=issuer, audience=audience)
        else:  # mint_token refuses to make an expired token: made by hand
            now = int(time.time())
            claims = {"sub": sub, "scope": " ".join(scopes), "iat": now - 3600, "exp": int(now + ttl_s),
                      **({"iss": issuer} if issuer else {}), **({"aud": audience} if audience else {})}
            token = jwt.encode(claims, secret, algorithm="HS256")
        minted.append(token)
        return token

    return _mint


@pytest.fixture(scope="session")
def serve_app(ray_session, serve_token):
    """The TitanRay Serve app (tests/serve_app.py) on a free loopback port: a ``ServeApp``
    (url, port, token, arena_actor, redeploy()).

    A small live arena (3 symbols, ~5 bars a second) runs behind it and has traded before it is
    handed out; an A/B experiment ``ab`` (arms control 0.7 / treatment 0.3, shadow rsi) is served.
    """
    from serve_app import serve_app as start
    from servers import free_port

    try:
        with start(free_port(), serve_token) as app:
            yield app
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def serve_url(serve_app) -> str:
    """Base URL (http://127.0.0.1:PORT) of the session's TitanRay Serve app (see ``serve_app``)."""
    return serve_app.url


@pytest.fixture(scope="session")
def jwks():
    """An OIDC provider's keys (tests/jwks.py): RS256 and ES256, the JWKS served on loopback; .sign(alg,
    sub, scope)."""
    from jwks import jwks_provider

    with jwks_provider() as provider:
        yield provider


@pytest.fixture(scope="session")
def locked_app(serve_app, redis_url, jwks):
    """The session's Serve apps plus ``titan-ray-locked`` at /locked (tests/serve_app.py ``locked_app``):
    reads need a token, two ingress replicas share small rate limits through Redis, JWTs of the session's
    secret or of ``jwks``, with iss/aud checked, its audit trail a Redis Stream. Yields (url, redis_url);
    it stays for the session."""
    import time

    import requests
    from jwks import AUDIENCE, ISSUER
    from ray import serve
    from serve_app import locked_app as locked

    serve_app.extra_apps.append(locked(serve_app.arena_actor, redis_url=redis_url, jwks_url=jwks.url,
                                       issuer=ISSUER, audience=AUDIENCE))
    serve_app.redeploy()
    url = serve_app.url + "/locked"
    deadline = time.monotonic() + 120
    while True:  # both ingress replicas running, and the route answering
        app = serve.status().applications.get("titan-ray-locked")
        running = app.deployments["Ingress"].replica_states.get("RUNNING", 0) if app and app.deployments else 0
        if running == 2 and requests.get(url + "/healthz", timeout=30).status_code == 200:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the locked app did not start its 2 replicas in 120 s: {app}")
        time.sleep(0.5)
    yield url, redis_url
