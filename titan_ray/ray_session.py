"""Joining Ray: a cluster at an address, or a private local one that ends with the command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ray


def ensure_ray(address: str | None) -> bool:
    """Connect to Ray (a cluster at ``address``, or a private local one); True if we started it."""
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    return True


@contextmanager
def ray_connected(address: str | None) -> Iterator[None]:
    """``ensure_ray`` for a block: the Ray this started is shut down when the block ends."""
    started = ensure_ray(address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()
