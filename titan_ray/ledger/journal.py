"""The ledger's write-ahead journal: every accepted chunk is appended before it is acknowledged.

On restart the ledger replays ``entries()`` in append order to rebuild every portfolio, so a crash
loses nothing that was acknowledged. Each entry is a ``(key, payload)`` pair: ``key`` names the
chunk (appending a key twice is a no-op that returns ``False``, so a retried append cannot
double a chunk) and ``payload`` is ``encode(entry)``: a pickle, protocol 5, which carries the
numpy arrays inside a chunk efficiently. A model's target weights change on few bars, so each
``Decisions`` is stored as its first row and the cells that differ from the row above (compared bit
for bit, so NaN and -0.0 come back as they were): the journal of a many-model arena is about half
the bytes, and half the time to write.

Backends and what "durable" means for each once ``append`` has returned:

- ``SqliteJournal``: one SQLite file (WAL mode, ``synchronous=NORMAL``). The entry survives the
  ledger process being killed, even with SIGKILL; a power cut or OS crash may lose the last few
  commits, which is not the failure this journal guards against.
- ``RedisStreamJournal`` (``ledger/redis_journal.py``, loaded only when chosen: redis-py costs a
  ledger process a third of a second to import): a Redis Stream plus a set of the keys appended,
  written together by one Lua script. The entry lives in the Redis server, so it survives the ledger process and its
  node; it survives the *Redis server* crashing only as far as that server persists
  (``appendonly yes`` with ``appendfsync always`` loses nothing, ``everysec`` up to a second).
- ``MemoryJournal``: in-process, gone with the process; for runs without a results folder and
  for tests.

A journal holds pickles: read it only with the TitanRay version that wrote it, and only open
journals you wrote yourself, since unpickling runs code.
"""

from __future__ import annotations

import io
import pickle
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from titan_ray.domain.decisions import Decisions, ExplanationBatch
from titan_ray.lazy import load

__all__ = [
    "Journal",
    "JournalError",
    "MemoryJournal",
    "SqliteJournal",
    "decode",
    "encode",
    "open_journal",
]

_PICKLE_PROTOCOL = 5
_PAGE = 16  # entries read per round trip by entries(): a long journal streams instead of loading whole


class JournalError(RuntimeError):
    """The journal cannot be opened, read or written; the message says what failed and the fix."""


@runtime_checkable
class Journal(Protocol):
    def append(self, key: str, payload: bytes) -> bool:
        """Write ``payload`` under ``key``, durably before returning; ``False`` if ``key`` was already there."""
        ...

    def entries(self) -> Iterator[tuple[str, bytes]]:
        """Every ``(key, payload)``, in append order."""
        ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


class _Pickler(pickle.Pickler):
    """Pickles ``Decisions`` by the weights that changed (``_decisions`` rebuilds them)."""

    def reducer_override(self, obj: object) -> object:
        if type(obj) is not Decisions:
            return NotImplemented
        w = np.ascontiguousarray(obj.weights, dtype=np.float64)
        bits = w.view(np.int64)
        changed = np.flatnonzero(bits[1:] != bits[:-1]) + w.shape[1]  # flat indices, row 1 on
        flat = w.reshape(-1)
        return _decisions, (obj.model, obj.start, w.shape, w[0].copy(), changed, flat[changed], obj.explanations)


def _decisions(model: str, start: int, shape: tuple[int, int], first: np.ndarray, changed: np.ndarray,
               values: np.ndarray, explanations: ExplanationBatch | None) -> Decisions:
    """The ``Decisions`` that ``_Pickler`` stored: each cell holds forward from its last change."""
    source = np.empty(shape)
    source[0] = first
    source.reshape(-1)[changed] = values
    rows = np.zeros(shape, dtype=np.intp)
    rows.reshape(-1)[changed] = changed // shape[1]
    np.maximum.accumulate(rows, axis=0, out=rows)
    return Decisions(model, start, np.take_along_axis(source, rows, axis=0), explanations)


def encode(entry: object) -> bytes:
    """The journal payload of ``entry``: a pickle, protocol 5 (numpy arrays stay compact)."""
    out = io.BytesIO()
    _Pickler(out, protocol=_PICKLE_PROTOCOL).dump(entry)
    return out.getvalue()


def decode(payload: bytes) -> object:
    """The entry that ``encode`` turned into ``payload``; only for journals this TitanRay version wrote."""
    return pickle.loads(payload)


class MemoryJournal:
    """In-process journal: no crash recovery, for runs without a results folder and for tests."""

    def __init__(self) -> None:
        self._entries: list[tuple[str, bytes]] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()  # a threaded actor may append from several threads

    def append(self, key: str, payload: bytes) -> bool:
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            # copied, so a caller that reuses a bytearray cannot rewrite history
            self._entries.append((key, bytes(payload)))
            return True

    def entries(self) -> Iterator[tuple[str, bytes]]:
        with self._lock:
            snapshot = list(self._entries)
        return iter(snapshot)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Nothing to release; the entries stay readable."""


class SqliteJournal:
    """One SQLite file; reopening an existing file continues it."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        if not self._path.parent.is_dir():
            raise JournalError(
                f"cannot open the journal {self._path}: folder {self._path.parent} does not exist; "
                "create it or point the results folder elsewhere"
            )
        # Python's own transaction handling is off (isolation_level=None): each INSERT is its own
        # transaction, committed before execute() returns, which is the commit per append we want.
        # check_same_thread=False because a Ray actor may call from a thread other than the one
        # that built it; self._lock serialises use of the one connection.
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalError(
                f"cannot open the journal {self._path}: {exc}; check the path and its permissions"
            ) from exc
        try:
            # 64 KiB pages (set before the first table, so for a new journal only): an entry is a blob of
            # megabytes, which 4 KiB pages store as a chain of overflow pages, each a frame in the WAL,
            # and the WAL is copied into the database every 1000 frames; with 64 KiB pages an append
            # writes a sixteenth of the frames and the copy comes every 64 MB: a 32-model arena's
            # journal is written in under half the time
            self._conn.execute("PRAGMA page_size=65536")
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(
                    f"the journal {self._path} cannot use WAL mode (SQLite answered {mode!r}), usually a "
                    "network filesystem; put the results folder on a local disk"
                )
            # In WAL mode, NORMAL writes each commit to the WAL file before the commit returns but
            # does not fsync it: a killed process (the crash we guard against) loses nothing,
            # only a power cut or OS crash could lose the last commits. FULL would fsync on every
            # append, which costs milliseconds per chunk for a failure we do not target.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS journal("
                "id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE NOT NULL, payload BLOB NOT NULL)"
            )
        except sqlite3.Error as exc:
            self._conn.close()
            raise JournalError(
                f"{self._path} is not a usable journal ({exc}); delete it or choose another results folder"
            ) from exc
        except JournalError:
            self._conn.close()
            raise

    def append(self, key: str, payload: bytes) -> bool:
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT OR IGNORE INTO journal(key, payload) VALUES (?, ?)", (key, payload)
                )
                # changes() is 0 when the UNIQUE key made the insert a no-op; read under the lock
                # so it belongs to this insert and not another thread's
                (changed,) = self._conn.execute("SELECT changes()").fetchone()
            except sqlite3.Error as exc:
                raise JournalError(f"cannot append {key!r} to the journal {self._path}: {exc}") from exc
        return bool(changed)

    def entries(self) -> Iterator[tuple[str, bytes]]:
        # Paged by id rather than one open cursor, so the lock is never held across a yield and an
        # append between pages is safe.
        last = 0
        while True:
            with self._lock:
                try:
                    rows = self._conn.execute(
                        "SELECT id, key, payload FROM journal WHERE id > ? ORDER BY id LIMIT ?", (last, _PAGE)
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise JournalError(f"cannot read the journal {self._path}: {exc}") from exc
            for row_id, key, payload in rows:
                last = row_id
                yield key, bytes(payload)
            if len(rows) < _PAGE:
                return

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT COUNT(*) FROM journal").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_journal(
    backend: str, *, path: Path | None = None, url: str | None = None, stream: str | None = None
) -> Journal:
    """The journal for ``ledger.journal.backend``: sqlite needs ``path``, redis ``url`` and ``stream``."""
    given = {name for name, value in (("path", path), ("url", url), ("stream", stream)) if value is not None}
    needs = {"sqlite": {"path"}, "redis": {"url", "stream"}, "memory": set[str]()}
    if backend not in needs:
        raise ValueError(
            f"unknown journal backend {backend!r}; ledger.journal.backend must be one of {sorted(needs)}"
        )
    missing, extra = needs[backend] - given, given - needs[backend]
    if missing:
        raise ValueError(f"the {backend} journal needs {', '.join(sorted(missing))}; none was given")
    if extra:
        # a stray argument means the caller believes it configured something that would be ignored
        raise ValueError(
            f"the {backend} journal takes no {', '.join(sorted(extra))}; pass only "
            f"{', '.join(sorted(needs[backend])) or 'nothing'}, or choose the backend that uses it"
        )
    if backend == "sqlite":
        assert path is not None
        return SqliteJournal(path)
    if backend == "redis":
        assert url is not None and stream is not None
        return load("titan_ray.ledger.redis_journal:RedisStreamJournal")(url, stream)
    return MemoryJournal()
