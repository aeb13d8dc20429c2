"""The run report: one frozen record of a finished arena run, written as run.json and returned.

``RunReport.to_dict()`` is exactly what run.json holds and what ``ArenaRun.run_info`` is (the
dashboard, Serve and the tests read those keys, in this order), so the file shows what the caller
got. ``Placement`` records the Ray node each actor started on; ``LiveSummary`` how a live run went;
``Phases`` where the wall time went.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Placement:
    driver: str
    market: str
    ledger: str
    models: dict[str, str]


@dataclass(frozen=True)
class LiveSummary:
    stopped_by: str | None  # "bar limit (…)", "time limit (…)", "feed ended (…)" or "interrupted (Ctrl-C)"
    bars: int  # live bars booked
    reconnects: int | None  # the feed's own counts, as its info() reported them at the end
    backfilled_bars: int | None
    late_bars: int | None


@dataclass(frozen=True)
class Phases:
    """Where a run's wall time went, in seconds, on the runner's clock: the five add up to the wall.

    ``data`` is the market actor's own time to load and check the bars (it reports it); the rest of
    the time before the first chunk is ``startup``.
    """

    startup: float  # Ray joined or started, the actors created and ready, the data load excepted
    data: float  # the bars loaded and checked by the market actor
    replay: float  # the chunks through the models and the ledger, warm-up chunks included
    results: float  # the results collected from the ledger, the leaderboard built, the folder written
    shutdown: float  # the actors stopped and the Ray this run started shut down

    def line(self) -> str:
        """'start-up 1.2s · data 0.8s · replay 2.0s · results 0.5s · shutdown 0.3s'."""
        return " · ".join(f"{name.replace('startup', 'start-up')} {seconds:.1f}s"
                          for name, seconds in asdict(self).items())


@dataclass(frozen=True)
class RunReport:
    run_id: str
    config: dict[str, Any]  # the config as run (local paths made absolute), JSON-safe
    seed: int
    code_version: str
    data_source: str
    frequency: str
    calendar: str
    periods_per_year: float
    n_symbols: int
    n_timestamps: int
    n_bars: int
    warmup_bars: int
    rejected_bars: int
    rejected_bars_by_rule: dict[str, int]
    rejected_bars_sample: list[str]
    resumed_from_chunk: int | None  # the first chunk this run booked, when it resumed a journal
    skipped_chunks: dict[str, int]  # chunks each model missed (late or failed), models that missed none left out
    model_failures: dict[str, list[str]]
    alerts: list[dict[str, Any]]  # the watchdog's, in order
    replay_seconds: float
    wall_seconds: float
    phases: Phases
    bars_per_second: float | None  # None for a resumed run (its replay did not book every bar)
    busy_seconds: dict[str, float]  # time each actor spent working during the replay
    journal_seconds: float  # the ledger's journal writes, on a thread beside its booking (not in busy_seconds)
    # the ledger actor at the end of the replay, before the results: its process's rss and uss in bytes,
    # the records its books hold in RAM (records_in_memory, record_bytes_in_memory) and booked in all
    ledger_memory: dict[str, int | None]
    placement: Placement
    live: LiveSummary | None
    paper_check: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """run.json's content: plain dicts and lists, keys in field order."""
        return asdict(self)
