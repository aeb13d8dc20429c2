"""Joining Ray: a cluster at an address, or a private local one that ends with the command.

What a private Ray costs, measured on the 2-core machine: ``ray.init`` starts the GCS, the raylet
and seven Python processes (dashboard head, dashboard and runtime-env agents, log monitor,
autoscaler monitor, two prestarted workers), about 5 CPU-seconds in all, so 2.5-3 s on an idle
machine and much more on a busy one; ``ray.shutdown`` takes about 1.4 s, 1.1 s of it waiting for
those processes to exit. No ``ray.init`` option tried shortened either (no log forwarding, no usage
stats or metrics collection, no prestarted workers), so the arena hides the shutdown behind the
writing of its results instead (``arena/runner.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray


def ensure_ray(address: str | None) -> bool:
    """Connect to Ray (a cluster at ``address``, or a private local one); True if we connected here."""
    if ray.is_initialized():
        return False
    # "local", not None: ray.init(None) would join whatever cluster `ray start` last recorded in
    # /tmp/ray, however busy, instead of the private Ray promised; RAY_ADDRESS, set on purpose, still
    # names the cluster to join.
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    ray.init(address=target, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
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


def process_memory(pid: int | str = "self") -> dict[str, int | None]:
    """A process's memory in bytes (this one's by default): ``rss`` (resident, shared libraries
    included) and ``uss`` (its own pages: what ending it would free), from Linux's
    ``/proc/PID/smaps_rollup`` (cheap: psutil's ``memory_full_info`` reads every mapping); None elsewhere."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]  # the first line names the range
    except OSError:
        return {"rss": None, "uss": None}
    kib = {line.split(":")[0]: int(line.split()[1]) for line in rollup if line.endswith(" kB")}
    return {"rss": kib["Rss"] * 1024, "uss": (kib["Private_Clean"] + kib["Private_Dirty"]) * 1024}
