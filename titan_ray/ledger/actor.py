"""LedgerActor: the one actor that holds every virtual portfolio; a thin wrapper of ``Ledger``.

Nothing is lost in a crash: each chunk is written to the journal before it is acknowledged, and
an actor that Ray restarts (``max_restarts``) replays the journal into a fresh ``Ledger`` before
it serves anything. The ledger is deterministic, so the replayed state is the state it had. Calls
that were in flight are retried by Ray (``max_task_retries``); a chunk applied before the crash is
recognised by its sequence number and applied once.

Chunks are booked strictly in sequence even when Ray retries calls out of order (``apply`` waits
for its turn). Model decisions arrive as references inside a dict, resolved here: a model that died or
raised leaves ``None`` for its chunk (the skip is recorded), and the other models trade on. They are
fetched together, not awaited one by one (each await is a trip through the event loop).

The journal is written by one thread of its own, in booking order, while the next chunk is booked
(the compiled booking core runs without Python's lock, on threads of its own):
a chunk's ``apply`` returns (its acknowledgement) only once its entry is written, so nothing
acknowledged is ever missing from the journal, and a chunk booked but not yet written when the
actor dies is unacknowledged, so Ray retries it into the restarted ledger. SQLite and Redis do
their I/O without Python's lock, so the write runs on the other core. ``busy_seconds`` counts the
booking (and encoding the entry); ``journal_seconds`` the writes.

After each booked chunk its new fills and a light leaderboard go to the ``sink`` the driver handed
in, if any (a side channel: the journal, not the sink, is what a restart reads).

Its memory does not grow with the run: each book keeps the newest ``ledger.memory_rows`` to twice that
records of a kind in RAM and spills the older to files in a folder of this actor's (named by its
actor id, so that a restarted incarnation, which books the journal again, starts it anew), deleted
by ``close``; ``results`` reads them back. The live leaderboard's Sharpe and drawdown are running
figures (``RunningReturns``), each bar of the curve read once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import ray

from titan_ray.config import LedgerConfig, RiskConfig
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import AnswerPart, Decisions
from titan_ray.domain.events import EventSink
from titan_ray.ledger.engine import Ledger, ModelResults
from titan_ray.ledger.journal import Journal, decode, encode, open_journal
from titan_ray.metrics.performance import RunningReturns
from titan_ray.metrics.sample import annualisation_sample
from titan_ray.ray_session import process_memory


def spill_folder() -> Path:
    """This actor's folder for spilled records, empty: the same for every incarnation of the actor
    (its id), so a restart removes what the one before left."""
    actor = ray.get_runtime_context().get_actor_id() if ray.is_initialized() else None
    if actor is None:
        return Path(tempfile.mkdtemp(prefix="titan-ray-ledger-"))
    folder = Path(tempfile.gettempdir()) / f"titan-ray-ledger-{actor}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _done() -> asyncio.Future:
    """An already finished future: a chunk with no journal to wait for."""
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _item(answers: dict[Any, Any], ref: Any) -> Any:
    """What ``ref`` answered: its object, or its part of its group's (the group's failure is each member's)."""
    if not isinstance(ref, AnswerPart):
        return answers[ref]
    answer = answers[ref.answer]
    return answer if isinstance(answer, BaseException) else answer[ref.index]


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


@ray.remote
class LedgerActor:
    def __init__(
        self,
        ledger: LedgerConfig,
        risk: RiskConfig,
        symbols: tuple[str, ...],
        calendar: str,
        models: dict[str, bool | ray.ObjectRef],
        periods_per_year: float,
        journal: dict[str, Any] | None = None,
        sink: EventSink | None = None,
    ) -> None:
        # each model's long_only, or a reference to its actor's info(): read here, so that this process
        # starts while the models are still being built (a restart reads them again: the driver holds them)
        # (a constructor cannot await; futures wait as ray.get would, without its warning for async actors)
        refs = [v for v in models.values() if isinstance(v, ray.ObjectRef)]
        infos = {id(r): r.future().result() for r in refs}
        long_only = {n: infos[id(v)]["long_only"] if isinstance(v, ray.ObjectRef) else bool(v) for n, v in models.items()}
        self._spill = spill_folder()
        self._ledger = Ledger(ledger=ledger, risk=risk, symbols=symbols, calendar=calendar, models=long_only,
                              memory_rows=ledger.memory_rows, spill=self._spill)
        self._running = {name: RunningReturns(book.initial_cash_micro / 1e6) for name, book in self._ledger.books.items()}
        self._periods, self._calendar = periods_per_year, calendar
        self._busy = 0.0  # seconds spent booking chunks: shows whether the ledger is the bottleneck
        self._journal_busy = 0.0  # seconds the writer thread spent writing the journal
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")  # one: in order
        self._incarnation = uuid.uuid4().hex
        self._kills = 0
        self._failures: dict[str, list[str]] = {}
        self._turn = asyncio.Condition()
        self._journal: Journal | None = open_journal(**journal) if journal else None
        self.replayed = 0
        if self._journal is not None:
            for _key, payload in self._journal.entries():
                self._replay(decode(payload))
                self.replayed += 1
        self._sink = sink

    def _replay(self, entry: tuple) -> None:
        if entry[0] == "chunk":
            _, seq, bars, decisions = entry
            self._ledger.apply(seq, bars, decisions)
        elif entry[0] == "kill":
            _, _n, model, on = entry
            self._ledger.kill_switch(model, on)
            self._kills += 1

    async def apply(self, seq: int, bars: BarBatch, decisions: dict[str, Any]) -> dict[str, Any]:
        # Ray may run retried calls out of order after a restart: each chunk waits for its turn,
        # so chunks are booked strictly in sequence, and one already booked is acknowledged again.
        async with self._turn:
            await self._turn.wait_for(lambda: seq <= self._ledger.last_seq + 1)
            if seq <= self._ledger.last_seq:
                return {"seq": seq, "applied": [], "duplicate": True, "skipped": []}
            try:
                ack, written = await self._apply(seq, bars, decisions)
            finally:
                self._turn.notify_all()
        await written  # the next chunk may be booked meanwhile; this one is acknowledged once journaled
        return ack

    def _write(self, key: str, payload: bytes) -> None:
        start = time.perf_counter()
        self._journal.append(key, payload)
        self._journal_busy += time.perf_counter() - start

    async def _apply(self, seq: int, bars: BarBatch, decisions: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        resolved: list[Decisions | None] = []
        skipped = []
        # fetched together (one by one, each await costs a round trip through the event loop: a tenth
        # of a second per chunk at 32 models); an exception is a dead or failing model's answer, and
        # must not stop the others; a model that failed in a group of models answers its exception
        # A group of models answers in one object: each member's reference is its ``AnswerPart``.
        refs = {name: ref for name, ref in decisions.items() if ref is not None}
        answers = list(dict.fromkeys(r.answer if isinstance(r, AnswerPart) else r for r in refs.values()))
        got = dict(zip(answers, await asyncio.gather(*answers, return_exceptions=True), strict=True))
        values = {name: _item(got, r) for name, r in refs.items()}
        for name in decisions:
            value = values.get(name)
            if isinstance(value, BaseException) and not isinstance(value, Exception):
                raise value  # KeyboardInterrupt, SystemExit, a cancelled call: not the model's failure
            if isinstance(value, Exception):
                self._failures.setdefault(name, []).append(f"chunk {seq}: {type(value).__name__}: {value}"[:500])
                value = None
            resolved.append(value)
            if value is None:
                skipped.append(name)
        start = time.perf_counter()
        before = {n: b.n_fills for n, b in self._ledger.books.items()}
        ack = self._ledger.apply(seq, bars, resolved)
        written: Any = _done()
        if self._journal is not None:
            # encoded here: pickling holds Python's lock, and on the writer thread it fought the booking
            payload = encode(("chunk", seq, bars, resolved))
            written = asyncio.get_running_loop().run_in_executor(self._writer, self._write, f"chunk:{seq}", payload)
        self._busy += time.perf_counter() - start
        if self._sink is not None:
            fills = [f for n in self._ledger.books for f in self._ledger.fills(n, before[n])]
            if fills:
                self._sink.fills(fills)
            self._sink.leaderboard(self.snapshot())
        return {**ack, "skipped": skipped}, written

    async def kill_switch(self, model: str, on: bool = True) -> None:
        if model not in self._ledger.books:
            raise KeyError(f"unknown model {model!r}; models: {sorted(self._ledger.books)}")
        # At once, between two bookings (this loop runs one coroutine at a time), and journaled by the
        # same writer thread, so after every chunk booked before it and before every chunk after it.
        self._kills += 1
        written = None
        if self._journal is not None:
            entry = encode(("kill", self._kills, model, on))
            written = asyncio.get_running_loop().run_in_executor(self._writer, self._write, f"kill:{self._kills}", entry)
        self._ledger.kill_switch(model, on)
        if written is not None:
            await written  # answered once journaled, as a chunk is

    def last_seq(self) -> int:
        return self._ledger.last_seq

    def heartbeat(self) -> dict[str, Any]:
        return {"incarnation": self._incarnation, "pid": os.getpid(), "seq": self._ledger.last_seq,
                "replayed": self.replayed}

    def busy_seconds(self) -> float:
        return self._busy

    def journal_seconds(self) -> float:
        """Seconds spent writing the journal, on its own thread, beside the booking."""
        return self._journal_busy

    def node_id(self) -> str:
        """The Ray node this incarnation runs on (recorded in run.json's placement)."""
        return ray.get_runtime_context().get_node_id()

    def failures(self) -> dict[str, list[str]]:
        return self._failures

    def snapshot(self) -> list[dict[str, Any]]:
        """A light live leaderboard: enough for a terminal table while the replay runs."""
        rows = []
        for name, book in self._ledger.books.items():
            running = self._running[name]
            running.add(book.rows("curve", running.n)["equity"])  # the bars booked since the last snapshot
            initial = book.initial_cash_micro / 1e6
            sample = annualisation_sample(running.n, self._periods, self._calendar)
            rows.append(
                {
                    "model": name,
                    "equity": running.last,
                    "total_return": running.last / initial - 1,
                    # withheld on a sample too short to annualise (metrics/sample.py), as the leaderboard
                    "sharpe": None if sample.too_small else _finite(running.sharpe(self._periods)),
                    "sample_too_small": sample.too_small,
                    "max_drawdown": running.max_drawdown() if running.n else 0.0,
                    "n_trades": book.n_round_trips,
                    "n_fills": book.n_fills,
                    "n_rejected": book.n_rejected,
                }
            )
        return rows

    def results(self) -> dict[str, ModelResults]:
        return self._ledger.results()

    def memory(self) -> dict[str, int | None]:
        """This process's memory (``rss``, ``uss``), the records and explanation batches the books
        hold in RAM now and the bytes of their record tables, and the records booked in all."""
        books = self._ledger.books.values()
        return {**process_memory(), "records_in_memory": sum(b.rows_in_memory for b in books),
                "record_bytes_in_memory": sum(b.memory_bytes for b in books),
                "records": sum(b.n_records for b in books)}

    def close(self) -> None:
        """End of run: close the journal (SQLite folds its write-ahead log in) and the sink, and
        delete the spilled records (the driver has read the results)."""
        shutil.rmtree(self._spill, ignore_errors=True)  # every book's files are in it
        self._writer.shutdown(wait=True)
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None
