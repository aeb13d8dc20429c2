"""Where the arena's events go: the sink that the market-data and ledger actors publish to.

An actor is handed an ``EventSink`` (or None) when it is created and calls it as events happen:
the market with each traded chunk of bars, the ledger with each chunk's new fills and its light
leaderboard. The actors know nothing of the medium; ``titan_ray.arena.publish.RedisPublisher`` is
the one implementation today (Redis pub/sub). A sink is a side channel: it must never raise for
trouble on its medium and never make the arena wait, and it must survive being pickled into an
actor (it opens its connection in the actor's process).
"""

from __future__ import annotations

from typing import Any, Protocol

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.orders import Fill


class EventSink(Protocol):
    def bars(self, batch: BarBatch) -> None:
        """One chunk of bars that the arena trades on (warm-up bars are not sent)."""

    def fills(self, fills: list[Fill]) -> None:
        """The new fills of one booked chunk, every model's."""

    def leaderboard(self, rows: list[dict[str, Any]]) -> None:
        """A leaderboard snapshot: one row per model."""

    def close(self) -> None:
        """Release the medium; later events are dropped. Safe to call twice."""
