"""Live mode for the runner: which chunk comes next and when to stop.

``LiveSource`` is the pipeline's chunk source for a live run (``arena/pipeline.py``): one bar per
chunk, each booked at once (no pipelining) and the leaderboard refreshed after every bar, with no
total unless ``live.max_bars`` sets one. Its chunk numbers come from ``live_chunks``, which asks
the market-data actor's live feed (through a ``LiveFeed``, ``arena/cluster.py``'s
``RemoteMarket`` on Ray) whether the next chunk exists, in short slices of ``poll_s`` so that the
time limit and Ctrl-C are noticed while the market is quiet. It stops at ``live.max_bars`` live
bars, after ``live.max_seconds``, when the feed ends (``stop_at_close``), or at Ctrl-C;
``LiveStop.reason`` records which, for run.json.

``alpaca_environ`` collects the Alpaca keys that the runner hands to the actors that need them;
``write_paper_report`` writes the paper cross-check's tables beside the results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from titan_ray.config import LiveConfig


class LiveFeed(Protocol):
    def wait_chunk(self, index: int, timeout: float) -> bool | None:
        """Whether chunk ``index`` exists after waiting up to ``timeout`` s: yes, not yet, or never (None)."""

    def ended(self) -> str | None:
        """Why the feed ended, once it has."""


@dataclass
class LiveStop:
    reason: str | None = None


def live_chunks(feed: LiveFeed, first: int, live: LiveConfig, clock: Callable[[], float], stop: LiveStop,
                *, poll_s: float = 0.5) -> Iterator[int]:
    start = clock()
    k = first
    while True:
        if live.max_bars is not None and k - first >= live.max_bars:
            stop.reason = f"bar limit ({live.max_bars} bars)"
            return
        while True:
            if live.max_seconds is not None and clock() - start >= live.max_seconds:
                stop.reason = f"time limit ({live.max_seconds:g} s)"
                return
            ready = feed.wait_chunk(k, poll_s)
            if ready:
                break
            if ready is None:
                stop.reason = f"feed ended ({feed.ended()})"
                return
        yield k
        k += 1


class LiveSource:
    """The live stream as the pipeline's ``ChunkSource``: one bar a chunk, booked and shown at once."""

    chunk_size = 1
    depth = 0
    snapshot_every = 0.0

    def __init__(self, feed: LiveFeed, live: LiveConfig, clock: Callable[[], float]) -> None:
        self._feed, self._live, self._clock = feed, live, clock
        self.total = live.max_bars or 0  # 0: unbounded
        self.stop = LiveStop()

    def indices(self, first: int) -> Iterator[int]:
        return live_chunks(self._feed, first, self._live, self._clock, self.stop)

    def interrupted(self) -> bool:
        self.stop.reason = "interrupted (Ctrl-C)"  # what is in flight is still booked, then results are written
        return True


def alpaca_environ() -> dict[str, str]:
    """The APCA_* variables of the driver, handed to the actors that talk to Alpaca.

    Ray workers do not necessarily share the driver's environment (a cluster, or a Ray started
    before the keys were exported), so the driver passes them as actor arguments: never through
    ``runtime_env``, which Ray shows on its dashboard, and never into the config or results.
    """
    return {k: v for k, v in os.environ.items() if k.startswith("APCA_")}


def write_paper_report(out_dir: Path, report: dict[str, Any]) -> None:
    report["divergence"].to_parquet(out_dir / "paper_divergence.parquet", index=False)
    report["fills"].to_parquet(out_dir / "paper_fills.parquet", index=False)
