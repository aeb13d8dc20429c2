"""Every route of the HTTP API, fuzzed from its OpenAPI document, with and without credentials: no 500.

The session's Serve app (``serve_url``) documents every route it answers in ``/openapi.json``; for each
path and method there, requests are generated from the document (a small generator, deterministic):
nasty path parameters, query values (valid, boundaries, out of range, wrong types, repeated), bodies
built from the JSON schema ($refs resolved) and broken in every way a client breaks them (missing and
extra fields, wrong types, null, NaN/Infinity as raw text, deep nesting, non-JSON bytes, nothing, 10 MB)
and odd headers. Each request goes out with four credentials: none, a garbage bearer token, a ``read``
JWT and the static admin token. Every answer must be below 500 (a 503 only as JSON with a ``detail``: a
part that does not run), carry ``X-Request-Id`` and ``X-Content-Type-Options: nosniff``, and never echo a
token; a 10 MB body is 413. The bad answers are reported by kind, each with the X-Request-Id it was sent
with (``fuzz-CREDENTIALS-N``): the replica's log (/tmp/ray/session_latest/logs/serve/) names it with
the traceback.

Safety: the tests after this one share the server. A route that changes state (any method but GET
outside the predict routes) gets only path parameters that name nothing real (never ``ab`` nor a
model), so no mutation can succeed; reads and predictions also get the real names, to reach the
validation behind them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import requests

from titan_ray.serve.security import REQUEST_ID  # a client's own X-Request-Id: echoed, or refused (400)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REAL_MODELS = ("sma", "sma_fast", "rsi", "hold")  # tests/serve_app.py
REAL_EXPERIMENTS = ("ab",)
REAL = (*REAL_MODELS, *REAL_EXPERIMENTS)
TIMEOUT = 30
BIG = 10 * 2**20  # over the server's max_body_bytes (8 MiB by default): 413

# Path segments that name nothing: empty-ish, long, unicode, traversal, NUL, spaces, injection-looking.
NASTY_SEGMENTS = (
    "x", " ", "a b", "null", "é", "日本語🚀", "\u202egnp.exe", "..%2F", "..%2F..%2Fetc%2Fpasswd", "../../etc/passwd",
    "%00", "\x00", "%", "?q=1#f", "\\", "' OR '1'='1' --", "<script>alert(1)</script>", "${jndi:ldap://127.0.0.1/x}",
    "A" * 5000, "é" * 1000,
)
# Read-only routes may also get these (they contain a real name, or look like one).
READ_ONLY_SEGMENTS = ("SMA", " sma", "sma/../rsi", "1; DROP TABLE models; --")

WRONG_VALUES: tuple[Any, ...] = (None, "x", -1, 1.5, [], {}, True, "A" * 10_000)
WRONG_PER_FIELD = 3  # wrong values a field gets (rotated through WRONG_VALUES, field by field)
RAW_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e999", "9" * 5000)
NOT_JSON = (b"\xff\xfe\xfd\x00", b"{", b'{"a":', b"a=1&b=2", b"{'a': 1}")
QUERY_WRONG = ("abc", "1.5", "", "9" * 400, "NaN", "0x10", " 5", "\uff15", "[]", "' OR 1=1 --\x00")
HEADER_CASES = (  # (label, headers): odd X-Request-Id, X-Client-Key, Content-Type, Accept
    ("request-id traversal, long client key", {"X-Request-Id": "../../etc/passwd", "X-Client-Key": "k" * 300}),
    ("request-id with markup, huge client key", {"X-Request-Id": "<b> id </b>", "X-Client-Key": "k" * 6000,
                                                  "Content-Type": "text/plain"}),
    ("request-id plain (echoed), odd accept", {"X-Request-Id": "fuzz:req-1.2_3", "X-Client-Key": "é",
                                                "Accept": "application/x-nonsense;q=x"}),
)
CHUNKED_ROUTES = ("/v1/predict/{model}", "/v1/experiments/{name}/predict", "/v1/experiments/{name}/weights")
CONTENT_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz",
                 "application/json; charset=utf-16", "application/jsön", "application/json, text/html", None)


@dataclass(frozen=True)
class Case:
    route: str  # "METHOD /template", as the document names it
    label: str
    method: str
    path: str  # quoted
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    chunked: bool = False  # send ``body`` as a chunked stream (no Content-Length)
    headers: tuple[tuple[str, str], ...] = ()
    expect: tuple[int, ...] = ()  # one of these statuses (a 10 MB body: 413, or the refusal of the credentials)
    stream: bool = False  # /v1/events: only the status line is read


@dataclass
class Outcome:
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[Failure] = field(default_factory=list)
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


# --- the JSON schema: values from it ----------------------------------------------------------------


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _alternatives(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    alts = [_resolve(a, components) for a in schema.get("anyOf", schema.get("oneOf", []))]
    return [a for a in alts if a.get("type") != "null"] or alts


def sample(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A schema-valid-looking value: every property given, the smallest lengths, the lowest bounds."""
    schema = _resolve(schema, components)
    if "anyOf" in schema or "oneOf" in schema:
        return sample(_alternatives(schema, components)[0], components, depth)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(part, components))
        return sample(merged, components, depth)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "object":
        if depth > 6:
            return {}
        props = schema.get("properties") or {}
        if props:
            return {k: sample(v, components, depth + 1) for k, v in props.items()}
        extra = schema.get("additionalProperties")
        return {"k": sample(extra, components, depth + 1)} if isinstance(extra, dict) else {}
    if kind == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        return [sample(schema.get("items", {}), components, depth + 1) for _ in range(n)]
    if kind == "string":
        return "1" if "pattern" in schema else "x" * max(int(schema.get("minLength", 1)), 1)
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return schema.get("default", True)
    if kind == "null":
        return None
    return "x"  # no type: anything


def _with_raw(value: dict[str, Any], key: str, raw: str) -> bytes:
    """``value`` as JSON with the first leaf under ``key`` written as the raw text ``raw`` (NaN, ...)."""
    marker = "\u2603RAW\u2603"
    v = json.loads(json.dumps(value))
    holder, k = v, key
    while isinstance(holder[k], dict | list) and holder[k]:
        holder, k = holder[k], (next(iter(holder[k])) if isinstance(holder[k], dict) else 0)
    holder[k] = marker
    return json.dumps(v).replace(json.dumps(marker), raw).encode()


def body_variants(schema: dict[str, Any], components: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(label, body) from a request body's schema: valid-looking, then broken in every usual way."""
    root = _resolve(schema, components)
    if "anyOf" in root or "oneOf" in root:  # KillSwitch | null: the object's own schema
        root = _alternatives(root, components)[0]
    full = sample(root, components)
    props = root.get("properties") or {}
    required = root.get("required") or []
    out: list[tuple[str, Any]] = [("valid-looking", full), ("required only", {k: full[k] for k in required})]
    if len(props) > 1:
        out += [(f"only {k}", {k: full[k]} if isinstance(full, dict) else full) for k in props]
    out += [(f"missing {k}", {p: v for p, v in full.items() if p != k}) for k in required]
    out.append(("extra fields", {**full, "zz_extra": 1, "__proto__": {"admin": True}}))
    for i, k in enumerate(props):
        wrong = [WRONG_VALUES[(i * WRONG_PER_FIELD + j) % len(WRONG_VALUES)] for j in range(WRONG_PER_FIELD)]
        out += [(f"{k} = {json.dumps(w)[:20]}", {**full, k: w}) for w in wrong]
        out.append((f"{k} nested 60 deep", {**full, k: _nested(60)}))
    out += [(f"top-level {json.dumps(v)[:20]}", v) for v in (None, [], "s", 0, True, [full])]
    encoded = [(label, json.dumps(v).encode()) for label, v in out]
    if isinstance(full, dict) and full:
        for i, k in enumerate(props):
            raws = [RAW_NUMBERS[(2 * i + j) % len(RAW_NUMBERS)] for j in range(2)]
            encoded += [(f"{k} leaf {raw[:12]}", _with_raw(full, k, raw)) for raw in raws]
            if isinstance(full[k], dict | list):  # a scalar's leaf is itself: done above
                encoded.append((f"{k} = NaN", json.dumps({**full, k: "\u2603"}).replace('"\\u2603"', "NaN").encode()))
        first = next(iter(full))
        encoded.append(("duplicate key", f'{{{json.dumps(first)}: 1, {json.dumps(first)}: {json.dumps(full[first])}}}'
                        .encode()))
        encoded.append(("utf-16", json.dumps(full).encode("utf-16")))
    encoded += [(f"not JSON {b[:8]!r}", b) for b in NOT_JSON]
    encoded += [("empty body", b""), ("array 50000 deep", b"[" * 50_000 + b"]" * 50_000),
                ("object 5000 deep", b'{"a":' * 5000 + b"1" + b"}" * 5000)]
    return encoded


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


DEEPER_FOR_EVERY_MODEL = 8  # of predict_bodies: every served model gets these; the first, all


def predict_bodies(example: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Bodies that reach a model's own checks: its example, and the example broken in the bars."""
    bars = example["bars"]
    n, syms = len(bars["close"]), bars["symbols"]

    def bent(**change: Any) -> bytes:
        return json.dumps({"bars": {**bars, **change}}).encode()

    out = [
        ("example", json.dumps(example).encode()),
        ("timestamps before 1677 (ISO)", bent(timestamps=["0001-01-01T00:00:00Z"] + bars["timestamps"][1:])),
        ("timestamps after 2262 (ISO)", bent(timestamps=[f"9999-12-{10 + i % 18:02d}T00:{i // 18:02d}:00Z"
                                                         for i in range(n)])),
        ("timestamps of the year 5000 (unix s)", bent(timestamps=[99_999_999_000 + i for i in range(n)])),
        ("timestamps not increasing", bent(timestamps=[bars["timestamps"][0]] * n)),
        ("timestamps booleans", bent(timestamps=[True] * n)),
        ("ragged close", bent(close=[row[:-1] for row in bars["close"]])),
        ("close huge", bent(close=[[1e308] * len(syms) for _ in range(n)], open=None, high=None, low=None)),
        ("close nulls", bent(close=[[None] * len(syms) for _ in range(n)])),
        ("duplicate symbols", bent(symbols=[syms[0]] * len(syms))),
        ("long symbol", bent(symbols=["S" * 33, *syms[1:]])),
        ("one row", json.dumps({"bars": {"symbols": ["AAA"], "close": [[1.0]]}}).encode()),
        ("501 symbols", json.dumps({"bars": {"symbols": [f"S{i}" for i in range(501)],
                                             "close": [[1.0] * 501] * 3}}).encode()),
        ("5001 rows", json.dumps({"bars": {"symbols": ["AAA"], "close": [[1.0]] * 5001}}).encode()),
        ("features for a rule model", json.dumps({"features": {"AAA": {"x": 1.0}}}).encode()),
    ]
    raw = json.dumps(example)
    close = json.dumps(bars["close"])
    out += [(f"close with raw {tok}", raw.replace(close, close.replace(str(bars["close"][0][0]), tok, 1)).encode())
            for tok in ("NaN", "-1")]
    out.append(("NaN in a refused body", json.dumps({"bars": {"symbols": ["A"], "close": [[-1.0]]}})
                .replace("-1.0", "NaN").replace("]]", "], [-1.0]]").encode()))
    out.append(("Infinity and a bad price", b'{"bars": {"symbols": ["A"], "close": [[Infinity], [0]]}}'))
    out.append(("features NaN", b'{"features": {"A": {"x": NaN}}}'))
    return out


# --- the cases ----------------------------------------------------------------------------------------


def _fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: quote(value, safe=""), template)


def _is_predict(template: str) -> bool:
    return template.startswith("/v1/predict/") or template.endswith("/predict")


def _mutating(method: str, template: str) -> bool:
    return method not in ("GET", "HEAD") and not _is_predict(template)


def _segments(method: str, template: str) -> list[str]:
    """The path parameters a route gets: nothing real on a mutating route, everything on the others."""
    if _mutating(method, template):  # behind credentials and a 404: every other one
        safe = [s for s in NASTY_SEGMENTS[::2] if not any(r in s.lower() for r in REAL)]
        assert safe and not set(safe) & set(REAL)
        return safe
    return [*NASTY_SEGMENTS, *READ_ONLY_SEGMENTS]


def _real_names(template: str, deep: dict[str, list[str]]) -> list[str]:
    if "{model}" in template:
        return list(REAL_MODELS)
    if template.startswith("/v1/experiments/"):
        return list(REAL_EXPERIMENTS)
    if "{decision_id}" in template:
        return deep["decisions"]
    return list(REAL)  # the registry: nothing of these names is registered; read routes only


def _query_values(schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    schema = _resolve(schema, components)
    if "anyOf" in schema:
        schema = _alternatives(schema, components)[0]
    values: list[str] = []
    if schema.get("type") == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        for v in (lo, hi, lo - 1 if lo is not None else None, hi + 1 if hi is not None else None, -1, 10**30):
            if v is not None:
                values.append(str(int(v)))
    elif schema.get("type") == "string":
        most = schema.get("maxLength", 64)
        values += ["1-2", "1" * most, "1" * (most + 1), "1-", "1\n2", "é" * 10, *QUERY_WRONG[-3:]]
        return list(dict.fromkeys(values))
    return list(dict.fromkeys([*values, *QUERY_WRONG]))


def build_cases(spec: dict[str, Any], deep: dict[str, list[str]]) -> list[Case]:
    components = spec.get("components", {}).get("schemas", {})
    cases: list[Case] = []
    for template, methods in spec["paths"].items():
        for method, op in methods.items():
            method = method.upper()
            route = f"{method} {template}"
            params = op.get("parameters", [])
            path_params = [p for p in params if p["in"] == "path"]
            query = [p for p in params if p["in"] == "query"]
            mutating = _mutating(method, template)
            stream = template == "/v1/events"
            base_segment = "zz-no-such-thing" if mutating else _real_names(template, deep)[0]
            base_path = _fill(template, base_segment) if path_params else template
            body_schema = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            base_body = json.dumps(sample(body_schema, components)).encode() if body_schema else None
            if body_schema is not None and _is_predict(template):  # what a served model answers
                base_body = json.dumps(deep["example"]).encode()

            def case(label: str, path: str = base_path, *, params: tuple = (), body: bytes | None = base_body,
                     headers: dict[str, str | None] | None = None, route: str = route, method: str = method,
                     stream: bool = stream, **kw: Any) -> Case:
                h = {"Content-Type": "application/json"} if body is not None else {}
                h.update(headers or {})
                return Case(route, label, method, path, tuple(params), body,
                            headers=tuple((k, v) for k, v in h.items() if v is not None), stream=stream, **kw)

            # path parameters
            if path_params:
                segments = _segments(method, template)
                if not mutating:
                    segments += _real_names(template, deep)
                cases += [case(f"path {s[:24]!r}", _fill(template, s)) for s in segments]
            # query parameters: each over its values, repeated, all at once; unknown ones
            for p in query:
                cases += [case(f"{p['name']}={v[:16]!r}", params=((p["name"], v),))
                          for v in _query_values(p["schema"], components)]
                cases.append(case(f"{p['name']} repeated", params=((p["name"], "2"), (p["name"], "3"),
                                                                   (p["name"], "abc"))))
            if query:
                cases.append(case("every query parameter", params=tuple((p["name"], "2") for p in query)))
            cases.append(case("unknown query parameters", params=(("zz", "<script>"), ("zz", "1"), ("limit", "-1"),
                                                                  ("", "x"), ("a\x00", "\x00"))))
            # headers
            cases += [case(f"headers: {label}", headers=h) for label, h in HEADER_CASES]
            # bodies
            if body_schema is not None:
                if _is_predict(template):  # the model's own checks behind the real names
                    names = _real_names(template, deep)
                    example = deep["example"]
                    full = body_variants(body_schema, components)
                    deeper = predict_bodies(example)
                    for i, name in enumerate(names):  # the first name gets them all, the others the model's own
                        bodies = deeper + full if i == 0 else deeper[:DEEPER_FOR_EVERY_MODEL]
                        cases += [case(f"{name}: {label}", _fill(template, name), body=b) for label, b in bodies]
                    cases += [case("unknown name, example", _fill(template, "zz-unknown"))]
                    body_path = _fill(template, names[0])
                else:  # promote and rollback share a schema: rollback gets every other variant
                    variants = body_variants(body_schema, components)
                    if template.endswith("/rollback"):
                        variants = variants[::2]
                    cases += [case(f"body {label}", body=b) for label, b in variants]
                    body_path = base_path
                cases += [case(f"content-type {ct}", body_path, headers={"Content-Type": ct}) for ct in CONTENT_TYPES]
                big = b'{"zz": "' + b"a" * BIG + b'"}'
                # refused on its Content-Length before anything else; sent chunked, as it is read, after the
                # credentials (which may refuse it first)
                cases.append(case("10 MB body", body_path, body=big, expect=(413,)))
                if method in ("PUT", "POST") and template in CHUNKED_ROUTES:
                    cases.append(case("10 MB body, chunked", body_path, body=big, chunked=True,
                                      expect=(413, 401, 403)))
            elif method != "GET":
                cases.append(case("unexpected body", body=b'{"a": 1}'))
    return cases


# --- sending ------------------------------------------------------------------------------------------


def _chunks(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def _send(session: requests.Session, base: str, c: Case, auth: str | None, request_id: str) -> requests.Response:
    headers = {"X-Request-Id": request_id, **dict(c.headers)}  # ours, to find a failure in the replica's log
    if auth is not None:
        headers["Authorization"] = auth
    data: Any = _chunks(c.body) if c.chunked and c.body is not None else c.body
    return session.request(c.method, base + c.path, params=list(c.params) or None, data=data, headers=headers,
                           timeout=(5, 10) if c.stream else TIMEOUT, stream=c.stream, allow_redirects=False)


def _check(c: Case, r: requests.Response, sent_id: str, secrets: tuple[str, ...]) -> list[str]:
    problems = []
    text = "" if c.stream else r.text
    if c.expect and r.status_code not in c.expect:
        problems.append(f"expected {' or '.join(map(str, c.expect))}")
    if r.status_code >= 500:
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        if r.status_code != 503 or not (isinstance(body, dict) and body.get("detail")):
            problems.append("a server error")
    if _mutating(c.method, c.route.split(" ", 1)[1]) and r.status_code < 300:
        problems.append("a mutation succeeded")  # never meant to: nothing real is named
    ids = r.raw.headers.getlist("X-Request-Id")
    if not ids:
        problems.append("no X-Request-Id")
    elif ids != [sent_id]:  # Serve answers the id it was sent, once
        problems.append("an X-Request-Id other than the one sent")
    if not REQUEST_ID.match(sent_id) and r.status_code != 400:
        problems.append("a malformed X-Request-Id was taken (it would reach the audit trail and the logs)")
    if r.headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    shown = text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
    if any(s in shown for s in secrets):
        problems.append("a token echoed")
    return problems


def run_variant(base: str, cases: list[Case], name: str, auth: str | None, secrets: tuple[str, ...],
                outcome: Outcome) -> None:
    with requests.Session() as session:
        for i, c in enumerate(cases):
            own_id = f"fuzz-{name}-{i}"
            sent_id = dict(c.headers).get("X-Request-Id", own_id)
            text = ""
            try:
                r = _send(session, base, c, auth, own_id)
            except requests.RequestException as err:
                problems, status = [f"no answer: {type(err).__name__}: {str(err)[:200]}"], "none"
            else:
                try:
                    problems, status = _check(c, r, sent_id, secrets), r.status_code
                    text = "" if c.stream else r.text[:200]
                finally:
                    r.close()
            with outcome.lock:
                outcome.sent += 1
                outcome.statuses[c.route][status] += 1
                if problems:
                    outcome.failures.append(Failure("; ".join(problems), c, name, status, text, sent_id))


@dataclass(frozen=True)
class Failure:
    problems: str
    case: Case
    credentials: str
    status: int | str
    text: str
    request_id: str


def report(failures: list[Failure], examples: int = 80, others: int = 8) -> str:
    """The failures by kind of problem (server errors first); under each, one line per request (with the
    credentials that got that answer), ``examples`` of the server errors and ``others`` of the rest."""
    kinds: dict[str, dict[tuple, list[Failure]]] = defaultdict(lambda: defaultdict(list))
    for f in failures:
        kinds[f.problems][(f.case.route, f.case.label, f.case.path, f.case.params, f.status)].append(f)
    out = [f"{len(failures)} bad answers:"]
    for problems, requests_ in sorted(kinds.items(), key=lambda k: ("server error" not in k[0], -len(k[1]))):
        most = examples if "server error" in problems else others
        out.append(f"[{problems}] {sum(map(len, requests_.values()))} answers to {len(requests_)} requests, e.g.:")
        for (_route, label, path, params, status), fs in sorted(requests_.items(), key=lambda r: r[0][:2])[:most]:
            f = fs[0]
            query = "?" + "&".join(f"{k}={v[:20]}" for k, v in params) if params else ""
            out.append(f"  {f.case.method} {path[:70]}{query} [{label}] -> {status} (creds "
                       f"{','.join(sorted(x.credentials for x in fs))}; X-Request-Id {f.request_id[:24]!r}) {f.text[:100]!r}")
        if len(requests_) > most:
            out.append(f"  ... and {len(requests_) - most} more")
    return "\n".join(out)


# --- the test -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(serve_url) -> dict[str, Any]:
    r = requests.get(f"{serve_url}/openapi.json", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def deep(serve_url) -> dict[str, Any]:
    """What reaches past the 404s: a model's example request, and real decision ids."""
    example = requests.get(f"{serve_url}/v1/models/sma", timeout=TIMEOUT).json()["example_request"]
    trades = requests.get(f"{serve_url}/v1/trades/sma", params={"limit": 3}, timeout=TIMEOUT).json()
    decisions = list(dict.fromkeys(o["decision_id"] for o in trades.get("orders", []) if o.get("decision_id")))
    return {"example": example, "decisions": [*decisions[:2], "0", "sma-0-AAA"]}


def test_every_route_answers_every_fuzzed_request_below_500(serve_url, serve_token, mint, openapi, deep, capsys):
    documented = {f"{m.upper()} {p}" for p, ms in openapi["paths"].items() for m in ms}
    for route in ("POST /v1/predict/{model}", "POST /v1/experiments/{name}/predict",
                  "PUT /v1/experiments/{name}/weights", "POST /v1/models/{model}/kill-switch",
                  "POST /v1/registry/{name}/promote", "POST /v1/registry/{name}/rollback", "GET /v1/events"):
        assert route in documented, f"{route} is not in /openapi.json"
    cases = build_cases(openapi, deep)
    assert {c.route for c in cases} == documented, "every documented route is fuzzed"
    for c in cases:  # never a mutation of something real
        if _mutating(c.method, c.route.split(" ", 1)[1]):
            name = c.path.split("/")[3]
            assert all(r not in name.lower() for r in REAL), c

    read_jwt = mint("read", sub="fuzz")
    variants = {"none": None, "garbage": "Bearer garbage", "read-jwt": f"Bearer {read_jwt}",
                "admin": f"Bearer {serve_token}"}
    secrets = (serve_token, read_jwt)
    outcome = Outcome()
    start = time.monotonic()
    with ThreadPoolExecutor(len(variants)) as pool:
        for f in [pool.submit(run_variant, serve_url, cases, name, auth, secrets, outcome)
                  for name, auth in variants.items()]:
            f.result()
    took = time.monotonic() - start

    with capsys.disabled():
        print(f"\nAPI fuzz: {outcome.sent} requests ({len(cases)} cases x {len(variants)} credentials) in {took:.1f} s")
        for route in sorted(outcome.statuses):
            seen = ", ".join(f"{s}: {n}" for s, n in sorted(outcome.statuses[route].items(), key=lambda x: str(x[0])))
            print(f"  {route:42} {seen}")
        print(f"  failures: {len(outcome.failures)}")
    assert outcome.sent == len(cases) * len(variants)
    assert not outcome.failures, report(outcome.failures)
