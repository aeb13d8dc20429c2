"""The ledger's write-ahead journal on its three backends: order, idempotence, reopening, big
payloads, a SIGKILLed writer, and errors that say how to fix them. Redis is a real redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import redis
from servers import redis_server

from titan_ray.ledger.journal import (
    Journal,
    JournalError,
    MemoryJournal,
    SqliteJournal,
    decode,
    encode,
    open_journal,
)
from titan_ray.ledger.redis_journal import RedisStreamJournal
from titan_ray.net import free_port

Opener = Callable[[], Journal]
BACKENDS = ["sqlite", "redis", "memory"]
DURABLE = ["sqlite", "redis"]  # the backends whose entries outlive the journal object


def _stream() -> str:
    return f"test:journal:{uuid.uuid4().hex}"  # one per test: the Redis server is shared by the session


@pytest.fixture
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a journal on this test's storage; each call opens it again, as a restarted ledger would."""
    opened: list[Journal] = []

    if request.param == "sqlite":
        path = tmp_path / "journal.sqlite"

        def make() -> Journal:
            return SqliteJournal(path)
    elif request.param == "redis":
        url, stream = request.getfixturevalue("redis_url"), _stream()

        def make() -> Journal:
            return RedisStreamJournal(url, stream)
    else:
        make = MemoryJournal

    def tracked() -> Journal:
        journal = make()
        opened.append(journal)
        return journal

    yield tracked
    for journal in opened:
        journal.close()


@pytest.mark.parametrize("opener", BACKENDS, indirect=True)
def test_entries_come_back_in_append_order(opener: Opener) -> None:
    journal = opener()
    assert isinstance(journal, Journal)
    assert len(journal) == 0 and list(journal.entries()) == []
    keys = ["seq-0002", "seq-0000", "seq-0001"]  # not sorted: order is append order, not key order
    for i, key in enumerate(keys):
        assert journal.append(key, f"payload {i}".encode()) is True
    assert list(journal.entries()) == [(k, f"payload {i}".encode()) for i, k in enumerate(keys)]
    assert len(journal) == 3


@pytest.mark.parametrize("opener", BACKENDS, indirect=True)
def test_a_duplicate_key_is_refused_and_writes_nothing(opener: Opener) -> None:
    journal = opener()
    assert journal.append("seq-0", b"first") is True
    assert journal.append("seq-0", b"second") is False
    assert list(journal.entries()) == [("seq-0", b"first")]
    assert len(journal) == 1


@pytest.mark.parametrize("opener", DURABLE, indirect=True)
def test_reopening_keeps_the_entries_and_continues(opener: Opener) -> None:
    first = opener()
    first.append("a", b"1")
    first.append("b", b"2")
    first.close()

    again = opener()  # a new file handle / a new Redis client on the same stream
    assert list(again.entries()) == [("a", b"1"), ("b", b"2")]
    assert again.append("b", b"twice") is False  # the keys survive too, so a replayed chunk is not doubled
    assert again.append("c", b"3") is True
    assert list(again.entries()) == [("a", b"1"), ("b", b"2"), ("c", b"3")]
    assert len(again) == 3


@pytest.mark.parametrize("opener", BACKENDS, indirect=True)
def test_a_5_mb_payload_round_trips(opener: Opener) -> None:
    big = os.urandom(5 * 1024 * 1024)
    journal = opener()
    journal.append("small", b"x")
    journal.append("big", big)
    ((_, small), (key, payload)) = list(journal.entries())
    assert (small, key, payload) == (b"x", "big", big)


@pytest.mark.parametrize("opener", BACKENDS, indirect=True)
def test_2000_appends_stream_back_in_order(opener: Opener) -> None:
    # more than a read page (100), with a partial last page, so paging cannot skip or repeat
    journal = opener()
    n = 2_050
    for i in range(n):
        journal.append(f"k{i}", i.to_bytes(4, "little"))
    assert len(journal) == n
    assert list(journal.entries()) == [(f"k{i}", i.to_bytes(4, "little")) for i in range(n)]


def test_encode_decode_keeps_numpy_arrays_exact() -> None:
    matrix = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    entry = {
        "seq": 3,
        "weights": matrix,
        "column": matrix[:, 1],  # a non-contiguous view
        "times": np.array([1_700_000_000_000_000_000, 1_700_000_060_000_000_000], dtype=np.int64),
        "cash": Decimal("1000000.123456"),
        "models": ["momentum", None],
    }
    payload = encode(entry)
    assert payload[:2] == b"\x80\x05"  # pickle protocol 5
    back = decode(payload)
    assert isinstance(back, dict) and back.keys() == entry.keys()
    for name in ("weights", "column", "times"):
        assert back[name].dtype == entry[name].dtype
        np.testing.assert_array_equal(back[name], entry[name])
    assert (back["seq"], back["cash"], back["models"]) == (3, Decimal("1000000.123456"), ["momentum", None])


def test_an_entry_survives_sigkill_right_after_append(tmp_path: Path) -> None:
    path, n = tmp_path / "journal.sqlite", 50
    code = textwrap.dedent(
        f"""
        import os, signal
        from titan_ray.ledger.journal import SqliteJournal
        journal = SqliteJournal({str(path)!r})
        for i in range({n}):
            assert journal.append(f"k{{i}}", bytes([i]) * 1000)
        print("done", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "done"
    journal = SqliteJournal(path)
    try:
        assert len(journal) == n
        assert list(journal.entries()) == [(f"k{i}", bytes([i]) * 1000) for i in range(n)]
    finally:
        journal.close()


@pytest.mark.parametrize("userinfo", [":secret", "alice:secret"])
def test_unreachable_redis_names_the_address_but_not_the_password(userinfo: str) -> None:
    port = free_port()
    with pytest.raises(JournalError) as caught:
        RedisStreamJournal(f"redis://{userinfo}@127.0.0.1:{port}/0", _stream())
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "secret" not in message
    assert "start redis-server" in message and "ledger.journal.url" in message


def test_a_wrong_redis_password_is_reported_without_it(tmp_path: Path) -> None:
    # a second, password-protected redis-server: the session's one has no password
    with redis_server(tmp_path, password="right") as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(JournalError, match="refused the credentials") as caught:
            RedisStreamJournal(f"redis://:secret@127.0.0.1:{port}/0", _stream())
        assert f"127.0.0.1:{port}" in str(caught.value) and "secret" not in str(caught.value)
        journal = RedisStreamJournal(url, _stream())
        assert journal.append("a", b"1") is True
        journal.close()


def test_a_bad_redis_url_says_what_it_must_look_like() -> None:
    with pytest.raises(JournalError, match="redis://host:port/db") as caught:
        RedisStreamJournal("http://:secret@127.0.0.1:1/0", _stream())
    assert "secret" not in str(caught.value)


def test_a_redis_key_of_another_type_is_refused_at_open(redis_url: str) -> None:
    stream = _stream()
    client = redis.Redis.from_url(redis_url)
    client.set(stream, "not a stream")
    client.close()
    with pytest.raises(JournalError, match="choose another stream name"):
        RedisStreamJournal(redis_url, stream)


def test_a_redis_journal_altered_outside_titanray_is_refused(redis_url: str) -> None:
    stream = _stream()
    journal = RedisStreamJournal(redis_url, stream)
    journal.append("a", b"1")
    journal.close()
    client = redis.Redis.from_url(redis_url)
    client.delete(stream)  # the keys set left behind would make every append a silent no-op
    client.close()
    with pytest.raises(JournalError, match="changed outside TitanRay"):
        RedisStreamJournal(redis_url, stream)


def test_sqlite_errors_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist; create it"):
        SqliteJournal(tmp_path / "missing" / "journal.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database file" * 100)
    with pytest.raises(JournalError, match="not a usable journal"):
        SqliteJournal(garbage)


def test_open_journal_builds_each_backend(tmp_path: Path, redis_url: str) -> None:
    built = [
        open_journal("sqlite", path=tmp_path / "journal.sqlite"),
        open_journal("redis", url=redis_url, stream=_stream()),
        open_journal("memory"),
    ]
    assert [type(j) for j in built] == [SqliteJournal, RedisStreamJournal, MemoryJournal]
    for journal in built:
        journal.close()


@pytest.mark.parametrize(
    ("backend", "kwargs", "match"),
    [
        ("postgres", {}, "unknown journal backend 'postgres'"),
        ("sqlite", {}, "sqlite journal needs path"),
        ("redis", {"url": "redis://127.0.0.1:1/0"}, "redis journal needs stream"),
        ("redis", {"stream": "s"}, "redis journal needs url"),
        ("sqlite", {"path": Path("j.sqlite"), "url": "redis://127.0.0.1:1/0"}, "sqlite journal takes no url"),
        ("memory", {"path": Path("j.sqlite")}, "memory journal takes no path"),
    ],
)
def test_open_journal_rejects_a_bad_combination(backend: str, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        open_journal(backend, **kwargs)  # type: ignore[arg-type]
