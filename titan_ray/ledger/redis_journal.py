"""The ledger's journal in a Redis Stream, for clusters whose ledger may run on any node.

``ledger/journal.py`` has the contract (``Journal``) and what "durable" means for this backend; this
module is imported only when ``ledger.journal.backend`` is ``redis``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from titan_ray.ledger.journal import _PAGE, JournalError
from titan_ray.net import redact_url, url_secrets

# SADD answers 1 only for a new key, so the entry is written at most once. Redis runs a script
# atomically (and persists/replicates its effects as one MULTI/EXEC), so no crash can leave the
# key recorded without its entry, or the entry written twice.
_APPEND_SCRIPT = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'k', ARGV[1], 'p', ARGV[2])
    return 1
else
    return 0
end
"""


class RedisStreamJournal:
    """A Redis Stream ``stream`` of entries ``{k: key, p: payload}`` and a set ``stream:keys``."""

    def __init__(self, url: str, stream: str) -> None:
        if not stream:
            raise ValueError(
                "the journal's Redis stream name is empty; give a name such as 'titan:journal:<run>'"
            )
        self._url = redact_url(url)
        self._secrets = url_secrets(url)
        self._stream = stream
        self._keys = f"{stream}:keys"
        try:
            # A few quick retries ride out a dropped connection; they are safe because append is
            # idempotent: a retry of an append that did land answers False and writes nothing.
            self._client: redis.Redis = redis.Redis.from_url(
                url,
                socket_connect_timeout=5.0,
                socket_timeout=60.0,  # a multi-MB chunk on a slow link, but never a hang forever
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
        except ValueError as exc:
            raise JournalError(
                f"bad Redis URL {self._url} ({self._scrub(str(exc))}); ledger.journal.url must look like "
                "redis://host:port/db, rediss://host:port/db or unix:///path/to.sock"
            ) from exc
        self._append = self._client.register_script(_APPEND_SCRIPT)
        self._check_keys()

    def _check_keys(self) -> None:
        """Fail at start, not mid-run, on a reachable server holding something else under our names."""
        with self._errors("opening the journal"):
            kinds = (self._client.type(self._stream), self._client.type(self._keys))
            if kinds[0] not in (b"stream", b"none") or kinds[1] not in (b"set", b"none"):
                # the script's SADD would succeed and its XADD fail, recording a key with no entry
                raise JournalError(
                    f"Redis at {self._url} already holds {self._stream!r} ({kinds[0].decode()}) and "
                    f"{self._keys!r} ({kinds[1].decode()}), not a journal's stream and set; "
                    "choose another stream name"
                )
            n_entries, n_keys = self._client.xlen(self._stream), self._client.scard(self._keys)
            if n_entries != n_keys:
                # e.g. the stream deleted but not its keys: every append would answer "already
                # there" and write nothing, so refuse rather than silently journal nothing
                raise JournalError(
                    f"the journal {self._stream!r} at {self._url} has {n_entries} entries but {n_keys} keys, "
                    f"so it was changed outside TitanRay; restore it, or DEL {self._stream} {self._keys} "
                    "to start a fresh run"
                )

    def append(self, key: str, payload: bytes) -> bool:
        with self._errors(f"appending {key!r}"):
            added = self._append(keys=[self._stream, self._keys], args=[key, payload])
        return added == 1

    def entries(self) -> Iterator[tuple[str, bytes]]:
        start = "-"
        while True:
            with self._errors("reading the journal"):
                page = self._client.xrange(self._stream, min=start, max="+", count=_PAGE)
            for _id, fields in page:
                yield fields[b"k"].decode(), fields[b"p"]
            if len(page) < _PAGE:
                return
            # the id right after the last one read (ids are "<ms>-<seq>"), which works on every
            # Redis with streams, unlike the exclusive "(" range that needs 6.2
            ms, _, seq = page[-1][0].decode().partition("-")
            start = f"{ms}-{int(seq) + 1}"

    def __len__(self) -> int:
        with self._errors("counting the journal"):
            return int(self._client.xlen(self._stream))

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turns redis-py's exceptions into a JournalError that names the URL, never its password."""
        try:
            yield
        except redis.RedisError as exc:
            detail = self._scrub(str(exc))
            if isinstance(exc, redis.AuthenticationError):
                message = (
                    f"Redis at {self._url} refused the credentials ({detail}); fix them in ledger.journal.url"
                )
            elif isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                message = (
                    f"Redis unreachable at {self._url} while {doing} ({detail}); "
                    "start redis-server there or fix ledger.journal.url"
                )
            else:
                message = f"Redis at {self._url} failed while {doing}: {detail}"
            raise JournalError(message) from exc

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
