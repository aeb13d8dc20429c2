"""The HTTP API for more than one person, over real HTTP through Serve: credentials and scopes, rate
limits shared by two ingress replicas through a real redis-server, the audit trail, and no secret in
any log or result of the session.

The session's Serve apps (tests/serve_app.py) leave reads open; ``locked_app`` adds a second main app
at /locked that locks them, checks ``iss``/``aud``, accepts RS256/ES256 tokens of a JWKS served on
loopback (tests/jwks.py) beside HS256 ones, and runs two ingress replicas sharing small rate limits
through Redis.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from jwks import AUDIENCE, ISSUER
from serve_app import LOCKED_LIMITS

from titan_ray.registry import ModelRegistry
from titan_ray.serve.audit import AUDIT_STREAM
from titan_ray.serve.settings import parse_rate

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TOKENS: list[str] = []  # every token this module used: none may be in a log or a result


def _bearer(token: str) -> dict[str, str]:
    TOKENS.append(token)
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(sub: str, scope: str) -> str:
    """A token with ``alg: none``: claims anyone could write, no signature."""
    now = int(time.time())
    return (f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
            f"{_b64({'sub': sub, 'scope': scope, 'exp': now + 600, 'iss': ISSUER, 'aud': AUDIENCE})}.")


@pytest.fixture(scope="module")
def locked(locked_app):
    return locked_app[0]


def _leaderboard(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(f"{url}/v1/leaderboard", headers=headers or {}, timeout=30)


def test_reads_are_locked_and_bad_tokens_are_401(locked, mint, jwks):
    none = _leaderboard(locked)
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
    bad = {
        "expired": mint("read", sub="sec-expired", ttl_s=-120, issuer=ISSUER, audience=AUDIENCE),
        "wrong signature": mint("read", sub="sec-forged", issuer=ISSUER, audience=AUDIENCE)[:-6] + "AAAAAA",
        "wrong issuer": mint("read", sub="sec-iss", issuer="https://evil.example", audience=AUDIENCE),
        "wrong audience": mint("read", sub="sec-aud", issuer=ISSUER, audience="someone-else"),
        "no issuer": mint("read", sub="sec-noiss", audience=AUDIENCE),
        "alg none": _unsigned("sec-none", "read admin"),
        "RS256 of another key": jwks.sign("RS256", "sec-rs", "read", kid="key-es256"),
        "not a JWT": "let-me-in",
    }
    for why, token in bad.items():
        r = _leaderboard(locked, _bearer(token))
        assert r.status_code == 401, (why, r.status_code, r.text)
        assert 'error="invalid_token"' in r.headers["www-authenticate"], why
        assert token not in r.text, why
    # the reasons say what is wrong, not what the token was
    assert "expired" in _leaderboard(locked, _bearer(bad["expired"])).json()["detail"]
    assert "audience" in _leaderboard(locked, _bearer(bad["wrong audience"])).json()["detail"]


def test_valid_tokens_of_every_kind_read_and_scopes_are_enforced(locked, serve_url, mint, jwks, serve_token):
    good = {
        "HS256": mint("read", sub="sec-hs", issuer=ISSUER, audience=AUDIENCE),
        "RS256": jwks.sign("RS256", "sec-rs256", "read"),
        "ES256": jwks.sign("ES256", "sec-es256", "read"),
        "static": serve_token,
    }
    for kind, token in good.items():
        r = _leaderboard(locked, _bearer(token))
        assert r.status_code == 200 and r.json()["rows"], (kind, r.text)
    assert any(path == "/.well-known/jwks.json" for path in jwks.requests)  # fetched by the replicas
    who = requests.get(f"{locked}/v1/whoami", headers=_bearer(good["ES256"]), timeout=30).json()
    assert who["identity"] == "sec-es256" and who["scopes"] == ["read"] and who["auth"] == "jwt"
    # a valid token without the scope: 403 naming it
    scopeless = jwks.sign("RS256", "sec-noscope", "")
    r = _leaderboard(locked, _bearer(scopeless))
    assert r.status_code == 403 and "'read'" in r.json()["detail"]
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    reader, trader = mint("read", sub="sec-reader"), mint("trade", sub="sec-trader")
    kill = f"{serve_url}/v1/models/hold/kill-switch"
    assert requests.post(kill, json={"on": False}, headers=_bearer(reader), timeout=30).status_code == 403
    assert requests.post(kill, json={"on": False}, headers=_bearer(trader), timeout=30).status_code == 200
    promote = f"{serve_url}/v1/registry/nothing-here/promote"
    r = requests.post(promote, json={"why": "x"}, headers=_bearer(trader), timeout=30)
    assert r.status_code == 403 and "'admin'" in r.json()["detail"]
    r = requests.get(f"{serve_url}/v1/audit", headers=_bearer(trader), timeout=30)
    assert r.status_code == 403
    r = requests.post(promote, json={"why": "x"}, headers=_bearer(mint("admin", sub="sec-admin")), timeout=30)
    assert r.status_code == 404  # past the scope check: no such model


def test_the_rate_limit_holds_across_two_replicas_sharing_redis(locked, mint):
    n, _ = parse_rate(LOCKED_LIMITS["read"])
    token = mint("read", sub=f"sec-rate-{uuid.uuid4().hex[:8]}", issuer=ISSUER, audience=AUDIENCE)

    def whoami(_: int) -> requests.Response:
        return requests.get(f"{locked}/v1/whoami", headers=_bearer(token), timeout=30)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(whoami, range(n)))
    assert [r.status_code for r in answers] == [200] * n, [r.text for r in answers if r.status_code != 200]
    replicas = {r.json()["replica"] for r in answers}
    assert len(replicas) == 2, f"the {n} requests all reached one replica: {replicas}"  # both counted them
    over = whoami(n)
    assert over.status_code == 429, over.text
    retry = int(over.headers["retry-after"])
    assert 1 <= retry <= 3600 / n + 1  # one request back in an emission interval (90 s at 40/hour)
    # another identity has its own budget
    assert whoami_as(locked, mint("read", sub="sec-rate-other", issuer=ISSUER, audience=AUDIENCE)) == 200


def whoami_as(url: str, token: str) -> int:
    return requests.get(f"{url}/v1/whoami", headers=_bearer(token), timeout=30).status_code


def _register(name: str) -> None:
    registry = ModelRegistry(os.environ["TITAN_RAY_REGISTRY"])
    for _ in range(2):
        registry.register(name, "buy_and_hold", {}, save=lambda folder: (folder / "x").write_text("1"),
                          features=[], training_window={}, metrics={}, data_fingerprint="sec")
    registry.set_alias(name, "champion", 1, who="test", why="the first")
    registry.set_alias(name, "challenger", 2, who="test", why="the second")


def test_every_mutation_appears_once_in_the_audit_trail(serve_url, serve_app, mint):
    name = f"sec-model-{uuid.uuid4().hex[:6]}"
    _register(name)
    admin, trader = mint("admin", sub="sec-auditor"), mint("trade", sub="sec-audit-trader")
    current = requests.get(f"{serve_url}/v1/experiments/ab", timeout=30).json()
    weights = {a["name"]: a["weight"] for a in current["arms"] if not a["shadow"]}
    made: dict[str, dict] = {}

    def mutate(method: str, path: str, body: dict, token: str) -> requests.Response:
        rid = f"sec-{uuid.uuid4().hex[:12]}"
        r = requests.request(method, serve_url + path, json=body, timeout=60,
                             headers={**_bearer(token), "X-Request-Id": rid})
        assert r.headers["x-request-id"] == rid
        made[rid] = {"status": r.status_code, "method": method, "path": path}
        return r

    assert mutate("PUT", "/v1/experiments/ab/weights", {"weights": weights}, admin).status_code == 200
    assert mutate("POST", "/v1/models/hold/kill-switch", {"on": False}, trader).status_code == 200
    assert mutate("POST", f"/v1/registry/{name}/promote", {"why": "sec: approve", "who": "desk"}, admin).status_code == 200
    assert mutate("POST", f"/v1/registry/{name}/rollback", {"why": "sec: undo"}, admin).status_code == 200
    assert mutate("POST", f"/v1/registry/{name}/rollback", {"why": "sec: too far"}, trader).status_code == 403
    assert mutate("POST", f"/v1/registry/{name}/rollback", {"why": "x"}, "not-a-token").status_code == 401
    entries = requests.get(f"{serve_url}/v1/audit?limit=10000", headers=_bearer(admin), timeout=30).json()["entries"]
    by_id: dict[str, list[dict]] = {}
    for e in entries:
        by_id.setdefault(e["request_id"], []).append(e)
    for rid, sent in made.items():
        if sent["status"] == 401:  # not past the credentials: nobody to record
            assert rid not in by_id, by_id.get(rid)
            continue
        assert len(by_id.get(rid, [])) == 1, (rid, sent, by_id.get(rid))
        e = by_id[rid][0]
        assert (e["method"], e["path"], e["status"]) == (sent["method"], sent["path"], sent["status"]), e
    weights_entry = next(by_id[r][0] for r, s in made.items() if s["path"].endswith("/weights"))
    assert weights_entry["identity"] == "sec-auditor" and weights_entry["route"] == "/v1/experiments/{name}/weights"
    assert weights_entry["before"]["weights"] == pytest.approx(weights)
    assert weights_entry["after"]["weights"] == pytest.approx(weights)
    promoted = next(by_id[r][0] for r, s in made.items() if s["path"].endswith("/promote"))
    assert promoted["before"]["aliases"] == {"champion": 1, "challenger": 2}
    assert promoted["after"]["aliases"] == {"champion": 2} and promoted["detail"] == "sec: approve"
    history = requests.get(f"{serve_url}/v1/registry/{name}/history", timeout=30).json()["events"]
    assert history[-2]["who"] == "api:sec-auditor for desk"  # the identity, not what the body claims
    kill = next(by_id[r][0] for r, s in made.items() if s["path"].endswith("/kill-switch"))
    assert kill["identity"] == "sec-audit-trader" and kill["after"] == {"halted": False}
    # reading the trail is admin's: the trader is refused
    assert requests.get(f"{serve_url}/v1/audit", headers=_bearer(trader), timeout=30).status_code == 403
    assert requests.get(f"{serve_url}/v1/audit", timeout=30).status_code == 401


def test_a_clusters_audit_trail_is_one_redis_stream_for_every_replica(locked, locked_app, jwks):
    """The locked app's two replicas append to one Redis Stream: every change through either is there
    once, and either replica reads the whole trail."""
    trader = jwks.sign("ES256", "sec-stream-trader", "trade")
    admin = jwks.sign("RS256", "sec-stream-admin", "admin")
    sent = []
    for _ in range(6):  # through both replicas, most likely; the trail is one either way
        rid = f"sec-stream-{uuid.uuid4().hex[:10]}"
        r = requests.post(f"{locked}/v1/models/hold/kill-switch", json={"on": False}, timeout=30,
                          headers={**_bearer(trader), "X-Request-Id": rid})
        assert r.status_code == 200, r.text
        sent.append(rid)
    stream = redis.Redis.from_url(locked_app[1]).xrange(AUDIT_STREAM)
    in_redis = [json.loads(fields[b"entry"])["request_id"] for _, fields in stream]
    assert all(in_redis.count(rid) == 1 for rid in sent), in_redis
    for _ in range(2):
        answer = requests.get(f"{locked}/v1/audit?identity=sec-stream-trader", headers=_bearer(admin), timeout=30)
        assert answer.status_code == 200, answer.text
        entries = answer.json()["entries"]
        assert [e["request_id"] for e in entries] == sent[::-1]  # newest first
        assert {e["auth"] for e in entries} == {"jwt"} and {e["after"]["halted"] for e in entries} == {False}


def test_limits_and_headers(serve_url):
    r = requests.post(f"{serve_url}/v1/predict/sma", data=b"x" * (9 * 2**20), timeout=60,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]
    page = requests.get(serve_url + "/", timeout=30)
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    api = requests.get(f"{serve_url}/v1/leaderboard", headers={"Origin": "https://elsewhere.example"}, timeout=30)
    assert "access-control-allow-origin" not in api.headers  # CORS is off by default
    assert api.headers["cache-control"] == "no-store"


def _session_files() -> list[Path]:
    """Every file of the session's logs and results: Ray's session folder (its logs, the Serve replicas'),
    the registry (history, aliases), the audit trails, pytest's temporary folders and the artifacts."""
    import ray

    roots = [Path(ray._private.worker._global_node.get_session_dir_path()),
             Path(os.environ["TITAN_RAY_REGISTRY"]), Path(__file__).resolve().parents[1] / "artifacts"]
    files = []
    for root in roots:
        if root.is_dir():
            files += [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return files


def test_no_secret_or_token_in_any_log_or_result(serve_url, locked_app, serve_token, tmp_path_factory, minted):
    metrics = requests.get(f"{serve_url}/metrics", timeout=30).text
    secrets = {"the API token": serve_token, "the JWT secret": os.environ["TITAN_RAY_JWT_SECRET"]}
    tokens = set(TOKENS) | set(minted)
    assert len(tokens) > 10
    files = _session_files() + [p for p in tmp_path_factory.getbasetemp().rglob("*") if p.is_file()]
    assert any(p.name.startswith("replica_") for p in files)
    stream = redis.Redis.from_url(locked_app[1]).xrange(AUDIT_STREAM)  # the locked app's audit trail
    assert stream
    stored = b"\n".join(fields[b"entry"] for _, fields in stream)
    needles = {**{k: v.encode() for k, v in secrets.items()},
               **{f"a token ({t[:12]}...)": t.encode() for t in tokens}}
    found = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found += [(str(path), what) for what, needle in needles.items() if needle in data]
    for what, needle in needles.items():
        if needle.decode() in metrics:
            found.append(("/metrics", what))
        if needle in stored:
            found.append((f"the Redis stream {AUDIT_STREAM}", what))
    assert not found, found
