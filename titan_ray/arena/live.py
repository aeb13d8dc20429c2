"""Live mode for the runner: which chunk comes next, when to stop, and the paper cross-check.

``live_chunks`` yields chunk numbers as the market-data actor's live feed produces them (one per
bar), polling ``wait_chunk`` in short slices so that the time limit and Ctrl-C are noticed while
the market is quiet. It stops at ``live.max_bars`` live bars, after ``live.max_seconds``, or when
the feed ends (``stop_at_close``); ``LiveStop.reason`` records which. The runner books each bar at
once (no pipelining) and refreshes the leaderboard after every bar.

``PaperCheck`` is the driver's side of paper cross-validation: it starts the broker actor, passes
it each chunk with the chosen model's decisions and ledger equity, and at the end collects the
report that the runner writes (``paper_divergence.parquet``, ``paper_fills.parquet``, and
``paper_check`` in run.json).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from titan_ray.config import ArenaConfig, LiveConfig


@dataclass
class LiveStop:
    reason: str | None = None


def live_chunks(market: Any, first: int, live: LiveConfig, clock: Callable[[], float], stop: LiveStop,
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
            ready = ray.get(market.wait_chunk.remote(k, poll_s))
            if ready:
                break
            if ready is None:
                stop.reason = f"feed ended ({ray.get(market.info.remote()).get('ended')})"
                return
        yield k
        k += 1


def alpaca_environ() -> dict[str, str]:
    """The APCA_* variables of the driver, handed to the actors that talk to Alpaca.

    Ray workers do not necessarily share the driver's environment (a cluster, or a Ray started
    before the keys were exported), so the driver passes them as actor arguments: never through
    ``runtime_env``, which Ray shows on its dashboard, and never into the config or results.
    """
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("APCA_")}


class PaperCheck:
    def __init__(self, config: ArenaConfig, symbols: tuple[str, ...], bar_ns: int, run_id: str,
                 environ: dict[str, str]) -> None:
        from titan_ray.broker.actor import PaperBrokerActor

        assert config.live is not None and config.live.paper is not None
        self.cfg = config.live.paper
        self.model = self.cfg.model
        self.actor = PaperBrokerActor.options(num_cpus=0).remote(
            self.model, symbols, config.data.alpaca, environ, config.ledger.fractional, bar_ns, run_id)
        self.account = ray.get(self.actor.start.remote())  # fails here, before trading, on refused keys
        self._calls: list[Any] = []

    def on_chunk(self, bars: Any, decisions: Any, snapshot: list[dict[str, Any]] | None) -> None:
        equity = next((r["equity"] for r in snapshot or [] if r["model"] == self.model), None)
        if equity is None or decisions is None:
            return
        self._calls.append(self.actor.on_chunk.remote(bars, decisions, equity))

    def finish(self, ledger_fills: list[Any]) -> dict[str, Any]:
        errors = []
        for ref in self._calls:  # every order was sent (a chunk the model failed on sent none)
            try:
                ray.get(ref)
            except Exception as err:  # noqa: BLE001 - recorded; the report is still written
                errors.append(f"{type(err).__name__}: {err}"[:300])
        report = ray.get(self.actor.finish.remote(ledger_fills, self.cfg.fill_wait_s, self.cfg.cancel_open_orders))
        report["summary"]["errors"] = errors + report["summary"]["errors"]
        return report


def write_paper_report(out_dir: Path, report: dict[str, Any]) -> None:
    report["divergence"].to_parquet(out_dir / "paper_divergence.parquet", index=False)
    report["fills"].to_parquet(out_dir / "paper_fills.parquet", index=False)
