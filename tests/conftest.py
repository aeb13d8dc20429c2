"""Shared fixtures: one local Ray session for the whole run, and the real data in ../shared/data."""

from __future__ import annotations

import os
import sys
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
    """The bearer token of the test Serve app's mutating routes."""
    import secrets

    return f"test-{secrets.token_hex(12)}"


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
