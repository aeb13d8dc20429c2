"""Small network helpers: a free port, and a URL with its password kept out of messages."""

from __future__ import annotations

import socket
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def redact_url(url: str) -> str:
    """``url`` without its password (in the userinfo or a ``password=`` query), for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparseable Redis URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "password"]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> tuple[str, ...]:
    """The passwords in ``url``, raw and decoded, to blank out of any client or server message."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    except ValueError:
        return ()
    # longest first, so a password that contains another is blanked whole
    return tuple(sorted({s for p in found if p for s in (p, unquote(p))}, key=len, reverse=True))
