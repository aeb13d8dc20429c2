"""The audit trail's two backends, on real stores: a SQLite file and the session's redis-server."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from titan_ray.net import redact_url
from titan_ray.serve import audit
from titan_ray.serve.audit import (
    AUDIT_STREAM,
    FIELDS,
    AuditError,
    AuditTrail,
    RedisAudit,
    SqliteAudit,
    open_audit,
)

ROOT = Path(__file__).resolve().parents[3]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def make(n: int = 0, **over) -> dict:
    entry = {"identity": "alice", "auth": "bearer", "method": "POST", "route": "/experiments/{name}/weights",
             "path": "/experiments/ab/weights", "status": 200, "request_id": f"req-{n}",
             "client": "127.0.0.1", "target": {"experiment": "ab"}, "before": {"control": 0.5},
             "after": {"control": 0.7}, "detail": None}
    entry.update(over)
    return entry


@pytest.fixture(params=["sqlite", "redis"])
def trail(request, tmp_path):
    if request.param == "sqlite":
        store: AuditTrail = SqliteAudit(tmp_path / "audit" / "trail.db")
    else:
        store = RedisAudit(request.getfixturevalue("redis_url"), stream=f"test-audit:{uuid.uuid4().hex}")
    yield store
    store.close()


def ids(entries: list[dict]) -> list[str]:
    return [e["id"] for e in entries]


# both backends ---------------------------------------------------------------------------------


def test_append_answers_the_entry_as_stored_with_id_and_time(trail):
    started = dt.datetime.now(dt.UTC)
    answer = trail.append(make(1))
    assert isinstance(answer["id"], str) and answer["id"]
    assert TIME.match(answer["time"]), answer["time"]
    when = dt.datetime.fromisoformat(answer["time"])
    assert started - dt.timedelta(seconds=1) <= when <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert set(answer) == {"id", *FIELDS}
    assert {k: answer[k] for k in make(1)} == make(1)
    assert trail.entries() == [answer]

    given = trail.append({"time": "2026-01-02T03:04:05.678Z", "identity": "bob", "status": 403})
    assert given["time"] == "2026-01-02T03:04:05.678Z"  # a time the caller gives is kept
    assert given["route"] is None and given["before"] is None  # fields left out are stored as None
    assert trail.entries(limit=1) == [given]


def test_entries_are_newest_first_and_limited(trail):
    appended = [trail.append(make(i)) for i in range(6)]
    assert len(set(ids(appended))) == 6
    everything = trail.entries()
    assert ids(everything) == ids(appended)[::-1]
    assert [e["request_id"] for e in everything] == [f"req-{i}" for i in reversed(range(6))]
    assert all(set(e) == {"id", *FIELDS} for e in everything)
    assert ids(trail.entries(limit=2)) == [appended[5]["id"], appended[4]["id"]]
    assert len(trail.entries(limit=10_000)) == 6
    for bad in (0, -1, 10_001, True, 2.0, "5"):
        with pytest.raises(ValueError, match="limit"):
            trail.entries(limit=bad)


def test_paging_with_before_walks_the_whole_trail_once(trail):
    appended = [trail.append(make(i)) for i in range(7)]
    pages, before = [], None
    while True:
        page = trail.entries(limit=3, before=before)
        if not page:
            break
        pages.append(page)
        before = page[-1]["id"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e["id"] for p in pages for e in p] == ids(appended)[::-1]
    assert trail.entries(before=appended[0]["id"]) == []
    assert ids(trail.entries(before=appended[3]["id"])) == ids(appended[:3])[::-1]
    with pytest.raises(ValueError, match="before"):
        trail.entries(before="not-an-id")


def test_identity_and_route_filters_match_exactly_across_pages(trail, monkeypatch):
    monkeypatch.setattr(audit, "_REDIS_PAGE", 4)  # so Redis reads several pages to fill a filtered answer
    expected_alice_kill = []
    for i in range(30):
        who = "alice" if i % 5 == 0 else "bob"
        route = "/kill" if i % 2 == 0 else "/experiments/{name}/weights"
        answer = trail.append(make(i, identity=who, route=route))
        if who == "alice" and route == "/kill":
            expected_alice_kill.append(answer)
    alice = trail.entries(identity="alice")
    assert [e["request_id"] for e in alice] == [f"req-{i}" for i in (25, 20, 15, 10, 5, 0)]
    assert trail.entries(identity="alic") == []  # exact, not a prefix
    assert trail.entries(identity="ALICE") == []
    kills = trail.entries(route="/kill")
    assert len(kills) == 15 and all(e["route"] == "/kill" for e in kills)
    assert [e["request_id"] for e in trail.entries(route="/kill", limit=3)] == ["req-28", "req-26", "req-24"]
    both = trail.entries(identity="alice", route="/kill")
    assert both == expected_alice_kill[::-1] and len(both) == 3
    first = trail.entries(identity="alice", limit=2)
    assert [e["request_id"] for e in first] == ["req-25", "req-20"]
    rest = trail.entries(identity="alice", limit=10, before=first[-1]["id"])
    assert [e["request_id"] for e in rest] == ["req-15", "req-10", "req-5", "req-0"]


def test_bad_entries_are_refused_and_nothing_is_written(trail):
    with pytest.raises(ValueError, match="'password'") as err:
        trail.append(make(1, password="hunter2"))
    assert "hunter2" not in str(err.value)
    with pytest.raises(ValueError, match="'id'"):
        trail.append({**make(2), "id": "7"})  # the store gives ids
    with pytest.raises(ValueError, match="status"):
        trail.append(make(3, status="200"))
    with pytest.raises(ValueError, match="status"):
        trail.append(make(4, status=True))
    with pytest.raises(ValueError, match="after"):
        trail.append(make(5, after={"model": object()}))
    with pytest.raises(ValueError, match="before"):
        trail.append(make(6, before=float("nan")))
    with pytest.raises(TypeError):
        trail.append(["not", "a", "dict"])
    assert trail.entries() == []


def test_nested_before_and_after_round_trip_through_json(trail):
    before = {"weights": {"control": 0.5, "treatment": 0.5}, "arms": ["control", "treatment"], "shadow": None,
               "note": "été ✓", "depth": {"a": [1, {"b": [True, False, None]}]}}
    after = [{"version": 3, "alias": "champion"}, {"version": 2, "stage": "archived"}]
    answer = trail.append(make(1, target=["registry", "momentum"], before=before, after=after,
                               detail={"why": "better sharpe", "evidence": {"sharpe": 1.25}}))
    assert answer["before"] == before and answer["after"] == after
    assert answer["target"] == ["registry", "momentum"]
    stored = trail.entries()[0]
    assert stored == answer
    assert stored["detail"]["evidence"]["sharpe"] == 1.25
    tupled = trail.append(make(2, target=("a", "b")))  # answered as stored: JSON has lists, not tuples
    assert tupled["target"] == ["a", "b"] == trail.entries(limit=1)[0]["target"]


def test_concurrent_appends_from_threads_lose_nothing(trail):
    def work(worker: int) -> list[str]:
        out = []
        for i in range(40):
            out.append(trail.append(make(i, identity=f"w{worker}"))["id"])
            if i % 10 == 0:
                trail.entries(limit=5)  # reads mixed in with the writes
        return out

    with ThreadPoolExecutor(8) as pool:
        answered = [i for ids_ in pool.map(work, range(8)) for i in ids_]
    stored = trail.entries(limit=10_000)
    assert len(answered) == len(set(answered)) == 320
    assert sorted(ids(stored)) == sorted(answered)
    for worker in range(8):
        assert len(trail.entries(identity=f"w{worker}")) == 40


# SQLite ----------------------------------------------------------------------------------------


def test_sqlite_refuses_update_and_delete_even_through_a_raw_connection(tmp_path):
    path = tmp_path / "trail.db"
    with SqliteAudit(path) as store:
        kept = store.append(make(1))
        raw = sqlite3.connect(path)
        try:
            with pytest.raises(sqlite3.DatabaseError, match="the audit trail is append-only"):
                raw.execute("UPDATE audit_trail SET identity = 'mallory'")
            with pytest.raises(sqlite3.DatabaseError, match="the audit trail is append-only"):
                raw.execute("DELETE FROM audit_trail")
            raw.rollback()
            assert raw.execute("SELECT count(*) FROM audit_trail").fetchone() == (1,)
        finally:
            raw.close()
        assert store.entries() == [kept]


def test_sqlite_file_is_private_and_ids_are_rowids(tmp_path):
    path = tmp_path / "deep" / "er" / "trail.db"
    with SqliteAudit(path) as store:
        first, second = store.append(make(1)), store.append(make(2))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for sidecar in (path.with_name("trail.db-wal"), path.with_name("trail.db-shm")):
            assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
    assert int(second["id"]) == int(first["id"]) + 1
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = SqliteAudit(path)  # the schema is made once; a second open finds it
    assert ids(reopened.entries()) == [second["id"], first["id"]]
    reopened.close()
    with pytest.raises(AuditError, match=re.escape(str(path))):
        reopened.append(make(3))


def test_sqlite_cannot_open_names_the_path(tmp_path):
    not_a_db = tmp_path / "trail.db"
    not_a_db.write_bytes(b"this is not a database, just bytes " * 100)
    with pytest.raises(AuditError, match=re.escape(str(not_a_db))):
        SqliteAudit(not_a_db)
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(AuditError, match=re.escape(str(blocked / "trail.db"))):
        SqliteAudit(blocked / "trail.db")  # its parent is a file


APPENDER = """
import sys, time
from pathlib import Path
from titan_ray.serve.audit import SqliteAudit
path, tag, ready, go = sys.argv[1:5]
store = SqliteAudit(path)
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.001)
for i in range(200):
    store.append({"identity": tag, "route": "/kill", "status": 200, "request_id": f"{tag}-{i}"})
store.close()
"""


def test_sqlite_two_processes_append_at_once_and_lose_nothing(tmp_path):
    path = tmp_path / "shared" / "trail.db"
    go = tmp_path / "go"
    procs = []
    for tag in ("p1", "p2"):
        procs.append(subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), tag, str(tmp_path / f"ready-{tag}"), str(go)],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        ))
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{t}").exists() for t in ("p1", "p2")):
            assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs if p.poll()]
            assert time.monotonic() < deadline, "the appenders never got ready"
            time.sleep(0.01)
        go.touch()  # both have opened the trail: now they append at the same time
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    with SqliteAudit(path) as store:
        stored = store.entries(limit=10_000)
        assert len(stored) == 400
        assert len(set(ids(stored))) == 400
        assert ids(stored) == sorted(ids(stored), key=int, reverse=True)
        for tag in ("p1", "p2"):
            mine = store.entries(identity=tag, limit=10_000)
            assert [e["request_id"] for e in mine] == [f"{tag}-{i}" for i in reversed(range(200))]


# Redis -----------------------------------------------------------------------------------------


def test_redis_unreachable_names_the_url_without_its_password():
    url = "redis://user:s3cret@127.0.0.1:1/0"
    with pytest.raises(AuditError) as err:
        RedisAudit(url)
    assert "s3cret" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value) and "user@" in str(err.value)
    with pytest.raises(AuditError) as err:
        open_audit("redis", redis_url="redis://:s3cret@127.0.0.1:1/0?password=s3cret")
    assert "s3cret" not in str(err.value)


def test_redis_entries_are_stream_entries_with_one_json_field(redis_url):
    stream = f"test-audit:{uuid.uuid4().hex}"
    with RedisAudit(redis_url, stream=stream) as store:
        answer = store.append(make(1))
        assert "s3cret" not in repr(store)
    client = redis.Redis.from_url(redis_url)
    try:
        [(raw_id, fields)] = client.xrange(stream)
        assert raw_id.decode() == answer["id"]
        assert list(fields) == [b"entry"]
        assert audit._entry(answer["id"], fields[b"entry"].decode(), stream) == answer
        client.set(f"{stream}:other", "a string")
    finally:
        client.close()
    with pytest.raises(AuditError, match="choose another stream name"):
        RedisAudit(redis_url, stream=f"{stream}:other")


def test_redis_repr_hides_the_password():
    store = RedisAudit.__new__(RedisAudit)
    store.url, store.stream = redact_url("redis://user:s3cret@host:6379/0?password=s3cret&db=1"), "s"
    assert "s3cret" not in repr(store) and "user@host:6379" in repr(store)


# open_audit ------------------------------------------------------------------------------------


def test_open_audit_picks_the_backend_and_names_what_is_missing(tmp_path, redis_url):
    with open_audit("sqlite", path=tmp_path / "a.db") as store:
        assert isinstance(store, SqliteAudit)
        assert store.path == tmp_path / "a.db"
    with open_audit("redis", redis_url=redis_url) as store:
        assert isinstance(store, RedisAudit) and store.stream == AUDIT_STREAM == "titan-ray:audit"
    with pytest.raises(ValueError, match="path"):
        open_audit("sqlite")
    with pytest.raises(ValueError, match="redis_url"):
        open_audit("redis", path=tmp_path / "a.db")
    with pytest.raises(ValueError, match="sqlite") as err:
        open_audit("postgres", path=tmp_path / "a.db")
    assert "redis" in str(err.value) and "postgres" in str(err.value)
