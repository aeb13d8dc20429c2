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


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray, started once: starting Ray costs seconds, so tests share it."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
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
