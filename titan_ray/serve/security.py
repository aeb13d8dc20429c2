"""Who may call what on the HTTP API: credentials, scopes, rate limits, the audit trail, limits.

Every TitanRay FastAPI app in Serve (the main ingress, each model's app, each experiment's app) has
the ``Guard`` ASGI middleware (``titan_ray.serve.http.install``); each replica sets the ``Security``
it enforces as its app's ``state.security`` (built from the app's ``auth`` settings, the same in every
app). A request passes through, in this order:

    request id     the client's ``X-Request-Id`` (up to 128 letters, digits and ``._:;=+/@-``; any other
                   is 400), else a new one; answered in the response's ``X-Request-Id``
    body size      a body larger than ``max_body_bytes`` is 413 (declared or counted while read)
    credentials    ``Authorization: Bearer T``: T is the static admin token (``$TITAN_RAY_API_TOKEN``),
                   or a JWT (HS256 with ``$TITAN_RAY_JWT_SECRET``; RS256/ES256 by a key of the JWKS at
                   ``jwks_url``), with ``exp`` and ``sub``, ``nbf`` when present, ``iss``/``aud`` when
                   configured. ``alg: none`` and an algorithm the server has no key for are refused.
    rate limit     per identity (a token's ``sub``, else the client's address) and route class
                   (``read``, ``predict``, ``mutate``): a GCRA (a token bucket of ``N`` per period,
                   refilled evenly), in Redis when ``redis_url`` is set (one script, Redis's clock:
                   every replica of every app shares it), else in the replica. 429 with Retry-After.
    authorization  the route's scope (``ROUTES``): 401 without credentials (or bad ones), 403 with
                   credentials that lack it. Reads need ``read`` only with ``require_auth_for_reads``.
    audit          every request to a mutating route that got past the credentials, with its status and
                   what the handler put in ``request.state.audit`` (target, before, after), is appended
                   to the audit trail (``titan_ray.serve.audit``) before the answer is sent.

Every answer carries security headers (no sniffing, no framing, no referrer, a Content-Security-Policy
on the dashboard); CORS answers only the origins in ``cors_origins`` (none by default). A route that
changes state and is missing from ``ROUTES`` needs ``admin``: new routes are closed until listed.

Secrets (the static token, the JWT secret, the tokens themselves) are never logged, never put in an
error, a metric or the audit trail: errors say what is wrong with a token, not what it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from fastapi import HTTPException
from ray.serve.context import _get_serve_request_context

from titan_ray.config import ConfigError, resolve_url
from titan_ray.serve.audit import AuditTrail, open_audit
from titan_ray.serve.settings import AUDIT_PATH_ENV, JWKS_URL_ENV, AuthSettings

log = logging.getLogger(__name__)

SCOPES = ("read", "trade", "admin")
IMPLIED = {"admin": frozenset(SCOPES), "trade": frozenset({"trade", "read"}), "read": frozenset({"read"})}
HS_ALGORITHMS = ("HS256",)
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
MIN_SECRET_BYTES = 32
READS = "read*"  # the scope of a read: `read`, asked only when reads are locked


@dataclass(frozen=True)
class Route:
    """A class of routes: the method and the path (a regular expression over the whole path)."""

    method: str  # "*" = any
    pattern: re.Pattern[str]
    name: str  # the route template, as the audit trail and the metrics name it
    klass: str  # open | read | predict | mutate: the rate limit it counts against
    scope: str | None  # read | trade | admin | READS | None (open)

    @property
    def audited(self) -> bool:
        return self.klass == "mutate"


def _route(method: str, path: str, name: str, klass: str, scope: str | None) -> Route:
    return Route(method, re.compile(path + r"/?\Z"), name, klass, scope)


SEGMENT = r"/[^/]+"
PREDICT_MODEL = _route("POST", r"/v1/predict" + SEGMENT, "/v1/predict/{model}", "predict", READS)
PREDICT_EXPERIMENT = _route("POST", r"/v1/experiments" + SEGMENT + "/predict", "/v1/experiments/{name}/predict",
                            "predict", READS)
ROUTES = (
    _route("PUT", r"/v1/experiments" + SEGMENT + "/weights", "/v1/experiments/{name}/weights", "mutate", "admin"),
    _route("POST", r"/v1/models" + SEGMENT + "/kill-switch", "/v1/models/{model}/kill-switch", "mutate", "trade"),
    _route("POST", r"/v1/registry" + SEGMENT + "/promote", "/v1/registry/{name}/promote", "mutate", "admin"),
    _route("POST", r"/v1/registry" + SEGMENT + "/rollback", "/v1/registry/{name}/rollback", "mutate", "admin"),
    _route("GET", r"/v1/audit", "/v1/audit", "read", "admin"),
    _route("GET", r"/v1/whoami", "/v1/whoami", "read", None),
    PREDICT_MODEL,
    PREDICT_EXPERIMENT,
    _route("GET", r"/v1(/.*)?", "/v1", "read", READS),
    _route("HEAD", r"/v1(/.*)?", "/v1", "read", READS),
    _route("*", r"/v1(/.*)?", "/v1", "mutate", "admin"),  # any other method under /v1: closed until listed
    _route("*", r".*", "", "open", None),  # the dashboard, /healthz, /metrics, /openapi.json, /docs
)


PREDICT = {"model": PREDICT_MODEL, "experiment": PREDICT_EXPERIMENT}  # the one route of those apps


def route_of(method: str, path: str, app: str = "main") -> Route:
    """The class of a request to ``path`` (relative to the app's route prefix) of an ``app``: ``main``
    (the ingress), ``model`` or ``experiment`` (whose one route is a prediction)."""
    if app in PREDICT and method == "POST":
        return PREDICT[app]
    for route in ROUTES:
        if route.method in ("*", method) and route.pattern.match(path):
            return route
    raise AssertionError("ROUTES ends with a catch-all")  # pragma: no cover


@dataclass(frozen=True)
class Identity:
    """Who is calling: ``subject`` (a JWT's ``sub``, ``api-token``, or ``anonymous``), how they proved it,
    the scopes they hold (implied ones included), and when that proof expires (epoch seconds)."""

    subject: str
    auth: str  # jwt | api-token | anonymous
    scopes: frozenset[str]
    expires: float | None = None

    def holds(self, scope: str) -> bool:
        return scope in self.scopes

    def describe(self) -> dict[str, Any]:
        return {"identity": self.subject, "auth": self.auth, "scopes": sorted(self.scopes),
                "expires": self.expires}


ANONYMOUS = Identity("anonymous", "anonymous", frozenset())


class AuthError(Exception):
    """A credential that does not hold: 401, the message says why (never what the token was)."""


def granted(claimed: Any) -> frozenset[str]:
    """The scopes a ``scope`` claim grants (space-separated, or a list), implied ones included; names that
    are not scopes are ignored."""
    names = claimed.split() if isinstance(claimed, str) else claimed if isinstance(claimed, list) else []
    out: set[str] = set()
    for name in names:
        out |= IMPLIED.get(str(name), frozenset())
    return frozenset(out)


class Credentials:
    """Checks bearer tokens: the static admin token and JWTs. Holds the secrets; never shows them."""

    def __init__(self, auth: AuthSettings) -> None:
        self._static = (os.environ.get(auth.token_env) or "").strip() or None
        secret = os.environ.get(auth.jwt_secret_env) or None
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"${auth.jwt_secret_env} is {len(secret.encode())} bytes; HS256 needs at least "
                              f"{MIN_SECRET_BYTES} (make one with `openssl rand -hex 32`)")
        self._secret = secret
        self._jwks_source = resolve_url(auth.jwks_url or os.environ.get(JWKS_URL_ENV) or None, "auth.jwks_url")
        self._jwks: Any = None
        if self._jwks_source is not None:
            self._jwks = _jwks_keys(self._jwks_source)
        self._issuer, self._audience, self._leeway = auth.issuer, auth.audience, auth.leeway_s
        self.token_env, self.secret_env = auth.token_env, auth.jwt_secret_env

    def __repr__(self) -> str:
        return (f"Credentials(static={self._static is not None}, hs256={self._secret is not None}, "
                f"jwks={self._jwks_source is not None})")

    @property
    def configured(self) -> bool:
        return self._static is not None or self._secret is not None or self._jwks is not None

    @property
    def remote_keys(self) -> bool:
        """The JWKS is fetched over the network (a check may block: run it off the event loop)."""
        return isinstance(self._jwks, jwt.PyJWKClient)

    def check(self, authorization: str | None) -> Identity:
        """The identity an ``Authorization`` header proves (``ANONYMOUS`` without one); AuthError otherwise."""
        if authorization is None:
            return ANONYMOUS
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("send Authorization: Bearer <token>")
        if self._static is not None and hmac.compare_digest(token.encode(), self._static.encode()):
            return Identity("api-token", "api-token", IMPLIED["admin"])
        if token.count(".") != 2:
            raise AuthError("the bearer token is neither the API token nor a JWT")
        return self._jwt(token)

    def _jwt(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg in HS_ALGORITHMS and self._secret is not None:
            key: Any = self._secret
        elif alg in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            key = self._signing_key(token, header)
        else:
            have = [*(HS_ALGORITHMS if self._secret else ()), *(ASYMMETRIC_ALGORITHMS if self._jwks else ())]
            raise AuthError(f"a JWT signed with {alg!r} is not accepted here; accepted: {have or 'none configured'}")
        required = ["exp", "sub", *(["iss"] if self._issuer else []), *(["aud"] if self._audience else [])]
        try:
            claims = jwt.decode(token, key, algorithms=[alg], issuer=self._issuer, audience=self._audience,
                                leeway=self._leeway, options={"require": required,
                                                              "verify_aud": self._audience is not None})
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the token's issuer (iss) is not the one this server trusts") from None
        except jwt.InvalidAudienceError:
            raise AuthError("the token's audience (aud) does not name this server") from None
        except jwt.MissingRequiredClaimError as err:
            raise AuthError(f"the token lacks the claim {err.claim!r}") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature does not verify") from None
        except jwt.PyJWTError as err:
            raise AuthError(f"the token is invalid: {type(err).__name__}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > 200:
            raise AuthError("the token's subject (sub) must be a string of 1 to 200 characters")
        return Identity(subject, "jwt", granted(claims.get("scope", claims.get("scp"))), float(claims["exp"]))

    def _signing_key(self, token: str, header: dict[str, Any]) -> Any:
        try:
            if isinstance(self._jwks, jwt.PyJWKClient):
                found = self._jwks.get_signing_key_from_jwt(token)
            else:
                found = _key_for(self._jwks, header.get("kid"))
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, KeyError) as err:
            raise AuthError(f"no key of the JWKS verifies this token (kid {header.get('kid')!r}): "
                            f"{type(err).__name__}") from None
        if found.algorithm_name != header.get("alg"):  # an RSA key verifies RS256 only, a P-256 key ES256
            raise AuthError(f"the JWKS key {header.get('kid')!r} is for {found.algorithm_name}, "
                            f"not {header.get('alg')}")
        return found.key


def _jwks_keys(source: str) -> Any:
    """The keys of a JWKS: a client that fetches and caches an https URL, or the keys of a file."""
    if source.startswith(("http://", "https://")):
        return jwt.PyJWKClient(source, cache_keys=True, lifespan=300, timeout=5)
    path = Path(source.removeprefix("file://")).expanduser()
    try:
        return jwt.PyJWKSet.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, jwt.PyJWKSetError) as err:
        raise ConfigError(f"auth.jwks_url: cannot read a JWKS from {path}: {err}") from None


def _key_for(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK:
    if kid is None:
        if len(keys.keys) == 1:
            return keys.keys[0]
        raise KeyError("the token names no key id (kid) and the JWKS has several keys")
    return keys[kid]


# --- rate limits ----------------------------------------------------------------------------------

# A GCRA in one Redis script, on Redis's clock (replicas' clocks may differ): KEYS[1] holds the
# theoretical arrival time (microseconds); ARGV = interval (us per request), burst (requests).
# Answers 0 when the request is allowed, else the microseconds until one would be.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + interval
if new - now > limit then return new - now - limit end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1000)
return 0
"""


class RateLimiter:
    """GCRA per (identity, class): ``n`` requests per ``period`` seconds, a burst of ``n`` allowed."""

    def __init__(self, limits: dict[str, tuple[int, float]], redis_url: str | None = None) -> None:
        self.limits = limits
        self._tat: dict[tuple[str, str], float] = {}
        self._redis: Any = None
        self._script: Any = None
        self._warned = 0.0
        if redis_url is not None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._script = self._redis.register_script(GCRA)

    @property
    def shared(self) -> bool:
        return self._redis is not None

    async def hit(self, identity: str, klass: str) -> float | None:
        """None when the request may go on; else the seconds after which one would be allowed."""
        if klass not in self.limits:
            return None
        n, period = self.limits[klass]
        interval = period / n
        if self._redis is not None:
            key = f"titan-ray:rate:{klass}:{hashlib.sha256(identity.encode()).hexdigest()[:32]}"
            try:
                wait_us = await self._script(keys=[key], args=[int(interval * 1e6), n])
                return None if int(wait_us) <= 0 else int(wait_us) / 1e6
            except Exception as err:  # noqa: BLE001 - Redis down: the replica's own limit, said once a minute
                if time.monotonic() - self._warned > 60:
                    self._warned = time.monotonic()
                    log.warning("rate limits: Redis is unreachable (%s); each replica limits on its own meanwhile",
                                type(err).__name__)
        return self._local(identity, klass, interval, n)

    def _local(self, identity: str, klass: str, interval: float, n: int) -> float | None:
        now = time.monotonic()
        if len(self._tat) > 100_000:  # forget the identities whose bucket is full again
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        tat = max(self._tat.get((identity, klass), now), now)
        new = tat + interval
        if new - now > interval * n:
            return new - now - interval * n
        self._tat[(identity, klass)] = new
        return None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


# --- the guard ------------------------------------------------------------------------------------

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:;=+/@\-]{1,128}$")  # a client's own id: plain, or refused (400)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# The dashboard loads its own scripts, styles and fonts only; charts draw on canvases.
DASHBOARD_CSP = (b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                 b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
DOCS = ("/docs", "/redoc")  # FastAPI's Swagger UI and ReDoc load their assets from a CDN: no CSP there
CORS_METHODS = "GET, POST, PUT, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, X-Client-Key, X-Request-Id"


class BodyTooLarge(HTTPException):
    """Raised while a body is read past the limit: an HTTPException, so that FastAPI's body parsing
    answers it as it is (413) instead of as a body it could not parse (400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes (auth.max_body_bytes)")


def _serve_request_id() -> str:
    """The id Serve gave the request (the client's X-Request-Id, else its own), which Serve answers in
    the response's X-Request-Id: '' outside a Serve replica."""
    try:
        return _get_serve_request_context().request_id or ""
    except Exception:  # noqa: BLE001 - a private API of Serve's: outside Serve, or changed
        return ""


class Security:
    """What one replica enforces: its credentials, rate limiter, audit trail and limits."""

    def __init__(self, auth: AuthSettings, *, app: str = "main", registry_root: str | None = None) -> None:
        self.settings = auth
        self.app = app
        self.credentials = Credentials(auth)
        redis_url = resolve_url(auth.redis_url, "auth.redis_url")
        self.limiter = RateLimiter(auth.rate_limits.resolved(), redis_url)
        self.audit: AuditTrail | None = None
        if app == "main":  # the only app with mutating routes
            self.audit = _open_audit(auth, redis_url, registry_root)
        self.cors = frozenset(auth.cors_origins)

    def client_key(self, scope: dict[str, Any], headers: dict[bytes, str], identity: Identity) -> str:
        if identity.auth != "anonymous":
            return f"sub:{identity.subject}"
        if self.settings.trust_forwarded_for:
            forwarded = headers.get(b"x-forwarded-for")
            if forwarded:
                return f"ip:{forwarded.split(',')[0].strip()}"
        client = scope.get("client")
        return f"ip:{client[0] if client else 'unknown'}"

    async def close(self) -> None:
        await self.limiter.close()
        if self.audit is not None:
            self.audit.close()


def _open_audit(auth: AuthSettings, redis_url: str | None, registry_root: str | None) -> AuditTrail:
    backend = auth.audit.backend
    if backend == "auto":
        backend = "redis" if redis_url is not None else "sqlite"
    if backend == "redis":
        if redis_url is None:
            raise ConfigError("auth.audit.backend: redis needs auth.redis_url (redis://... or env:VAR)")
        return open_audit("redis", redis_url=redis_url)
    path = auth.audit.path or os.environ.get(AUDIT_PATH_ENV)
    if path is None:
        if registry_root is None:
            raise ConfigError(f"auth.audit.path: set it (or ${AUDIT_PATH_ENV}): this app has no registry folder")
        path = str(Path(registry_root) / "audit.sqlite")
    return open_audit("sqlite", path=Path(path).expanduser().resolve())


def _headers(scope: dict[str, Any]) -> dict[bytes, str]:
    """The request's headers by (lower-case) name, read once; the first of a repeated one."""
    out: dict[bytes, str] = {}
    for key, value in scope.get("headers") or ():
        out.setdefault(key, value.decode("latin-1"))
    return out


class Guard:
    """ASGI middleware: the checks of this module, with the ``Security`` in ``app.state.security``."""

    def __init__(self, inner: Any) -> None:
        self.app = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        served = _serve_request_id()  # Serve answers it in X-Request-Id itself
        headers = _headers(scope)
        given = headers.get(b"x-request-id")
        request_id = served or given or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path") or "/"
        if given is not None and not REQUEST_ID.match(given):  # it would go to the audit trail and the logs
            await _answer(send, 400, "X-Request-Id: give 1 to 128 letters, digits or . _ : ; = + / @ - (or none: "
                          "the server makes one)", None if served else uuid.uuid4().hex, path)
            return
        origin = headers.get(b"origin")
        security: Security | None = getattr(scope["app"].state, "security", None) if "app" in scope else None
        if security is None:  # the replica is not set up (yet): closed, not open
            await _answer(send, 503, "this replica is starting: retry in a moment", None if served else request_id,
                          path)
            return
        answer_id = None if served else request_id  # what the guard's own answers carry
        cors = origin if origin is not None and origin in security.cors else None
        extra = _cors_headers(cors)
        if scope["method"] == "OPTIONS" and cors is not None and headers.get(b"access-control-request-method"):
            await _answer(send, 204, None, answer_id, path, extra=[
                *extra, (b"access-control-allow-methods", CORS_METHODS.encode()),
                (b"access-control-allow-headers", CORS_HEADERS.encode()), (b"access-control-max-age", b"600")])
            return

        root = scope.get("root_path") or ""
        relative = path[len(root):] if root and path.startswith(root) else path
        route = route_of(scope["method"], relative or "/", security.app)
        if route.name:
            scope["state"]["route"] = route.name
        declared = headers.get(b"content-length")
        limit = security.settings.max_body_bytes
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _answer(send, 413, f"the request body is over {limit} bytes (auth.max_body_bytes)",
                          answer_id, path, extra=extra)
            return

        identity, refused = ANONYMOUS, None
        try:
            if security.credentials.remote_keys:
                identity = await asyncio.to_thread(security.credentials.check, headers.get(b"authorization"))
            else:
                identity = security.credentials.check(headers.get(b"authorization"))
        except AuthError as err:
            refused = str(err)
        wait = await security.limiter.hit(security.client_key(scope, headers, identity), route.klass)
        if wait is not None:
            n, period = security.limiter.limits[route.klass]
            await _answer(send, 429, f"rate limit of {n} {route.klass} requests per {period:g} s reached; retry "
                          f"in {math.ceil(wait)} s", answer_id, path,
                          extra=[*extra, (b"retry-after", str(max(1, math.ceil(wait))).encode())])
            return
        status, detail = _authorize(route, identity, refused, security)
        if status is not None:
            headers = list(extra)
            if status == 401:
                headers.append((b"www-authenticate", b'Bearer realm="titan-ray", error="invalid_token"'
                                if refused else b'Bearer realm="titan-ray"'))
            elif status == 403 and route.scope is not None:
                headers.append((b"www-authenticate", b'Bearer realm="titan-ray", error="insufficient_scope"'))
            if route.audited and refused is None:
                await self._audit(security, scope, route, identity, request_id, status, detail)
            await _answer(send, status, detail, answer_id, path, extra=headers)
            return
        scope["state"]["identity"] = identity

        received = 0

        async def receiving() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def sending(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if route.audited:
                    await self._audit(security, scope, route, identity, request_id, message["status"], None)
                message = {**message, "headers": [*message.get("headers", []),
                                                  *_security_headers(path, None if served else request_id), *extra]}
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        except BodyTooLarge as err:
            if started:
                raise
            await _answer(send, 413, err.detail, answer_id, path, extra=extra)

    async def _audit(self, security: Security, scope: dict, route: Route, identity: Identity, request_id: str,
                     status: int, detail: str | None) -> None:
        if security.audit is None:
            return
        change = scope["state"].get("audit") or {}
        client = scope.get("client")
        entry = {"identity": identity.subject, "auth": identity.auth,
                 "method": scope["method"], "route": route.name, "path": scope.get("path"), "status": status,
                 "request_id": request_id, "client": client[0] if client else None,
                 "target": change.get("target"), "before": change.get("before"), "after": change.get("after"),
                 "detail": detail if detail is not None else change.get("detail")}
        try:
            await asyncio.to_thread(security.audit.append, entry)
        except Exception as err:  # noqa: BLE001 - the change is made; losing its record is loud, not a 500
            log.error("audit trail: could not record %s %s (request %s): %s", scope["method"], route.name,
                      request_id, type(err).__name__)


def _authorize(route: Route, identity: Identity, refused: str | None, security: Security
               ) -> tuple[int | None, str | None]:
    """(status, detail) of a refusal, or (None, None): the request goes on."""
    needed = route.scope
    if needed == READS:
        needed = "read" if security.settings.require_auth_for_reads else None
    if refused is not None and route.klass != "open":
        return 401, f"invalid bearer token: {refused}"
    if needed is None:
        return None, None
    if not security.credentials.configured and route.klass == "mutate":
        if identity is ANONYMOUS:
            return 401, "this route changes state: send Authorization: Bearer <token>"
        return 403, (f"this server accepts no credentials: set ${security.credentials.token_env} or "
                     f"${security.credentials.secret_env} in the environment of the Ray nodes")
    if identity is ANONYMOUS:
        what = "changes state" if route.klass == "mutate" else f"needs the {needed!r} scope"
        return 401, f"this route {what}: send Authorization: Bearer <token>"
    if not identity.holds(needed):
        return 403, (f"the token of {identity.subject!r} holds the scopes {sorted(identity.scopes)}; this route "
                     f"needs {needed!r}")
    return None, None


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    if origin is None:
        return []
    return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
            (b"access-control-expose-headers", b"X-Request-Id, Retry-After")]


def _security_headers(path: str, request_id: str | None) -> list[tuple[bytes, bytes]]:
    """The headers of every answer; ``request_id`` None where Serve answers it."""
    headers = [*SECURITY_HEADERS, *([(b"x-request-id", request_id.encode())] if request_id else [])]
    if path.startswith(DOCS):
        return headers
    if path.startswith("/v1/"):
        return [*headers, (b"content-security-policy", API_CSP), (b"cache-control", b"no-store")]
    return [*headers, (b"content-security-policy", DASHBOARD_CSP)]


async def _answer(send: Any, status: int, detail: str | None, request_id: str | None, path: str,
                  extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = b"" if detail is None else json.dumps({"detail": detail}).encode()
    headers = [*_security_headers(path, request_id), *extra]
    if detail is not None:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def mint_token(secret: str, subject: str, scopes: list[str], ttl_s: float, *, issuer: str | None = None,
               audience: str | None = None, now: float | None = None) -> str:
    """An HS256 JWT for ``subject`` with ``scopes`` (each one of SCOPES), valid ``ttl_s`` seconds from now."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes {unknown or scopes}: choose from {list(SCOPES)}")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret is {len(secret.encode())} bytes; HS256 needs at least {MIN_SECRET_BYTES} "
                         "(make one with `openssl rand -hex 32`)")
    if not 0 < ttl_s <= 366 * 86400:
        raise ValueError(f"ttl {ttl_s:g} s: give more than 0 and at most a year")
    now = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": subject, "scope": " ".join(dict.fromkeys(scopes)), "iat": int(now),
                              "nbf": int(now), "exp": int(now + ttl_s), "jti": uuid.uuid4().hex}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
