"""The audit trail of the HTTP API's mutations: who changed what, when, from what to what.

Every mutating request (an experiment's weights, the kill switch, a registry promotion or rollback)
is recorded by the API's middleware as one entry, a JSON-able dict of the ``FIELDS``::

    time        when (ISO 8601 UTC with milliseconds and 'Z', e.g. 2026-05-09T07:35:25.123Z)
    identity    who (the authenticated principal)       auth        how they proved it (e.g. "bearer")
    method      the HTTP method                           route       the route's template
    path        the request's path                       status      the answer's HTTP status (an int)
    request_id  the request's correlation id             client      the caller's address
    target      what was changed (e.g. {"experiment": "ab"})
    before      its state before the change              after       its state after it
    detail      anything else worth keeping (a reason, an error)

Entries are never changed or removed, so the trail answers "who did this?" even about the person
who could have covered it up through the API. The store writes exactly what it is given: the
middleware leaves secrets (tokens, passwords) out of what it hands over.

Two durable backends, one contract (``AuditTrail``):

``SqliteAudit`` (the default) keeps one SQLite file, made with mode 0o600. Several processes on one
machine (Serve's ingress replicas) append to it at once: the file is in WAL mode, so readers never
block the writer, and a generous busy timeout makes a writer wait its turn instead of failing. The
table holds the entry's JSON plus the columns its filters need (``identity``, ``route``); triggers
refuse every UPDATE and DELETE (``RAISE(ABORT, 'the audit trail is append-only')``), so not even a
raw ``sqlite3`` session can rewrite history without dropping them first. An entry's id is its
integer rowid (``AUTOINCREMENT``: never reused), as a str.

``RedisAudit`` (a cluster, whose replicas run on several nodes) appends to a Redis Stream, by default
``AUDIT_STREAM``, one stream entry per audit entry with a single field ``entry`` holding the JSON;
an entry's id is its stream id (``<ms>-<seq>``). Redis has no append-only guard: give the API's
Redis user no XDEL/XTRIM/DEL on the stream (an ACL) where that matters.

``entries`` answers the newest first, and pages with ``before`` (an id: only older entries). Ids
increase with every append, numerically for SQLite and as (ms, seq) pairs for Redis; compare them
through the store, not as strings. A store that cannot be opened or written raises ``AuditError``
naming the file or the URL (a Redis URL without its password). Both backends are thread-safe: the
middleware calls them through ``asyncio.to_thread`` from many requests at once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import redis

from titan_ray.net import redact_url, url_secrets

AUDIT_STREAM = "titan-ray:audit"
FIELDS = ("time", "identity", "auth", "method", "route", "path", "status", "request_id", "client",
          "target", "before", "after", "detail")
BACKENDS = ("sqlite", "redis")
MAX_LIMIT = 10_000
APPEND_ONLY = "the audit trail is append-only"

_BUSY_TIMEOUT_S = 60.0  # a writer waits this long for another process's write before failing
_REDIS_PAGE = 500  # stream entries read per XREVRANGE while filtering
_STREAM_ID = re.compile(r"^(\d+)(?:-(\d+))?$")
_ROW_ID = re.compile(r"^[0-9]{1,19}$")
_MAX_SEQ = 2**64 - 1  # the largest sequence number of a stream id

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_trail (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time     TEXT NOT NULL,
    identity TEXT,
    route    TEXT,
    entry    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_trail_identity ON audit_trail (identity, id);
CREATE INDEX IF NOT EXISTS audit_trail_route ON audit_trail (route, id);
CREATE TRIGGER IF NOT EXISTS audit_trail_no_update BEFORE UPDATE ON audit_trail
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
CREATE TRIGGER IF NOT EXISTS audit_trail_no_delete BEFORE DELETE ON audit_trail
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
"""


class AuditError(RuntimeError):
    """The audit store cannot be opened, read or written; the message names its file or URL."""


def utc_now() -> str:
    """Now, as the trail writes times: ISO 8601 UTC with milliseconds and 'Z'."""
    return _iso(dt.datetime.now(dt.UTC))


class AuditTrail(ABC):
    """An append-only store of audit entries (see the module's docstring). Subclasses provide
    ``_store`` (write one JSON text, answer its id), ``_read`` and ``close``."""

    def append(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Store one entry; answers it as stored, with "id" (str, increasing) and "time" (ISO 8601 UTC
        with milliseconds and 'Z', set here when the entry has none). Fields left out are stored as
        None. Unknown keys, values that are not JSON, or a status that is not an int: ValueError."""
        record = _validated(entry)
        text = json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        entry_id = self._store(record, text)
        return {"id": entry_id, **json.loads(text)}

    def entries(self, *, limit: int = 200, before: str | None = None, identity: str | None = None,
                route: str | None = None) -> list[dict[str, Any]]:
        """Newest first, at most ``limit`` (1..10000); ``before``: only entries older than that id (for
        paging: pass the last id of the previous page); ``identity`` / ``route``: exact matches.
        Each entry has "id" and every field of ``FIELDS``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {MAX_LIMIT}, not {limit!r}")
        for name, value in (("identity", identity), ("route", route)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"the {name} filter must be a str, not {type(value).__name__}")
        return self._read(limit, before, identity, route)

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _store(self, record: dict[str, Any], text: str) -> str:
        """Write one entry's JSON; answer its id."""

    @abstractmethod
    def _read(self, limit: int, before: str | None, identity: str | None,
              route: str | None) -> list[dict[str, Any]]:
        """The newest matching entries below ``before``, at most ``limit``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqliteAudit(AuditTrail):
    """The trail in one SQLite file (WAL, mode 0o600), shared by the processes of one machine."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # made here, not by sqlite3, so it is never readable by others, not even for a moment;
            # SQLite gives the -wal and -shm files the database file's mode
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise AuditError(f"cannot create the audit trail {self.path}: {exc}") from exc
        with self._errors("opening"):
            conn = self._conn()
            try:  # one process makes the schema, the others wait for it
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    def __repr__(self) -> str:
        return f"SqliteAudit({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are not shared between threads here)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise AuditError(f"the audit trail {self.path} is closed")
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)  # close() closes it from another thread
            self._connections.append(conn)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise AuditError(
                    f"the audit trail {self.path} cannot use SQLite's WAL mode (is it on a network file system?)"
                )
            conn.execute("PRAGMA synchronous = FULL")  # an answered append survives a power cut
        except BaseException:
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            conn.close()
            raise
        self._local.conn = conn
        return conn

    def _store(self, record: dict[str, Any], text: str) -> str:
        identity, route = record["identity"], record["route"]
        with self._errors("appending to"):
            cur = self._conn().execute(
                "INSERT INTO audit_trail (time, identity, route, entry) VALUES (?, ?, ?, ?)",
                (record["time"], identity if isinstance(identity, str) else None,
                 route if isinstance(route, str) else None, text),
            )
            return str(cur.lastrowid)

    def _read(self, limit: int, before: str | None, identity: str | None,
              route: str | None) -> list[dict[str, Any]]:
        where, args = [], []
        if before is not None:
            if not isinstance(before, str) or not _ROW_ID.match(before):
                raise ValueError(f"before must be an id of this audit trail (digits), not {before!r}")
            where.append("id < ?")
            args.append(int(before))
        for column, value in (("identity", identity), ("route", route)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT id, entry FROM audit_trail"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._errors("reading"):
            rows = self._conn().execute(sql, (*args, limit)).fetchall()
        return [_entry(str(row_id), text, self.path) for row_id, text in rows]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise AuditError(f"failed {doing} the audit trail {self.path}: {exc}") from exc


class RedisAudit(AuditTrail):
    """The trail in a Redis Stream, one stream entry ``{entry: JSON}`` per audit entry."""

    def __init__(self, url: str, stream: str = AUDIT_STREAM) -> None:
        if not stream:
            raise ValueError(f"the audit trail's Redis stream name is empty; give one such as {AUDIT_STREAM!r}")
        self.url = redact_url(url)
        self.stream = stream
        self._secrets = url_secrets(url)
        try:
            # redis-py's client is thread-safe: each command takes a connection from its pool
            self._client: redis.Redis = redis.Redis.from_url(url, socket_connect_timeout=5.0,
                                                             socket_timeout=30.0)
        except ValueError as exc:
            raise AuditError(
                f"bad Redis URL {self.url} ({self._scrub(str(exc))}); it must look like "
                "redis://host:port/db, rediss://host:port/db or unix:///path/to.sock"
            ) from exc
        with self._errors("opening"):
            kind = self._client.type(self.stream)
        if kind not in (b"stream", b"none"):
            self._client.close()
            raise AuditError(
                f"Redis at {self.url} already holds {self.stream!r} as a {kind.decode()}, not an audit "
                "trail's stream; choose another stream name"
            )

    def __repr__(self) -> str:
        return f"RedisAudit({self.url!r}, stream={self.stream!r})"

    def _store(self, record: dict[str, Any], text: str) -> str:
        with self._errors("appending to"):
            entry_id = self._client.xadd(self.stream, {"entry": text.encode()})
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def _read(self, limit: int, before: str | None, identity: str | None,
              route: str | None) -> list[dict[str, Any]]:
        top = "+" if before is None else _previous_id(before)
        filtered = identity is not None or route is not None
        page_size = max(limit, _REDIS_PAGE) if filtered else limit
        found: list[dict[str, Any]] = []
        while top is not None and len(found) < limit:
            with self._errors("reading"):
                page = self._client.xrevrange(self.stream, max=top, min="-", count=page_size)
            for raw_id, fields in page:
                entry_id = raw_id.decode()
                if b"entry" not in fields:
                    raise AuditError(f"the stream {self.stream!r} at {self.url} holds {entry_id}, "
                                     "which is not an audit entry (no field 'entry')")
                entry = _entry(entry_id, fields[b"entry"].decode(), f"{self.url} {self.stream}")
                if (identity is None or entry["identity"] == identity) and (
                        route is None or entry["route"] == route):
                    found.append(entry)
                    if len(found) == limit:
                        break
            # the next page starts right below the last id read (an exclusive bound on any Redis)
            top = _previous_id(page[-1][0].decode()) if len(page) == page_size else None
        return found

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turns redis-py's exceptions into an AuditError naming the URL, never its password."""
        try:
            yield
        except redis.RedisError as exc:
            detail = self._scrub(str(exc))
            if isinstance(exc, redis.AuthenticationError):
                reason = f"Redis refused the credentials ({detail})"
            elif isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                reason = f"Redis is unreachable ({detail})"
            else:
                reason = detail
            raise AuditError(
                f"failed {doing} the audit trail {self.stream!r} at {self.url}: {reason}"
            ) from exc

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def open_audit(backend: str, *, path: str | Path | None = None, redis_url: str | None = None) -> AuditTrail:
    """The trail of ``backend``: "sqlite" (``path`` required) or "redis" (``redis_url`` required,
    the stream ``AUDIT_STREAM``)."""
    if backend == "sqlite":
        if path is None or str(path) == "":
            raise ValueError("the sqlite audit trail needs path= (the SQLite file to append to)")
        return SqliteAudit(path)
    if backend == "redis":
        if not redis_url:
            raise ValueError("the redis audit trail needs redis_url= (e.g. redis://host:6379/0)")
        return RedisAudit(redis_url)
    raise ValueError(f"unknown audit backend {backend!r}; choose one of {', '.join(BACKENDS)}")



def _validated(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with every field (None where left out) and its time, or ValueError saying what is wrong."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"an audit entry is a dict, not {type(entry).__name__}")
    unknown = sorted(str(k) for k in entry if k not in FIELDS)
    if unknown:
        raise ValueError(f"unknown audit entry keys {unknown}; the fields are {', '.join(FIELDS)}")
    record = {name: entry.get(name) for name in FIELDS}
    when = record["time"]
    if when is None:
        record["time"] = utc_now()
    elif isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise ValueError("the audit entry's time is a naive datetime; give it a time zone (UTC)")
        record["time"] = _iso(when)
    elif not isinstance(when, str) or not when:
        raise ValueError(f"the audit entry's time must be an ISO 8601 str, not {when!r}")
    status = record["status"]
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise ValueError(f"the audit entry's status must be an int (the HTTP status), not {status!r}")
    for name, value in record.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the audit entry's {name} is not JSON-serialisable: {exc}") from exc
    return record


def _entry(entry_id: str, text: str, where: object) -> dict[str, Any]:
    """A stored entry's JSON as the dict ``entries`` answers: "id" first, then every field."""
    try:
        stored = json.loads(text)
    except ValueError as exc:
        raise AuditError(f"the audit trail {where} holds {entry_id}, which is not JSON: {exc}") from exc
    if not isinstance(stored, dict):
        raise AuditError(f"the audit trail {where} holds {entry_id}, which is not a JSON object")
    return {"id": entry_id, **{name: stored.get(name) for name in FIELDS}}


def _previous_id(entry_id: str) -> str | None:
    """The stream id right below ``entry_id`` (None below the smallest): XREVRANGE's exclusive bound."""
    match = _STREAM_ID.match(entry_id) if isinstance(entry_id, str) else None
    if match is None:
        raise ValueError(f"before must be an id of this audit trail (<ms>-<seq>), not {entry_id!r}")
    ms, seq = int(match[1]), int(match[2] or 0)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_MAX_SEQ}" if ms > 0 else None


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
