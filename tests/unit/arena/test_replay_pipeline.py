"""The replay pipeline without Ray: deadlines, skips and pipelining depth on a fake clock.

``InProcessArena`` is a second implementation of ``ReplayPort`` (Ray's is ``arena/cluster.py``): a
reference is a ``Ready`` that exists from a given time on the fake clock, a wait advances the clock
as far as Ray's wait would block, and the "ledger" books what it is handed the way ``LedgerActor``
does (a decision that failed is booked as a skip). The port logs what the pipeline asks of it, so
a test can assert the exact order of fan-outs, bookings and acknowledgements.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from titan_ray.arena.live import LiveSource
from titan_ray.arena.pipeline import Progress, ReplayOutcome, ReplaySource, Snapshot, run_pipeline
from titan_ray.config import LiveConfig

# A model's behaviour: chunk number -> (seconds after its bars exist until it answers, the answer).
# An answer that is an exception is a failed decision; math.inf seconds is a model that never answers.
Model = Callable[[int], tuple[float, Any]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance_to(self, t: float) -> None:
        self.now = max(self.now, t)


@dataclass(frozen=True, eq=False)  # hashed by identity, like an object reference
class Ready:
    at: float  # when it exists, on the fake clock
    value: Any


class InProcessArena:
    """The arena's actors in one process, on a fake clock."""

    def __init__(self, clock: FakeClock, models: dict[str, Model], *, bars_after: float = 0.0,
                 removed: tuple[str, ...] = ()) -> None:
        self.clock, self.models, self.bars_after, self.removed = clock, models, bars_after, set(removed)
        self.events: list[str] = []
        self.booked: list[tuple[int, dict[str, Any]]] = []  # (seq, the decisions the ledger got)
        self.decided = 0
        self.awaiting_at_apply: list[int] = []  # chunks decided on, not yet with the ledger, at each apply

    def next_chunk(self, index: int) -> Ready:
        return Ready(self.clock.now + self.bars_after, index)  # a paced feed: the bars exist later

    def observe(self, bars: Ready) -> None:
        self.events.append(f"observe {bars.value}")

    def decide(self, bars: Ready) -> dict[str, Ready | None]:
        self.events.append(f"decide {bars.value}")
        self.decided += 1
        out: dict[str, Ready | None] = {}
        for name, model in self.models.items():
            if name in self.removed:
                out[name] = None
                continue
            seconds, answer = model(bars.value)
            out[name] = Ready(bars.at + seconds, answer)  # a model starts once the bars exist
        return out

    def wait_for_bars(self, bars: Ready) -> None:
        self.clock.advance_to(bars.at)

    def wait_for_decisions(self, decisions: list[Ready], timeout: float) -> set[Ready]:
        assert decisions  # the port's contract: never asked to wait for nothing
        self.clock.advance_to(min(max(d.at for d in decisions), self.clock.now + timeout))
        return {d for d in decisions if d.at <= self.clock.now}

    def apply(self, seq: int, bars: Ready, decisions: dict[str, Ready | None]) -> Ready:
        self.events.append(f"apply {seq}")
        self.awaiting_at_apply.append(self.decided - len(self.booked) - 1)
        booked: dict[str, Any] = {}
        skipped = []
        for name, ref in decisions.items():
            failed = ref is None or isinstance(ref.value, Exception)
            booked[name] = None if failed else ref.value
            if failed:
                skipped.append(name)
        self.booked.append((seq, booked))
        return Ready(self.clock.now, {"seq": seq, "applied": [], "skipped": skipped})

    def acknowledgement(self, ack: Ready) -> dict[str, Any]:
        self.events.append(f"ack {ack.value['seq']}")
        return ack.value

    def snapshot(self) -> Snapshot:
        return [{"model": name, "equity": 100.0 + len(self.booked)} for name in self.models]


def answers(name: str, seconds: float = 0.1) -> Model:
    return lambda k: (seconds, f"{name}{k}")


def replay(arena: InProcessArena, clock: FakeClock, *, n_chunks: int, depth: int = 1, timeout: float = 1.0,
           chunk_size: int = 10, total: int | None = None, snapshot_every: float = 0.5, n_warm: int = 0,
           first: int | None = None, on_progress: Callable[[Progress], None] | None = None) -> ReplayOutcome:
    source = ReplaySource(n_chunks=n_chunks, chunk_size=chunk_size,
                          total=(n_chunks - n_warm) * chunk_size if total is None else total,
                          depth=depth, snapshot_every=snapshot_every)
    return run_pipeline(arena, source, n_warmup_chunks=n_warm, first=n_warm if first is None else first,
                        decision_timeout=timeout, n_symbols=3, clock=clock, on_progress=on_progress)


def test_a_late_model_is_left_out_of_that_chunk_and_trades_in_the_next():
    clock = FakeClock()

    def slow(k: int) -> tuple[float, Any]:
        return (5.0 if k == 1 else 0.2), f"slow{k}"  # late on chunk 1 only

    arena = InProcessArena(clock, {"fast": answers("fast"), "slow": slow})
    outcome = replay(arena, clock, n_chunks=4, timeout=1.0)
    assert arena.booked == [
        (0, {"fast": "fast0", "slow": "slow0"}),
        (1, {"fast": "fast1", "slow": None}),  # not in by the deadline: booked without it
        (2, {"fast": "fast2", "slow": "slow2"}),
        (3, {"fast": "fast3", "slow": "slow3"}),
    ]
    assert outcome.skipped == {"slow": 1}
    assert outcome.done == 40


def test_the_deadline_runs_from_when_the_bars_exist():
    clock = FakeClock()
    # a paced feed: each chunk's bars exist 3 s after they are asked for, longer than the deadline;
    # depth 0 hands each chunk on at once, so only the bars' own time can delay its deadline
    arena = InProcessArena(clock, {"quick": answers("quick", 0.5), "slow": answers("slow", 1.5)}, bars_after=3.0)
    outcome = replay(arena, clock, n_chunks=3, depth=0, timeout=1.0)
    assert [b["quick"] for _, b in arena.booked] == ["quick0", "quick1", "quick2"]
    assert [b["slow"] for _, b in arena.booked] == [None, None, None]  # 1.5 s after its bars: too late
    assert outcome.skipped == {"slow": 3}
    assert outcome.seconds == 12.0  # per chunk: 3 s for the bars, then the whole 1 s deadline for "slow"


def test_a_dead_model_is_skipped_and_the_others_trade_on():
    clock = FakeClock()

    def raises(k: int) -> tuple[float, Any]:
        return 0.0, RuntimeError(f"boom on chunk {k}")

    models = {"ok": answers("ok"), "raises": raises, "silent": lambda k: (math.inf, None), "benched": answers("b")}
    arena = InProcessArena(clock, models, removed=("benched",))  # benched: taken out by the watchdog
    outcome = replay(arena, clock, n_chunks=4, timeout=1.0)
    assert arena.booked == [(seq, {"ok": f"ok{seq}", "raises": None, "silent": None, "benched": None})
                            for seq in range(4)]
    assert outcome.skipped == {"raises": 4, "silent": 4, "benched": 4}
    assert outcome.seconds == 4.0  # a model that never answers costs each chunk the whole deadline, no more


def test_depth_one_keeps_one_chunk_deciding_ahead_and_one_with_the_ledger():
    clock = FakeClock()
    arena = InProcessArena(clock, {"a": answers("a"), "b": answers("b")})
    replay(arena, clock, n_chunks=4, depth=1)
    assert arena.events == [
        "decide 0", "decide 1", "apply 0", "decide 2", "apply 1", "ack 0",
        "decide 3", "apply 2", "ack 1", "apply 3", "ack 2", "ack 3",
    ]


def test_depth_two_never_has_more_than_two_chunks_waiting_for_the_ledger_and_books_in_sequence():
    clock = FakeClock()
    arena = InProcessArena(clock, {"a": answers("a")})
    replay(arena, clock, n_chunks=6, depth=2)
    assert arena.events == [
        "decide 0", "decide 1", "decide 2", "apply 0", "decide 3", "apply 1", "decide 4", "apply 2", "ack 0",
        "decide 5", "apply 3", "ack 1", "apply 4", "apply 5", "ack 2", "ack 3", "ack 4", "ack 5",
    ]
    assert [seq for seq, _ in arena.booked] == [0, 1, 2, 3, 4, 5]
    assert arena.awaiting_at_apply == [2, 2, 2, 2, 1, 0]  # the last two drain once the market has no more


def test_warm_up_chunks_are_observed_first_and_a_resumed_run_starts_at_its_chunk():
    clock = FakeClock()
    arena = InProcessArena(clock, {"a": answers("a")})
    outcome = replay(arena, clock, n_chunks=4, n_warm=2, depth=1)
    assert arena.events[:3] == ["observe 0", "observe 1", "decide 2"]
    assert [seq for seq, _ in arena.booked] == [0, 1]  # seq counts the traded chunks
    assert outcome.done == 20

    resumed = InProcessArena(clock, {"a": answers("a")})
    outcome = replay(resumed, clock, n_chunks=5, n_warm=2, first=3, depth=1)
    assert resumed.events == ["decide 3", "decide 4", "apply 1", "apply 2", "ack 1", "ack 2"]
    assert outcome.done == 30  # the chunk before the resume counts as done


def test_snapshots_are_throttled_and_the_last_chunk_always_gets_one():
    clock = FakeClock()
    arena = InProcessArena(clock, {"a": answers("a", 0.3)})
    seen: list[Progress] = []
    replay(arena, clock, n_chunks=5, total=45, snapshot_every=0.5, on_progress=seen.append)
    assert [p.done_timestamps for p in seen] == [10, 20, 30, 40, 45]  # the last chunk is short
    # acknowledged at 0.3, 0.6, 0.6, 0.9, 0.9 s: a snapshot once 0.5 s have passed since the last, and at the end
    assert [p.snapshot is not None for p in seen] == [False, True, False, False, True]
    assert [p.elapsed for p in seen] == pytest.approx([0.3, 0.6, 0.6, 0.9, 0.9])
    assert {p.total_timestamps for p in seen} == {45} and {p.n_symbols for p in seen} == {3}


class FakeFeed:
    """A live stream in process: chunks 0..n-1 exist; asking for chunk ``interrupt_at`` is Ctrl-C."""

    def __init__(self, n: int, interrupt_at: int | None = None) -> None:
        self.n, self.interrupt_at = n, interrupt_at

    def wait_chunk(self, index: int, timeout: float) -> bool | None:
        if index == self.interrupt_at:
            raise KeyboardInterrupt
        return True if index < self.n else None

    def ended(self) -> str | None:
        return "session closed"


def live(arena: InProcessArena, clock: FakeClock, feed: FakeFeed, cfg: LiveConfig,
         seen: list[Progress]) -> tuple[LiveSource, ReplayOutcome]:
    source = LiveSource(feed, cfg, clock)
    outcome = run_pipeline(arena, source, n_warmup_chunks=0, first=0, decision_timeout=1.0, n_symbols=3,
                           clock=clock, on_progress=seen.append)
    return source, outcome


def test_live_books_each_bar_at_once_with_a_fresh_leaderboard():
    clock = FakeClock()
    arena = InProcessArena(clock, {"a": answers("a")})
    seen: list[Progress] = []
    source, outcome = live(arena, clock, FakeFeed(3), LiveConfig(), seen)
    assert arena.events == ["decide 0", "apply 0", "ack 0", "decide 1", "apply 1", "ack 1",
                            "decide 2", "apply 2", "ack 2"]
    assert [(p.done_timestamps, p.total_timestamps) for p in seen] == [(1, 0), (2, 0), (3, 0)]
    assert all(p.snapshot is not None for p in seen)
    assert (source.stop.reason, outcome.done) == ("feed ended (session closed)", 3)


def test_ctrl_c_ends_a_live_run_with_what_is_in_flight_booked_and_stops_a_replay():
    clock = FakeClock()
    arena = InProcessArena(clock, {"a": answers("a")})
    source, outcome = live(arena, clock, FakeFeed(10, interrupt_at=2), LiveConfig(max_bars=5), [])
    assert (source.stop.reason, outcome.done) == ("interrupted (Ctrl-C)", 2)
    assert [seq for seq, _ in arena.booked] == [0, 1]

    class Interrupted(ReplaySource):
        def indices(self, first: int) -> Iterator[int]:
            yield first
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(InProcessArena(clock, {"a": answers("a")}),
                     Interrupted(n_chunks=3, chunk_size=1, total=3, depth=1, snapshot_every=0.0),
                     n_warmup_chunks=0, first=0, decision_timeout=1.0, n_symbols=1, clock=clock)


def test_the_pipeline_needs_no_ray():
    code = "import sys, titan_ray.arena.pipeline; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
