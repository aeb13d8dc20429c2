"""The replay pipeline: chunks of bars through the models and into the ledger, as plain code.

The parts and how they connect:

- ``ReplayPort``: what the pipeline asks of the arena's actors (a chunk's bars, the models'
  decisions on them, waits with a timeout, the ledger's booking and snapshot). References are
  opaque here. ``arena/cluster.py`` implements the port on Ray; the unit tests implement it in
  one process on a fake clock.
- ``ChunkSource``: which chunks to book and how: their numbers, their size, the total, how many
  may be in flight and how often the leaderboard is refreshed. ``ReplaySource`` (below) is a fixed
  range, pipelined; ``LiveSource`` (``arena/live.py``) is the live stream, one bar at a time.
- ``PaperHook``: the optional paper-account check of live mode, handed each chunk.
- ``run_pipeline``, which drives them and returns a ``ReplayOutcome``; ``Progress`` is what the
  caller's callback hears while it runs.

How a chunk travels::

    bars = port.next_chunk(k)                       # one reference per chunk
    refs = port.decide(bars)                        # every model at once (None: a model taken out)
    port.apply(seq, bars, {m: ref or None})         # the decisions in by the deadline

Up to ``depth`` chunks wait for their decisions while up to ``depth`` more are with the ledger, so
models work on chunk k+1 while the ledger books chunk k; chunks reach the ledger in sequence. When
a chunk's turn comes, the pipeline waits for its bars to exist (a paced feed releases them on its
own clock), then at most ``decision_timeout`` for its decisions; a model late by then is left out
of that chunk, and the ledger counts the chunk as skipped for it, as it does for a model whose
decision failed.

No Ray here and no wall time: the clock is injected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

Ref = Hashable  # what the port hands out for bars, a decision or an acknowledgement (a Ray ObjectRef)
Snapshot = list[dict[str, Any]]  # the ledger's light leaderboard, one row per model


@dataclass(frozen=True)
class Progress:
    """What the driver knows while the replay runs; given to the ``on_progress`` callback."""

    done_timestamps: int
    total_timestamps: int
    n_symbols: int
    elapsed: float
    snapshot: Snapshot | None  # light leaderboard, refreshed every ``snapshot_every`` s


class ReplayPort(Protocol):
    def next_chunk(self, index: int) -> Ref:
        """Chunk number ``index`` of the market's plan (warm-up chunks first)."""

    def observe(self, bars: Ref) -> None:
        """Every model sees a warm-up chunk; nothing is booked."""

    def decide(self, bars: Ref) -> dict[str, Ref | None]:
        """Every model decides on the chunk; None for a model taken out of the arena."""

    def wait_for_bars(self, bars: Ref) -> None:
        """Block until the chunk's bars exist."""

    def wait_for_decisions(self, decisions: list[Ref], timeout: float) -> set[Ref]:
        """Block until all of ``decisions`` (not empty) are ready or ``timeout`` s pass; the ready ones."""

    def apply(self, seq: int, bars: Ref, decisions: dict[str, Ref | None]) -> Ref:
        """Hand a chunk to the ledger; the reference to its acknowledgement."""

    def acknowledgement(self, ack: Ref) -> dict[str, Any]:
        """Block for the ledger's answer to ``apply``: ``seq`` and the models it ``skipped``."""

    def snapshot(self) -> Snapshot:
        """The ledger's light leaderboard now."""


class ChunkSource(Protocol):
    @property
    def chunk_size(self) -> int:
        """Timestamps per chunk."""

    @property
    def total(self) -> int:
        """Timestamps to book in all; 0 when there is no end in sight (live without a bar limit)."""

    @property
    def depth(self) -> int:
        """Chunks that may wait for decisions, and as many more for the ledger (0: book each at once)."""

    @property
    def snapshot_every(self) -> float:
        """Seconds between two leaderboard snapshots for the progress callback (0: every chunk)."""

    def indices(self, first: int) -> Iterable[int]:
        """The chunk numbers to book, from ``first`` on, in order."""

    def interrupted(self) -> bool:
        """Ctrl-C came: True to book what is in flight and end normally, False to let it propagate."""


class PaperHook(Protocol):
    @property
    def model(self) -> str:
        """The model whose orders are mirrored."""

    def on_chunk(self, bars: Ref, decisions: Ref | None, snapshot: Snapshot | None) -> None:
        """A chunk handed out, with that model's decisions (None: left out) and the latest snapshot."""


@dataclass(frozen=True)
class ReplaySource:
    """Replay from history: chunks ``first..n_chunks-1`` of the plan, pipelined ``depth`` deep."""

    n_chunks: int
    chunk_size: int
    total: int
    depth: int
    snapshot_every: float

    def indices(self, first: int) -> Iterable[int]:
        return range(first, self.n_chunks)

    def interrupted(self) -> bool:
        return False  # a replay stopped half-way has nothing worth writing: Ctrl-C ends the command


@dataclass(frozen=True)
class ReplayOutcome:
    done: int  # timestamps booked, the ones before a resumed run's first chunk included
    seconds: float  # on the injected clock, from the first warm-up chunk to the last acknowledgement
    skipped: dict[str, int]  # chunks each model was left out of in this run, as the ledger acknowledged


@dataclass
class _Chunk:
    seq: int
    bars: Ref
    decisions: dict[str, Ref | None]


def run_pipeline(
    port: ReplayPort,
    source: ChunkSource,
    *,
    n_warmup_chunks: int,
    first: int,
    decision_timeout: float,
    n_symbols: int,
    clock: Callable[[], float],
    on_progress: Callable[[Progress], None] | None = None,
    paper: PaperHook | None = None,
) -> ReplayOutcome:
    """Book chunks ``source.indices(first)`` (chunk numbers count the warm-up chunks; seq does not).

    A run that starts at the beginning (``first == n_warmup_chunks``) first shows the models the
    warm-up chunks; a resumed one does not (its models catch up from the market's history).
    """
    return _Pipeline(port, source, n_warmup_chunks, decision_timeout, n_symbols, clock, on_progress, paper).run(first)


class _Pipeline:
    def __init__(
        self,
        port: ReplayPort,
        source: ChunkSource,
        n_warm: int,
        timeout: float,
        n_symbols: int,
        clock: Callable[[], float],
        on_progress: Callable[[Progress], None] | None,
        paper: PaperHook | None,
    ) -> None:
        self.port, self.source, self.n_warm, self.timeout = port, source, n_warm, timeout
        self.n_symbols, self.clock, self.on_progress, self.paper = n_symbols, clock, on_progress, paper
        self.pending: deque[_Chunk] = deque()  # waiting for their decisions
        self.acks: deque[Ref] = deque()  # with the ledger, oldest first
        self.skipped: dict[str, int] = {}
        self.snap: Snapshot | None = None
        self.done = 0
        self.start = self.last_snap = 0.0

    def run(self, first: int) -> ReplayOutcome:
        self.start = self.clock()
        if first == self.n_warm:
            for k in range(self.n_warm):
                self.port.observe(self.port.next_chunk(k))
        self.done, self.last_snap = self._timestamps(first - self.n_warm), self.clock()
        depth = self.source.depth
        try:
            for k in self.source.indices(first):
                bars = self.port.next_chunk(k)
                chunk = _Chunk(k - self.n_warm, bars, self.port.decide(bars))
                self.pending.append(chunk)
                while len(self.pending) > depth:
                    self._hand_to_ledger()
                while len(self.acks) > depth:
                    self._settle()
                if self.paper is not None:
                    self.paper.on_chunk(chunk.bars, chunk.decisions.get(self.paper.model), self.snap)
        except KeyboardInterrupt:
            if not self.source.interrupted():
                raise
        while self.pending:  # what is in flight is still booked
            self._hand_to_ledger()
        while self.acks:
            self._settle()
        return ReplayOutcome(self.done, self.clock() - self.start, dict(self.skipped))

    def _timestamps(self, n_chunks: int) -> int:
        total, booked = self.source.total, n_chunks * self.source.chunk_size
        return min(total, booked) if total else booked  # the last chunk may be short

    def _hand_to_ledger(self) -> None:
        """The oldest chunk goes to the ledger with the decisions that are in by its deadline."""
        c = self.pending.popleft()
        self.port.wait_for_bars(c.bars)  # the deadline runs from when the bars exist
        waiting = [r for r in c.decisions.values() if r is not None]
        ready = self.port.wait_for_decisions(waiting, self.timeout) if waiting else set()
        args = {name: (r if r is not None and r in ready else None) for name, r in c.decisions.items()}
        self.acks.append(self.port.apply(c.seq, c.bars, args))

    def _settle(self) -> None:
        """The oldest acknowledgement is in: count its skips, report progress."""
        ack = self.port.acknowledgement(self.acks.popleft())
        for name in ack.get("skipped", ()):
            self.skipped[name] = self.skipped.get(name, 0) + 1
        self.done = self._timestamps(ack["seq"] + 1)
        if self.paper is not None:  # the paper check sizes its orders from the latest equity
            self.snap, self.last_snap = self.port.snapshot(), self.clock()
        if self.on_progress is None:
            return
        fresh = None
        if self.paper is not None:
            fresh = self.snap
        elif self.clock() - self.last_snap >= self.source.snapshot_every or self.done == self.source.total:
            fresh = self.snap = self.port.snapshot()
            self.last_snap = self.clock()
        self.on_progress(Progress(self.done, self.source.total, self.n_symbols, self.clock() - self.start, fresh))
