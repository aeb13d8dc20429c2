"""The HTTP API's security (titan_ray/serve/security.py) on real parts: real JWTs and keys (HS256, RS256,
ES256), a JWKS in a file and over real HTTP, the session's redis-server for shared rate limits, a SQLite
audit trail, and the Guard middleware in a FastAPI app served by uvicorn on loopback."""

# No `from __future__ import annotations`: FastAPI must see the test app's handler types.

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import re
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Request
from jwks import serve_jwks
from pydantic import BaseModel, ValidationError

from titan_ray.config import ConfigError
from titan_ray.net import free_port
from titan_ray.serve.security import (
    ANONYMOUS,
    READS,
    ROUTES,
    AuthError,
    Credentials,
    RateLimiter,
    Security,
    granted,
    mint_token,
    route_of,
)
from titan_ray.serve.settings import AuthSettings, RateLimits, check_deploy_config, parse_rate


def run_async(coro):
    """``asyncio.run(coro)`` in a thread of its own: in a whole test session, Playwright's sync API (the
    browser tests) keeps an event loop running in the main thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()

SECRET = secrets.token_hex(32)  # this module's HS256 secret (64 bytes)
STATIC = f"static-{secrets.token_hex(16)}"  # this module's static admin token
ALL = frozenset({"read", "trade", "admin"})


@pytest.fixture(autouse=True)
def env(monkeypatch):
    """This module's secrets in the environment (not the session's), and no setting from outside."""
    monkeypatch.setenv("TITAN_RAY_API_TOKEN", STATIC)
    monkeypatch.setenv("TITAN_RAY_JWT_SECRET", SECRET)
    for var in ("TITAN_RAY_JWKS_URL", "TITAN_RAY_RATE_LIMIT", "TITAN_RAY_AUDIT_PATH"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_made(header: dict, claims: dict, signature: bytes = b"") -> str:
    """A JWT put together by hand (for the tokens PyJWT refuses to make)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(signature)


def claims(sub: str = "alice", ttl: float = 600, **extra) -> dict:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + ttl, "scope": "read", **extra}


def hs(payload: dict, secret: str = SECRET, headers: dict | None = None) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers)


def refused(creds: Credentials, authorization: str) -> str:
    """The AuthError message for ``authorization``; it never holds the token or a secret."""
    with pytest.raises(AuthError) as err:
        creds.check(authorization)
    message = str(err.value)
    token = authorization.partition(" ")[2].strip()
    shown = [SECRET, STATIC, token, *(part for part in token.split(".") if len(part) >= 16)]
    for secret in shown:
        if len(secret) >= 8:
            assert secret not in message, (message, secret)
    assert message
    return message


def bearer(token: str) -> str:
    return f"Bearer {token}"


# --- credentials: the static token and HS256 -----------------------------------------------------


def test_no_header_is_anonymous_and_the_static_token_is_an_admin():
    creds = Credentials(AuthSettings())
    assert creds.check(None) is ANONYMOUS and ANONYMOUS.scopes == frozenset()
    who = creds.check(bearer(STATIC))
    assert (who.subject, who.auth, who.scopes) == ("api-token", "api-token", ALL)
    assert who.holds("admin") and who.holds("trade") and who.holds("read")
    assert creds.check(f"bearer   {STATIC}  ").subject == "api-token"  # the scheme is case-insensitive


def test_the_static_token_comes_from_the_named_variable(env):
    env.setenv("MY_ADMIN_TOKEN", "other-" + "x" * 20)
    creds = Credentials(AuthSettings(token_env="MY_ADMIN_TOKEN"))
    assert creds.check(bearer("other-" + "x" * 20)).subject == "api-token"
    assert "neither" in refused(creds, bearer(STATIC))  # the default variable is not read any more


@pytest.mark.parametrize("authorization", ["Basic x", "Basic " + b64(b"user:pass"), "Bearer ", "Bearer", "",
                                           STATIC, "Token " + STATIC])
def test_other_schemes_and_empty_bearers_are_refused(authorization):
    assert "Bearer <token>" in refused(Credentials(AuthSettings()), authorization)


@pytest.mark.parametrize("token", ["not-a-jwt-" + "y" * 30, STATIC + "x", "a.b", "a.b.c.d", "x.y.z",
                                   b64(b"{") + "." + b64(b"{}") + "."])
def test_a_token_that_is_no_jwt_is_refused(token):
    refused(Credentials(AuthSettings()), bearer(token))


def test_a_minted_token_proves_its_subject_and_implied_scopes():
    creds = Credentials(AuthSettings())
    for scopes, held in ((["read"], {"read"}), (["trade"], {"trade", "read"}), (["admin"], ALL),
                         (["read", "trade"], {"read", "trade"})):
        token = mint_token(SECRET, "alice", scopes, 600)
        who = creds.check(bearer(token))
        assert (who.subject, who.auth, who.scopes) == ("alice", "jwt", frozenset(held))
        assert who.expires == jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
        assert who.describe()["scopes"] == sorted(held)


def test_a_scp_list_claim_and_unknown_scope_names():
    creds = Credentials(AuthSettings())
    scp = {k: v for k, v in claims().items() if k != "scope"} | {"scp": ["trade", "root"]}
    assert creds.check(bearer(hs(scp))).scopes == {"trade", "read"}
    assert creds.check(bearer(hs(claims(scope="superuser")))).scopes == frozenset()
    assert granted("read admin") == ALL and granted(["read"]) == {"read"} and granted(7) == frozenset()


def test_an_expired_token_is_refused_beyond_the_leeway_only():
    creds = Credentials(AuthSettings(leeway_s=30))
    old = mint_token(SECRET, "alice", ["read"], 60, now=time.time() - 200)  # expired 140 s ago
    assert "expired" in refused(creds, bearer(old))
    recent = mint_token(SECRET, "alice", ["read"], 60, now=time.time() - 70)  # expired 10 s ago: in the leeway
    assert creds.check(bearer(recent)).subject == "alice"
    assert "expired" in refused(Credentials(AuthSettings(leeway_s=0)), bearer(recent))


def test_a_token_not_valid_yet_is_refused():
    creds = Credentials(AuthSettings())
    early = hs(claims(nbf=int(time.time()) + 300, iat=int(time.time())))
    assert "not valid yet" in refused(creds, bearer(early))
    assert creds.check(bearer(hs(claims(nbf=int(time.time()) + 10)))).subject == "alice"  # in the leeway


def test_a_token_signed_with_another_secret_is_refused():
    forged = mint_token(secrets.token_hex(32), "mallory", ["admin"], 600)
    assert "signature" in refused(Credentials(AuthSettings()), bearer(forged))
    # and a token whose signature was cut off
    good = mint_token(SECRET, "alice", ["admin"], 600)
    refused(Credentials(AuthSettings()), bearer(good.rsplit(".", 1)[0] + "."))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(alg):
    token = hand_made({"alg": alg, "typ": "JWT"}, claims(scope="admin"))
    assert token.endswith(".")
    message = refused(Credentials(AuthSettings()), bearer(token))
    assert "not accepted" in message and alg in message


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_a_token_without_sub_or_exp_is_refused(missing):
    payload = claims()
    del payload[missing]
    assert repr(missing) in refused(Credentials(AuthSettings()), bearer(hs(payload)))


@pytest.mark.parametrize("sub", ["", "   ", "x" * 201])
def test_a_subject_must_be_a_short_non_empty_string(sub):
    assert "sub" in refused(Credentials(AuthSettings()), bearer(hs(claims(sub=sub))))


def test_issuer_and_audience_when_configured():
    creds = Credentials(AuthSettings(issuer="https://id.example", audience="titan-ray"))

    def token(**over) -> str:
        kw = {"issuer": "https://id.example", "audience": "titan-ray", **over}
        return mint_token(SECRET, "alice", ["trade"], 600, **kw)

    assert creds.check(bearer(token())).scopes == {"trade", "read"}
    assert "issuer" in refused(creds, bearer(token(issuer="https://evil.example")))
    assert "'iss'" in refused(creds, bearer(token(issuer=None)))
    assert "audience" in refused(creds, bearer(token(audience="another-api")))
    assert "'aud'" in refused(creds, bearer(token(audience=None)))
    # a list audience naming this server is accepted
    assert creds.check(bearer(hs(claims(iss="https://id.example", aud=["other", "titan-ray"])))).subject == "alice"
    # and without the settings, iss / aud are not checked
    assert Credentials(AuthSettings()).check(bearer(token(issuer="any", audience="any"))).subject == "alice"


def test_a_short_secret_is_a_config_error_naming_the_variable(env):
    env.setenv("TITAN_RAY_JWT_SECRET", "tooShortSecret123")
    with pytest.raises(ConfigError) as err:
        Credentials(AuthSettings())
    assert "$TITAN_RAY_JWT_SECRET" in str(err.value) and "tooShortSecret123" not in str(err.value)
    env.setenv("MY_JWT_SECRET", "s" * 31)
    with pytest.raises(ConfigError, match=r"\$MY_JWT_SECRET is 31 bytes"):
        Credentials(AuthSettings(jwt_secret_env="MY_JWT_SECRET"))
    env.setenv("MY_JWT_SECRET", "s" * 32)
    assert Credentials(AuthSettings(jwt_secret_env="MY_JWT_SECRET")).configured


def test_repr_shows_no_secret():
    creds = Credentials(AuthSettings())
    text = repr(creds) + str(creds)
    assert SECRET not in text and STATIC not in text
    assert "static=True" in text and "hs256=True" in text and "jwks=False" in text


def test_nothing_configured(env):
    env.delenv("TITAN_RAY_API_TOKEN")
    env.delenv("TITAN_RAY_JWT_SECRET")
    creds = Credentials(AuthSettings())
    assert not creds.configured
    assert "none configured" in refused(creds, bearer(mint_token(SECRET, "alice", ["admin"], 600)))


# --- credentials: RS256 / ES256 by a JWKS --------------------------------------------------------


@pytest.fixture(scope="module")
def keys():
    """An RSA key (kid rsa-1), an EC P-256 key (kid ec-1), and the JWKS of their public halves."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    jwks = {"keys": [{**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"},
                     {**ec_jwk, "kid": "ec-1", "alg": "ES256", "use": "sig"}]}
    return {"rsa": rsa_key, "ec": ec_key, "jwks": jwks}


def signed(keys: dict, kind: str, sub: str = "carol", kid: str | None = None, **extra) -> str:
    alg, default_kid = {"rsa": ("RS256", "rsa-1"), "ec": ("ES256", "ec-1")}[kind]
    return jwt.encode(claims(sub=sub, scope="trade", **extra), keys[kind], algorithm=alg,
                      headers={"kid": kid or default_kid})


@pytest.fixture(params=["file", "file-url", "http", "env"])
def jwks_creds(request, keys, tmp_path, env):
    """Credentials verifying by the JWKS of ``keys``: from a file, a file:// URL, over HTTP (auth.jwks_url)
    or over HTTP named by $TITAN_RAY_JWKS_URL. No HS256 secret is set."""
    env.delenv("TITAN_RAY_JWT_SECRET")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.delenv(var, raising=False)
    if request.param.startswith("file"):
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(keys["jwks"]))
        url = str(path) if request.param == "file" else f"file://{path}"
        creds = Credentials(AuthSettings(jwks_url=url))
        assert not creds.remote_keys
        yield creds
        return
    with serve_jwks(keys["jwks"]) as (url, _):
        if request.param == "env":
            env.setenv("TITAN_RAY_JWKS_URL", url)
            creds = Credentials(AuthSettings())
        else:
            creds = Credentials(AuthSettings(jwks_url=url))
        assert creds.remote_keys and creds.configured
        yield creds


def test_rs256_and_es256_tokens_verify_by_the_jwks(jwks_creds, keys):
    for kind in ("rsa", "ec"):
        who = jwks_creds.check(bearer(signed(keys, kind, sub=f"{kind}-user")))
        assert (who.subject, who.auth, who.scopes) == (f"{kind}-user", "jwt", frozenset({"trade", "read"}))
    assert "expired" in refused(jwks_creds, bearer(signed(keys, "ec", ttl=-300)))


def test_the_jwks_is_fetched_over_http_once(keys, env):
    env.delenv("TITAN_RAY_JWT_SECRET")
    with serve_jwks(keys["jwks"]) as (url, asked):
        creds = Credentials(AuthSettings(jwks_url=url))
        assert asked == [], "fetched when a token needs it"
        for kind in ("rsa", "ec", "rsa"):
            assert creds.check(bearer(signed(keys, kind))).subject == "carol"
        assert asked == ["/.well-known/jwks.json"], "the keys are cached"
    with serve_jwks(keys["jwks"]) as (url, asked):
        wrong = Credentials(AuthSettings(jwks_url=url.replace("jwks.json", "nothing.json")))
        assert "rsa-1" in refused(wrong, bearer(signed(keys, "rsa")))
        assert asked and set(asked) == {"/.well-known/nothing.json"}


def test_a_jwks_token_signed_by_another_key_is_refused(jwks_creds, keys):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(scope="admin"), other, algorithm="RS256", headers={"kid": "rsa-1"})
    assert "signature" in refused(jwks_creds, bearer(forged))
    other_ec = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims(scope="admin"), other_ec, algorithm="ES256", headers={"kid": "ec-1"})
    assert "signature" in refused(jwks_creds, bearer(forged))


def test_a_kid_not_in_the_jwks_is_refused(jwks_creds, keys):
    assert "'nobody'" in refused(jwks_creds, bearer(signed(keys, "rsa", kid="nobody")))
    no_kid = jwt.encode(claims(), keys["ec"], algorithm="ES256")
    assert "None" in refused(jwks_creds, bearer(no_kid)), "two keys: a token must name its key"


def test_a_token_without_kid_uses_the_only_key_of_a_file(keys, tmp_path, env):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"keys": [keys["jwks"]["keys"][1]]}))  # the EC key only
    creds = Credentials(AuthSettings(jwks_url=str(path)))
    assert creds.check(bearer(jwt.encode(claims(sub="dave"), keys["ec"], algorithm="ES256"))).subject == "dave"
    assert "RS256" in refused(creds, bearer(jwt.encode(claims(), keys["rsa"], algorithm="RS256")))


def test_a_key_verifies_its_own_algorithm_only(jwks_creds, keys):
    # an RS256 signature under a header that claims ES256 with the RSA key's kid
    rs = signed(keys, "rsa")
    _, body, sig = rs.split(".")
    lying = b64(json.dumps({"alg": "ES256", "kid": "rsa-1", "typ": "JWT"}).encode()) + "." + body + "." + sig
    assert "RS256" in refused(jwks_creds, bearer(lying))
    # and an ES256 signature under RS256 with the EC key's kid
    es = signed(keys, "ec")
    _, body, sig = es.split(".")
    lying = b64(json.dumps({"alg": "RS256", "kid": "ec-1", "typ": "JWT"}).encode()) + "." + body + "." + sig
    assert "ES256" in refused(jwks_creds, bearer(lying))


def test_no_algorithm_confusion_with_only_a_jwks(jwks_creds, keys):
    """HS256 tokens, even one whose HMAC key is the server's public RSA key, are refused without a secret."""
    public_pem = keys["rsa"].public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims(scope="admin")).encode())
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    message = refused(jwks_creds, bearer(f"{header}.{body}.{b64(mac)}"))
    assert "HS256" in message and "not accepted" in message
    assert "not accepted" in refused(jwks_creds, bearer(mint_token(SECRET, "alice", ["admin"], 600)))
    # the static token still works beside a JWKS
    assert jwks_creds.check(bearer(STATIC)).scopes == ALL


def test_an_asymmetric_token_without_a_jwks_is_refused(keys):
    assert "RS256" in refused(Credentials(AuthSettings()), bearer(signed(keys, "rsa")))


def test_an_unreadable_jwks_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="auth.jwks_url"):
        Credentials(AuthSettings(jwks_url=str(tmp_path / "missing.json")))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="auth.jwks_url"):
        Credentials(AuthSettings(jwks_url=str(tmp_path / "bad.json")))


# --- mint_token ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "text"), [
    ((SECRET, "a", ["root"], 60), "root"),
    ((SECRET, "a", ["read", "sudo"], 60), "sudo"),
    ((SECRET, "a", [], 60), "choose from"),
    (("s" * 31, "a", ["read"], 60), "31 bytes"),
    ((SECRET, "a", ["read"], 0), "ttl"),
    ((SECRET, "a", ["read"], -5), "ttl"),
    ((SECRET, "a", ["read"], 367 * 86400), "ttl"),
])
def test_mint_token_refuses_bad_arguments(args, text):
    with pytest.raises(ValueError, match=text):
        mint_token(*args)


def test_mint_token_claims():
    now = 1_700_000_000.0
    one = mint_token(SECRET, "bob", ["trade", "read", "trade"], 900, issuer="iss", audience="aud", now=now)
    two = mint_token(SECRET, "bob", ["trade"], 900, now=now)
    got = jwt.decode(one, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_aud": False})
    assert jwt.get_unverified_header(one)["alg"] == "HS256"
    assert got["sub"] == "bob" and got["scope"] == "trade read" and got["iss"] == "iss" and got["aud"] == "aud"
    assert got["iat"] == got["nbf"] == int(now) and got["exp"] - got["iat"] == 900
    other = jwt.decode(two, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert re.fullmatch(r"[0-9a-f]{32}", got["jti"]) and got["jti"] != other["jti"]
    assert "iss" not in other and "aud" not in other


# --- route classes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "app", "klass", "scope"), [
    ("GET", "/v1/leaderboard", "main", "read", READS),
    ("GET", "/v1/trades/x", "main", "read", READS),
    ("GET", "/v1/events", "main", "read", READS),
    ("GET", "/v1/experiments", "main", "read", READS),
    ("GET", "/v1/registry/x", "main", "read", READS),
    ("HEAD", "/v1/leaderboard", "main", "read", READS),
    ("PUT", "/v1/experiments/x/weights", "main", "mutate", "admin"),
    ("POST", "/v1/models/x/kill-switch", "main", "mutate", "trade"),
    ("POST", "/v1/registry/x/promote", "main", "mutate", "admin"),
    ("POST", "/v1/registry/x/rollback", "main", "mutate", "admin"),
    ("GET", "/v1/audit", "main", "read", "admin"),
    ("GET", "/v1/whoami", "main", "read", None),
    ("POST", "/v1/predict/x", "main", "predict", READS),
    ("POST", "/v1/experiments/x/predict", "main", "predict", READS),
    ("POST", "/", "model", "predict", READS),
    ("POST", "/", "experiment", "predict", READS),
    ("POST", "/anything", "model", "predict", READS),
    ("DELETE", "/v1/anything", "main", "mutate", "admin"),
    ("PATCH", "/v1/experiments/x/weights", "main", "mutate", "admin"),
    ("POST", "/v1/leaderboard", "main", "mutate", "admin"),
    ("PUT", "/v1", "main", "mutate", "admin"),
    ("GET", "/", "main", "open", None),
    ("GET", "/healthz", "main", "open", None),
    ("GET", "/metrics", "main", "open", None),
    ("GET", "/static/app.js", "main", "open", None),
    ("GET", "/openapi.json", "main", "open", None),
    ("GET", "/healthz", "model", "open", None),
    # a trailing slash is the same route
    ("PUT", "/v1/experiments/x/weights/", "main", "mutate", "admin"),
    ("POST", "/v1/registry/x/promote/", "main", "mutate", "admin"),
    ("GET", "/v1/leaderboard/", "main", "read", READS),
    ("GET", "/v1/audit/", "main", "read", "admin"),
])
def test_route_of(method, path, app, klass, scope):
    route = route_of(method, path, app)
    assert (route.klass, route.scope) == (klass, scope)
    assert route.audited == (klass == "mutate")


def test_route_names_are_templates():
    assert route_of("PUT", "/v1/experiments/ab/weights").name == "/v1/experiments/{name}/weights"
    assert route_of("POST", "/v1/models/m/kill-switch/").name == "/v1/models/{model}/kill-switch"
    assert route_of("POST", "/", "model").name == "/v1/predict/{model}"
    assert route_of("GET", "/healthz").name == ""
    # a segment never spans a slash: a deeper path falls to the closed catch-all of /v1
    assert route_of("PUT", "/v1/experiments/a/b/weights").name == "/v1"
    assert ROUTES[-1].klass == "open" and ROUTES[-2].scope == "admin"


# --- rate limits ---------------------------------------------------------------------------------


def test_the_in_process_limit_allows_a_burst_then_waits():
    async def run() -> None:
        limiter = RateLimiter({"read": (5, 3600.0), "mutate": (5, 3600.0)})
        assert not limiter.shared
        assert [await limiter.hit("alice", "read") for _ in range(5)] == [None] * 5
        wait = await limiter.hit("alice", "read")
        assert wait is not None and 715 < wait <= 720
        assert await limiter.hit("bob", "read") is None  # another identity
        assert await limiter.hit("alice", "mutate") is None  # another class
        assert await limiter.hit("alice", "predict") is None  # a class without a limit
        assert await limiter.hit("alice", "read") is not None  # refusals did not reset it
        await limiter.close()

    run_async(run())


def test_the_in_process_limit_refills():
    async def run() -> None:
        limiter = RateLimiter({"read": (2, 1.0)})
        assert await limiter.hit("alice", "read") is None and await limiter.hit("alice", "read") is None
        wait = await limiter.hit("alice", "read")
        assert wait is not None and 0 < wait <= 0.5
        await asyncio.sleep(wait + 0.02)
        assert await limiter.hit("alice", "read") is None
        assert await limiter.hit("alice", "read") is not None
        await limiter.close()

    run_async(run())


def test_replicas_share_the_limit_in_redis(redis_url):
    who = f"alice-{uuid.uuid4().hex}"

    async def run() -> list:
        one, two = RateLimiter({"read": (5, 3600.0)}, redis_url), RateLimiter({"read": (5, 3600.0)}, redis_url)
        try:
            assert one.shared and two.shared
            answers = [await (one if i % 2 == 0 else two).hit(who, "read") for i in range(8)]
            other = await two.hit(f"bob-{uuid.uuid4().hex}", "read")
            assert other is None, "another identity has its own bucket"
            return answers
        finally:
            await one.close()
            await two.close()

    answers = run_async(run())
    assert answers[:5] == [None] * 5
    assert all(w is not None and 700 < w <= 720 for w in answers[5:]), answers  # refused on either replica


def test_redis_limits_refill(redis_url):
    who = f"carol-{uuid.uuid4().hex}"

    async def run() -> None:
        one, two = RateLimiter({"read": (2, 1.0)}, redis_url), RateLimiter({"read": (2, 1.0)}, redis_url)
        try:
            assert await one.hit(who, "read") is None and await two.hit(who, "read") is None
            wait = await one.hit(who, "read")
            assert wait is not None and 0 < wait <= 0.5
            await asyncio.sleep(wait + 0.02)
            assert await two.hit(who, "read") is None
        finally:
            await one.close()
            await two.close()

    run_async(run())


def test_a_dead_redis_falls_back_to_the_replicas_limit():
    async def run() -> list:
        limiter = RateLimiter({"read": (5, 3600.0)}, f"redis://127.0.0.1:{free_port()}/0")
        try:
            assert limiter.shared
            answers = []
            for _ in range(6):
                start = time.monotonic()
                answers.append(await limiter.hit("alice", "read"))
                assert time.monotonic() - start < 2.0
            return answers
        finally:
            await limiter.close()

    answers = run_async(asyncio.wait_for(run(), timeout=15))
    assert answers[:5] == [None] * 5 and answers[5] is not None and answers[5] > 700


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rate"), [
    ("600/minute", (600, 60.0)), ("1/second", (1, 1.0)), (" 3 / hour ", (3, 3600.0)), ("2/day", (2, 86400.0)),
])
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0/minute", "5/week", "five/minute", "5", "-1/second", "1/minutes", "",
                                  "5/minute/x", "1.5/second"])
def test_parse_rate_refuses(text):
    with pytest.raises(ValueError, match="is not a rate"):
        parse_rate(text)


def test_rate_limits_from_the_environment(env):
    limits = RateLimits(read="10/minute", predict="20/minute", mutate="30/minute")
    assert limits.resolved() == {"read": (10, 60.0), "predict": (20, 60.0), "mutate": (30, 60.0)}
    env.setenv("TITAN_RAY_RATE_LIMIT", "10/second")
    assert limits.resolved() == dict.fromkeys(("read", "predict", "mutate"), (10, 1.0))
    env.setenv("TITAN_RAY_RATE_LIMIT", "read=3/minute, mutate=1/hour")
    assert limits.resolved() == {"read": (3, 60.0), "predict": (20, 60.0), "mutate": (1, 3600.0)}
    env.setenv("TITAN_RAY_RATE_LIMIT", "write=1/minute")
    with pytest.raises(ConfigError) as err:
        limits.resolved()
    assert "TITAN_RAY_RATE_LIMIT" in str(err.value) and "'write'" in str(err.value)
    assert all(k in str(err.value) for k in ("read", "predict", "mutate"))
    env.setenv("TITAN_RAY_RATE_LIMIT", "read=lots")
    with pytest.raises(ConfigError, match="TITAN_RAY_RATE_LIMIT"):
        limits.resolved()
    assert limits.resolved(env="mutate=2/day")["mutate"] == (2, 86400.0)  # an explicit value wins


def test_a_bad_single_rate_in_the_environment_names_the_variable(env):
    env.setenv("TITAN_RAY_RATE_LIMIT", "often")
    with pytest.raises(ValueError) as err:
        RateLimits().resolved()
    assert isinstance(err.value, ConfigError) and "TITAN_RAY_RATE_LIMIT" in str(err.value), repr(err.value)


def test_rate_limits_and_auth_settings_are_strict():
    with pytest.raises(ValidationError, match="is not a rate"):
        RateLimits(read="many")
    with pytest.raises(ValidationError, match="writes"):
        RateLimits(writes="1/minute")
    with pytest.raises(ValidationError, match="jwt_secret"):
        AuthSettings.model_validate({"jwt_secret": SECRET})
    with pytest.raises(ValidationError, match="max_body_bytes"):
        AuthSettings(max_body_bytes=10)
    assert AuthSettings().rate_limits.resolved()["mutate"] == (60, 60.0)


# --- check_deploy_config -------------------------------------------------------------------------


def deploy(main_auth: dict, model_auth: dict | None) -> dict:
    model_args = {"name": "m", "kind": "buy_and_hold"}
    if model_auth is not None:
        model_args["auth"] = model_auth
    return {"applications": [
        {"name": "titan-ray", "import_path": "titan_ray.serve.app:build_app", "route_prefix": "/",
         "args": {"models": ["m"], "arena": {"start": False}, "auth": main_auth},
         "deployments": [{"name": "Ingress", "ray_actor_options": {"num_cpus": 0.5}}]},
        {"name": "model-m", "import_path": "titan_ray.serve.app:build_model_app", "route_prefix": "/v1/predict/m",
         "args": model_args, "deployments": [{"name": "model-m"}]},
    ]}


AUTH = {"require_auth_for_reads": True, "rate_limits": {"read": "100/minute"}, "cors_origins": ["https://ok.example"]}


def test_the_same_auth_in_every_app_passes():
    checked = check_deploy_config(deploy(AUTH, dict(AUTH)), source="test.yaml")
    assert checked["main"].auth == checked["models"]["m"].auth and checked["main"].auth.require_auth_for_reads


def test_a_yaml_anchor_gives_every_app_the_same_auth():
    text = """
applications:
  - name: titan-ray
    import_path: titan_ray.serve.app:build_app
    route_prefix: /
    args:
      models: [m]
      arena: {start: false}
      auth: &auth {require_auth_for_reads: true, max_body_bytes: 4096}
  - name: model-m
    import_path: titan_ray.serve.app:build_model_app
    route_prefix: /v1/predict/m
    args: {name: m, kind: buy_and_hold, auth: *auth}
"""
    checked = check_deploy_config(yaml.safe_load(text))
    assert checked["models"]["m"].auth.max_body_bytes == 4096


@pytest.mark.parametrize(("main_auth", "model_auth"), [
    (AUTH, {**AUTH, "require_auth_for_reads": False}),
    (AUTH, None),  # the model app left it out: the defaults, not the main app's
    ({}, {"rate_limits": {"mutate": "1/minute"}}),
])
def test_another_auth_in_an_app_is_refused(main_auth, model_auth):
    with pytest.raises(ConfigError) as err:
        check_deploy_config(deploy(main_auth, model_auth), source="test.yaml")
    text = str(err.value)
    assert text.startswith("test.yaml") and "'m'" in text and "YAML anchor" in text and "&auth" in text


@pytest.mark.parametrize(("where", "place"), [
    ("runtime_env.env_vars", lambda raw: raw.setdefault("runtime_env", {})),
    ("applications[0].runtime_env.env_vars", lambda raw: raw["applications"][0].setdefault("runtime_env", {})),
    ("applications[1].runtime_env.env_vars", lambda raw: raw["applications"][1].setdefault("runtime_env", {})),
    ("applications[0].deployments[0].ray_actor_options.runtime_env.env_vars",
     lambda raw: raw["applications"][0]["deployments"][0]["ray_actor_options"].setdefault("runtime_env", {})),
])
@pytest.mark.parametrize("var", ["TITAN_RAY_JWT_SECRET", "TITAN_RAY_API_TOKEN"])
def test_a_secret_in_a_runtime_env_is_refused(where, place, var):
    raw = deploy(AUTH, AUTH)
    place(raw)["env_vars"] = {"OMP_NUM_THREADS": "1", var: "a-secret-value"}
    with pytest.raises(ConfigError) as err:
        check_deploy_config(raw, source="test.yaml")
    text = str(err.value)
    assert f"test.yaml: {where} sets ['{var}']" in text and "a-secret-value" not in text


def test_a_renamed_secret_variable_is_a_secret_too():
    auth = {"jwt_secret_env": "MY_JWT_KEY"}
    raw = deploy(auth, auth)
    raw["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": "1"}}
    check_deploy_config(raw)  # other variables are fine
    raw["runtime_env"]["env_vars"]["MY_JWT_KEY"] = "x" * 40
    with pytest.raises(ConfigError, match=r"runtime_env.env_vars sets \['MY_JWT_KEY'\]"):
        check_deploy_config(raw)


# --- the Guard, in a FastAPI app on uvicorn ------------------------------------------------------


class WeightsUpdate(BaseModel):
    weights: dict[str, float]


BEFORE = {"weights": {"control": 0.5, "treatment": 0.5}}


def guarded_app() -> FastAPI:
    from titan_ray.serve.http import install

    app = install(FastAPI())
    app.state.metrics = None

    @app.get("/v1/leaderboard")
    async def leaderboard() -> dict:
        return {"rows": [1, 2]}

    @app.put("/v1/experiments/{name}/weights")
    async def set_weights(name: str, body: WeightsUpdate, request: Request) -> dict:
        request.state.audit = {"target": {"experiment": name}, "before": BEFORE, "after": {"weights": body.weights}}
        return {"name": name, "weights": body.weights}

    @app.post("/v1/registry/{name}/promote")
    async def promote(name: str, request: Request) -> dict:
        return {"name": name, "bytes": len(await request.body())}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    return app


class Server:
    def __init__(self, app: FastAPI, port: int) -> None:
        self.app, self.port = app, port

    def call(self, method: str, path: str, token: str | None = None, headers: dict | None = None,
             body=None) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server():
    import uvicorn

    app = guarded_app()
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    yield Server(app, port)
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def secure(server, tmp_path):
    """secure(**auth) -> the Security (AuthSettings(**auth)) the served app enforces in this test."""
    made: list[Security] = []

    def _secure(**auth) -> Security:
        security = Security(AuthSettings(**auth), registry_root=str(tmp_path))
        server.app.state.security = security
        made.append(security)
        return security

    yield _secure
    if hasattr(server.app.state, "security"):
        del server.app.state.security
    for security in made:
        run_async(security.close())


def token(*scopes: str, sub: str = "alice") -> str:
    return mint_token(SECRET, sub, list(scopes), 600)


def test_no_security_set_is_503(server):
    status, headers, body = server.call("GET", "/v1/leaderboard")
    assert status == 503 and "starting" in json.loads(body)["detail"]
    assert headers["x-content-type-options"] == "nosniff"
    status, _, _ = server.call("GET", "/healthz")
    assert status == 503, "closed, not open, until the replica is set up"


def test_reads_are_open_by_default(server, secure):
    secure()
    status, _, body = server.call("GET", "/v1/leaderboard")
    assert status == 200 and json.loads(body) == {"rows": [1, 2]}
    assert server.call("GET", "/healthz")[0] == 200


def test_locked_reads_need_the_read_scope(server, secure):
    secure(require_auth_for_reads=True)
    status, headers, _ = server.call("GET", "/v1/leaderboard")
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="titan-ray"'
    assert server.call("GET", "/v1/leaderboard", token=token("read", sub="reader"))[0] == 200
    assert server.call("GET", "/v1/leaderboard", token=STATIC)[0] == 200
    status, headers, body = server.call("GET", "/v1/leaderboard", token="bad." + "x" * 20 + ".sig")
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    assert "x" * 20 not in body.decode()
    assert server.call("GET", "/healthz")[0] == 200, "open routes stay open"


def test_the_mutating_route_needs_admin_and_is_audited(server, secure):
    security = secure()
    path = "/v1/experiments/ab/weights"
    update = {"weights": {"control": 0.7, "treatment": 0.3}}

    status, headers, _ = server.call("PUT", path, token="not-a-valid-token-at-all", body=update)
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    assert security.audit.entries() == [], "a request with bad credentials is not audited"

    status, headers, _ = server.call("PUT", path, body=update)
    assert status == 401 and "www-authenticate" in headers

    status, headers, body = server.call("PUT", path, token=token("read", sub="reader"), body=update)
    assert status == 403 and 'error="insufficient_scope"' in headers["www-authenticate"]
    assert "'admin'" in json.loads(body)["detail"]
    (denied,) = security.audit.entries(identity="reader")
    assert denied["status"] == 403 and denied["route"] == "/v1/experiments/{name}/weights"
    assert denied["request_id"] == headers["x-request-id"] and denied["before"] is None

    status, headers, body = server.call("PUT", path, token=token("admin", sub="alice"), body=update)
    assert status == 200 and json.loads(body) == {"name": "ab", **update}
    (entry,) = security.audit.entries(identity="alice")
    assert entry["status"] == 200 and entry["route"] == "/v1/experiments/{name}/weights"
    assert entry["path"] == path and entry["method"] == "PUT" and entry["auth"] == "jwt"
    assert entry["target"] == {"experiment": "ab"} and entry["before"] == BEFORE and entry["after"] == update
    assert entry["request_id"] == headers["x-request-id"] and entry["client"] == "127.0.0.1"

    assert server.call("PUT", path, token=STATIC, body=update)[0] == 200
    assert security.audit.entries(identity="api-token")[0]["status"] == 200
    trail = json.dumps(security.audit.entries())
    assert SECRET not in trail and STATIC not in trail
    assert not security.audit.entries(route="/v1/leaderboard")
    server.call("GET", "/v1/leaderboard", token=token("admin"))
    assert len(security.audit.entries(identity="alice")) == 1, "reads are not audited"


def test_a_declared_body_over_the_limit_is_413(server, secure):
    secure(max_body_bytes=1024)
    big = {"weights": {f"arm{i}": 1.0 for i in range(200)}}
    assert len(json.dumps(big)) > 1024
    status, headers, body = server.call("PUT", "/v1/experiments/ab/weights", token=STATIC, body=big)
    assert status == 413 and "max_body_bytes" in json.loads(body)["detail"]
    assert headers["x-frame-options"] == "DENY"
    status, _, _ = server.call("POST", "/v1/registry/x/promote", token=STATIC, body=b"x",
                               headers={"Content-Length": "99999999999"})
    assert status == 413
    assert server.call("POST", "/v1/registry/x/promote", token=STATIC, body=b"x" * 1000)[0] == 200


def test_a_chunked_body_over_the_limit_is_413(server, secure):
    secure(max_body_bytes=1024)
    chunks = [b"x" * 512] * 4
    status, _, body = server.call("POST", "/v1/registry/x/promote", token=STATIC, body=iter(chunks))
    assert status == 413 and "max_body_bytes" in json.loads(body)["detail"]
    status, _, body = server.call("POST", "/v1/registry/x/promote", token=STATIC, body=iter([b"x" * 512]))
    assert status == 200 and json.loads(body)["bytes"] == 512, "a chunked body under the limit is read"


def test_a_chunked_body_over_the_limit_is_413_on_a_route_with_a_body_model(server, secure):
    secure(max_body_bytes=1024)
    body = json.dumps({"weights": {f"arm{i}": 1.0 for i in range(200)}}).encode()
    chunks = [body[i:i + 300] for i in range(0, len(body), 300)]
    status, _, answer = server.call("PUT", "/v1/experiments/ab/weights", token=STATIC, body=iter(chunks),
                                    headers={"Content-Type": "application/json"})
    assert status == 413, (status, answer)


def test_the_guard_verifies_jwks_tokens_off_the_event_loop(server, secure, keys, env):
    env.delenv("TITAN_RAY_JWT_SECRET")
    admin = jwt.encode(claims(sub="erin", scope="admin"), keys["ec"], algorithm="ES256", headers={"kid": "ec-1"})
    reader = jwt.encode(claims(sub="frank"), keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    with serve_jwks(keys["jwks"]) as (url, asked):
        security = secure(jwks_url=url, require_auth_for_reads=True)
        assert security.credentials.remote_keys
        update = {"weights": {"control": 1.0}}
        assert server.call("PUT", "/v1/experiments/ab/weights", token=admin, body=update)[0] == 200
        assert server.call("PUT", "/v1/experiments/ab/weights", token=reader, body=update)[0] == 403
        assert server.call("GET", "/v1/leaderboard", token=reader)[0] == 200
        assert server.call("GET", "/v1/leaderboard", token=token("admin"))[0] == 401, "no HS256 secret here"
        assert asked == ["/.well-known/jwks.json"]
    assert [e["identity"] for e in security.audit.entries()] == ["frank", "erin"]


def test_a_rate_limited_read_is_429_with_retry_after(server, secure):
    secure(rate_limits={"read": "2/hour"})
    assert [server.call("GET", "/v1/leaderboard")[0] for _ in range(2)] == [200, 200]
    status, headers, body = server.call("GET", "/v1/leaderboard")
    assert status == 429 and "rate limit" in json.loads(body)["detail"]
    assert re.fullmatch(r"[0-9]+", headers["retry-after"]) and 1 <= int(headers["retry-after"]) <= 1800
    assert headers["x-content-type-options"] == "nosniff"
    # another identity (a token's subject) has its own bucket; open routes are not limited
    assert server.call("GET", "/v1/leaderboard", token=token("read", sub="someone-else"))[0] == 200
    assert server.call("GET", "/healthz")[0] == 200


def test_security_headers_and_request_ids(server, secure):
    secure()
    status, headers, _ = server.call("GET", "/v1/leaderboard")
    assert status == 200
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert headers["cache-control"] == "no-store"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    _, headers, _ = server.call("GET", "/healthz")
    assert "script-src 'self'" in headers["content-security-policy"]

    assert server.call("GET", "/v1/leaderboard", headers={"X-Request-Id": "abc-1.2:x_Y"})[1]["x-request-id"] == \
        "abc-1.2:x_Y"
    assert server.call("GET", "/v1/leaderboard", headers={"X-Request-Id": "Root=1-5759e988;p=a/b+c@d"})[1][
        "x-request-id"] == "Root=1-5759e988;p=a/b+c@d"  # a tracing system's ids are taken as they are
    for bad in ("a" * 129, "has spaces in it", "a<b>", "é"):  # would reach the audit trail and the logs: refused
        status, headers, body = server.call("GET", "/v1/leaderboard", headers={"X-Request-Id": bad})
        assert status == 400 and "X-Request-Id" in json.loads(body)["detail"]
        assert headers["x-request-id"] != bad and re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    # refusals made by the guard carry them too
    _, headers, _ = server.call("PUT", "/v1/experiments/ab/weights", headers={"X-Request-Id": "req-7"},
                                body={"weights": {}})
    assert headers["x-request-id"] == "req-7" and headers["x-frame-options"] == "DENY"


def test_no_cors_by_default(server, secure):
    secure()
    _, headers, _ = server.call("GET", "/v1/leaderboard", headers={"Origin": "https://ok.example"})
    assert "access-control-allow-origin" not in headers
    status, headers, _ = server.call("OPTIONS", "/v1/leaderboard", headers={
        "Origin": "https://ok.example", "Access-Control-Request-Method": "GET"})
    assert status != 204 and "access-control-allow-origin" not in headers


def test_cors_answers_the_listed_origins_only(server, secure):
    secure(cors_origins=["https://ok.example"])
    preflight = {"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization"}
    status, headers, body = server.call("OPTIONS", "/v1/experiments/ab/weights",
                                        headers={"Origin": "https://ok.example", **preflight})
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == "https://ok.example"
    assert "PUT" in headers["access-control-allow-methods"]
    assert "Authorization" in headers["access-control-allow-headers"]
    status, headers, _ = server.call("OPTIONS", "/v1/experiments/ab/weights",
                                     headers={"Origin": "https://evil.example", **preflight})
    assert status != 204 and "access-control-allow-origin" not in headers
    _, headers, _ = server.call("GET", "/v1/leaderboard", headers={"Origin": "https://ok.example"})
    assert headers["access-control-allow-origin"] == "https://ok.example" and headers["vary"] == "Origin"
    _, headers, _ = server.call("GET", "/v1/leaderboard", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers
