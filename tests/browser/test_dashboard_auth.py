"""Signing in to the dashboard with a bearer token, a server whose reads need one, and the audit trail.

The session app (reads open, large rate limits) carries the request-heavy checks; the locked app at
``/locked`` (reads need a token, 40 reads an hour per identity, anonymous browsers all one identity)
gets a few short visits, each signed-in one under its own ``sub``.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest
import requests
from jwks import AUDIENCE, ISSUER

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
WEIGHTS_ROUTE = "/v1/experiments/{name}/weights"
# what Chromium logs for a refused request the page made on purpose (a bad token, a locked read)
REFUSED = ("status of 401", "status 401")


def _home(url: str) -> str:
    return url.rstrip("/") + "/"


def _wait(o, js: str, timeout_s: float = 20.0) -> None:
    """Wait until ``js`` is true. As a function: Playwright compiles it once, in its own call, which the page's
    CSP allows; a bare expression would be eval()ed at every poll, which the CSP (no 'unsafe-eval') refuses."""
    o.page.wait_for_function(f"() => ({js})", timeout=timeout_s * 1000)


def _snap(o) -> dict[str, Any]:
    return o.snapshot()


def _sign_in(o, token: str) -> None:
    page = o.page
    if page.locator("#signin").is_hidden():
        page.click("#signin-open")
    page.fill("#token-input", token)
    page.click("#signin-submit")


def _everything_said(o) -> list[str]:
    """Every console message from now on (any level): a token must never be among them."""
    said: list[str] = []
    o.page.on("console", lambda m: said.append(m.text))
    return said


def _authorization(o) -> list[tuple[str, str | None]]:
    """(url, Authorization header) of every request the page makes from now on."""
    seen: list[tuple[str, str | None]] = []
    o.page.on("request", lambda r: seen.append((r.url, r.headers.get("authorization"))))
    return seen


def _storage(o) -> dict[str, Any]:
    return o.page.evaluate("""() => ({session: Object.values(sessionStorage), sessionLength: sessionStorage.length,
                                      local: localStorage.length})""")


def _same_weights(serve_url: str, token: str) -> tuple[str, dict[str, float]]:
    """PUT the experiment ``ab``'s weights as they are (other tests see no change): (X-Request-Id, weights)."""
    ab = requests.get(f"{serve_url}/v1/experiments/ab", timeout=30).json()
    weights = {arm["name"]: arm["weight"] for arm in ab["arms"] if not arm.get("shadow")}
    answer = requests.put(f"{serve_url}/v1/experiments/ab/weights", json={"weights": weights},
                          headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Request-Id"], weights


def _fits(o) -> None:
    width = o.page.viewport_size["width"]
    assert o.page.evaluate("document.documentElement.scrollWidth") <= width


# --------------------------------------------------------------------------------------- the session app


def test_admin_sign_in_then_the_audit_trail_shows_the_change_just_made(open_page, serve_url, mint):
    token = mint("admin", sub="dash-admin")
    o = open_page(_home(serve_url) + "#/audit")
    page = o.page
    _wait(o, "document.querySelector('#audit-body .audit-note[data-reason=anonymous]') !== null")
    assert "Sign in with an admin token to see the audit trail" in page.inner_text("#audit-body")
    snap = _snap(o)
    assert snap["signedIn"] is False and snap["identity"] is None and snap["scopes"] == [] and snap["auditRows"] == 0
    assert snap["locked"] is False and snap["readsNeedToken"] is False
    _wait(o, "TitanRay.app.snapshot().connection === 'live'")
    assert _snap(o)["stream"] == "eventsource"  # anonymous: the browser's EventSource
    o.shot("audit-anonymous")

    said = _everything_said(o)
    sent = _authorization(o)
    _sign_in(o, token)
    _wait(o, "TitanRay.app.snapshot().signedIn && TitanRay.app.snapshot().identity === 'dash-admin'")
    snap = _snap(o)
    assert snap["scopes"] == ["admin", "read", "trade"]
    assert page.inner_text("#who-name") == "dash-admin"
    assert page.locator("#signout").is_visible() and page.locator("#signin-open").is_hidden()
    assert page.locator("#signin").is_hidden() and page.input_value("#token-input") == ""
    stored = _storage(o)
    assert stored["session"] == [token] and stored["local"] == 0
    # the live stream follows v1/events again, now with fetch() and the token
    _wait(o, "TitanRay.app.snapshot().stream === 'fetch' && TitanRay.app.snapshot().connection === 'live'")
    assert any(url.endswith("/v1/events") and auth == f"Bearer {token}" for url, auth in sent)
    n = len(sent)  # from here on (a roundtrip after the sign-in), no request of before it can still show up

    # a real change through the API, with the same token: the experiment's weights as they are
    request_id, weights = _same_weights(serve_url, token)
    row = f'#audit-body table.audit tr[data-request-id="{request_id}"]'
    _wait(o, f"document.querySelector({json.dumps(row)}) !== null", timeout_s=30)  # the 4 s refresh finds it
    assert page.get_attribute(row, "data-identity") == "dash-admin"
    text = page.inner_text(row)
    assert "PUT" in text and WEIGHTS_ROUTE in text and "experiment: ab" in text and request_id in text
    assert page.inner_text(f"{row} td.num") == "200"
    before = json.loads(page.inner_text(f"{row} code.before"))
    after = json.loads(page.inner_text(f"{row} code.after"))
    assert set(before["weights"]) == set(after["weights"]) == set(weights)
    assert after["weights"] == pytest.approx(weights, abs=1e-9)
    shown = page.locator("#audit-body table.audit tbody tr[data-request-id]").count()
    assert shown >= 1 and _snap(o)["auditRows"] == shown
    o.shot("audit-admin", full_page=True)

    # every API request after sign-in carried the token, in the header only, and nothing printed it
    api = [(url, auth) for url, auth in sent[n:] if "/v1/" in url]
    assert any("/v1/audit" in url for url, _ in api)
    assert all(auth == f"Bearer {token}" for _, auth in api), api
    assert not any(token in url for url in o.requests)
    assert not any(token in line for line in said)
    o.assert_no_console_errors()


def test_read_token_is_told_the_audit_trail_needs_admin_and_sign_out_forgets_it(open_page, serve_url, mint):
    token = mint("read", sub="dash-reader")
    o = open_page(_home(serve_url) + "#/audit")
    page = o.page
    sent = _authorization(o)
    _sign_in(o, token)
    _wait(o, "TitanRay.app.snapshot().identity === 'dash-reader'")
    assert _snap(o)["scopes"] == ["read"]
    _wait(o, "document.querySelector('#audit-body .audit-note[data-reason=needs-admin]') !== null")
    assert "The audit trail needs an admin token" in page.inner_text("#audit-body")
    assert page.locator("#audit-body table.audit").count() == 0 and _snap(o)["auditRows"] == 0
    # it does not even ask: the scopes whoami gave say the answer would be 403
    assert not any("/v1/audit" in url for url, _ in sent)
    o.shot("audit-read")

    # the leaderboard reads with the token
    page.click('#nav a[data-view="overview"]')
    _wait(o, "document.querySelectorAll('#leaderboard tbody tr[data-model]').length > 0")
    _wait(o, "TitanRay.app.snapshot().stream === 'fetch' && TitanRay.app.snapshot().connection === 'live'")
    assert any("/v1/leaderboard" in url and auth == f"Bearer {token}" for url, auth in sent)
    assert _storage(o)["session"] == [token]

    page.click("#signout")
    _wait(o, "!TitanRay.app.snapshot().signedIn")
    snap = _snap(o)
    assert snap["identity"] is None and snap["scopes"] == []
    assert _storage(o) == {"session": [], "sessionLength": 0, "local": 0}
    assert page.locator("#who").is_hidden() and page.locator("#signin-open").is_visible()
    # anonymous again: EventSource, the reads open as before, and no header
    _wait(o, "TitanRay.app.snapshot().stream === 'eventsource' && TitanRay.app.snapshot().connection === 'live'")
    assert page.locator("#leaderboard tbody tr[data-model]").count() > 0
    n = len(sent)
    page.click('#nav a[data-view="audit"]')
    _wait(o, "document.querySelector('#audit-body .audit-note[data-reason=anonymous]') !== null")
    page.click('#nav a[data-view="overview"]')
    _wait(o, "document.querySelectorAll('#leaderboard tbody tr[data-model]').length > 0")
    page.reload()  # what a new page of this tab asks with: nothing kept
    _wait(o, "window.TitanRay && TitanRay.app && TitanRay.app.snapshot().connection === 'live'")
    later = [(url, auth) for url, auth in sent[n:] if "/v1/" in url]
    assert later and all(auth is None for _, auth in later), later
    assert _snap(o)["signedIn"] is False
    o.shot("signed-out")
    o.assert_no_console_errors()


def test_the_served_page_has_the_csp_and_breaks_none_of_it(open_page, serve_url, api_models, mint):
    o = open_page(_home(serve_url))
    page = o.page
    page.add_init_script("""window.__violations = [];
        document.addEventListener('securitypolicyviolation',
          (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));""")
    response = page.reload()
    assert response.headers["content-security-policy"] == CSP
    _wait(o, "document.querySelectorAll('#leaderboard tbody tr[data-model]').length > 0 && "
               "TitanRay.app.snapshot().equitySeries > 0 && TitanRay.app.snapshot().connection === 'live'")
    # every view, the sign-in form and a signed-in fetch stream, under the policy
    page.goto(_home(serve_url) + "#/model/" + urllib.parse.quote(api_models[0], safe=""))
    _wait(o, "document.querySelector('#model-body [data-section=positions]') !== null", timeout_s=30)
    page.click('#nav a[data-view="experiments"]')
    _wait(o, "document.querySelector('#experiment-list .exp-item, #experiment-list .empty') !== null")
    _sign_in(o, mint("admin", sub="dash-csp"))
    _wait(o, "TitanRay.app.snapshot().signedIn && TitanRay.app.snapshot().stream === 'fetch' && "
               "TitanRay.app.snapshot().connection === 'live'")
    page.click('#nav a[data-view="audit"]')
    _wait(o, "document.querySelector('#audit-body table.audit') !== null")
    assert page.evaluate("window.__violations") == []
    o.assert_no_console_errors()

    # the policy is really enforced in this browser: an inline script is refused, and said to be
    page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__inline = 1';
                            document.body.append(s); }""")
    _wait(o, "window.__violations.length > 0")
    assert page.evaluate("window.__inline") is None
    assert any(v.startswith("script-src") for v in page.evaluate("window.__violations"))
    assert any("Content Security Policy" in e for e in o.errors)


@pytest.fixture
def api_models(serve_url) -> list[str]:
    rows = requests.get(f"{serve_url}/v1/leaderboard", timeout=30).json()["rows"]
    assert rows
    return [row["model"] for row in rows]


def test_event_stream_parser_follows_the_standard(open_page, serve_url):
    """The parser behind the signed-in stream: fields, comments, CR/LF/CRLF, retry, ids, split anywhere."""
    o = open_page(_home(serve_url))
    stream = ("\ufeffretry: 250\r\n: a comment\r\nevent: leaderboard\r\ndata: {\"a\"\r\ndata::1}\r\n\r\n"
              "id: 7\nevent: fill\ndata:[1]\n\nretry: soon\ndata: plain\r\r: keep-alive\n\n"
              "event: status\ndata\n\nevent: nothing\n\nid: 8\0\nfield-without-colon\ndata: x")
    results = o.page.evaluate("""(text) => {
        const out = [];
        for (let cut = 0; cut <= text.length; cut++) {
          const events = [], retries = [];
          const parser = TitanRay.api.sseParser((e) => events.push(e), (ms) => retries.push(ms));
          parser.push(text.slice(0, cut));
          parser.push(text.slice(cut));
          out.push({events, retries});
        }
        return out;
    }""", stream)
    expected = {"events": [
        {"type": "leaderboard", "data": '{"a"\n:1}', "lastEventId": ""},
        {"type": "fill", "data": "[1]", "lastEventId": "7"},
        {"type": "message", "data": "plain", "lastEventId": "7"},
        {"type": "status", "data": "", "lastEventId": "7"},
    ], "retries": [250]}  # "data: x" waits for its blank line; an id with NUL is ignored
    assert len(results) == len(stream) + 1
    for cut, got in enumerate(results):
        assert got == expected, f"split at {cut}: {got}"
    o.assert_no_console_errors()


def test_phone_sign_in_and_audit_trail(open_page, serve_url, mint):
    token = mint("admin", sub="dash-phone")
    o = open_page(_home(serve_url), "phone")
    page = o.page
    width = page.viewport_size["width"]
    _wait(o, "document.querySelectorAll('#leaderboard tbody tr[data-model]').length > 0")
    page.click("#signin-open")
    assert page.locator("#token-input").is_visible()
    assert page.get_attribute("#token-input", "type") == "password"
    _fits(o)
    o.shot("signin")
    _sign_in(o, token)
    _wait(o, "TitanRay.app.snapshot().identity === 'dash-phone'")
    assert page.eval_on_selector_all("#who-scopes .scope", "s => s.map(e => e.innerText)") == ["admin", "read", "trade"]
    for selector in ("#signout", "#who-name", "#who-scopes", "#nav a[data-view=audit]", "#status-pill"):
        box = page.locator(selector).bounding_box()
        assert box and box["width"] > 0 and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (selector, box)
    _fits(o)
    o.shot("signed-in")
    request_id, _ = _same_weights(serve_url, token)
    page.click("#nav a[data-view=audit]")
    row = f'#audit-body table.audit tr[data-request-id="{request_id}"]'
    _wait(o, f"document.querySelector({json.dumps(row)}) !== null", timeout_s=30)
    _fits(o)
    # each entry is a card of labelled lines: its change and its request id in view, not scrolled away
    for cell in ("Before → after", "Request id"):
        box = page.locator(f'{row} td[data-label="{cell}"]').bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (cell, box)
    assert request_id in page.inner_text(f'{row} td[data-label="Request id"]')
    o.shot("audit", full_page=True)
    o.assert_no_console_errors()


# --------------------------------------------------------------------------------------- the locked app


def test_locked_server_asks_for_a_token_then_loads_with_one(open_page, locked_app, mint):
    url, _redis = locked_app
    o = open_page(_home(url))
    page = o.page
    _wait(o, "TitanRay.app.snapshot().locked === true")
    snap = _snap(o)
    assert snap["readsNeedToken"] is True and snap["signedIn"] is False and snap["snapshots"] == 0
    assert page.locator("#locked").is_visible()
    assert page.inner_text("#locked h2") == "This server needs a token to read: sign in"
    assert page.locator("#signin").is_visible() and page.locator("#token-input").is_visible()
    assert page.locator("#leaderboard tbody tr[data-model]").count() == 0
    assert page.locator("#view-overview").is_hidden()
    assert page.get_attribute("#conn", "data-state") == "locked"
    # whoami said reads need a token: the page spent none of the anonymous budget on reads it would be refused
    asked = [u for u in o.requests if "/v1/" in u]
    assert asked and all(u.endswith("/locked/v1/whoami") for u in asked), asked
    o.shot("locked")

    token = mint("read", sub="dash-locked-reader", issuer=ISSUER, audience=AUDIENCE)
    said = _everything_said(o)
    sent = _authorization(o)
    _sign_in(o, token)
    _wait(o, "TitanRay.app.snapshot().signedIn && !TitanRay.app.snapshot().locked")
    assert _snap(o)["identity"] == "dash-locked-reader" and _snap(o)["scopes"] == ["read"]
    _wait(o, "document.querySelectorAll('#leaderboard tbody tr[data-model]').length > 0")
    assert page.locator("#locked").is_hidden() and page.locator("#view-overview").is_visible()
    # live events through the fetch stream (EventSource could not send the token)
    _wait(o, "TitanRay.app.snapshot().stream === 'fetch' && TitanRay.app.snapshot().connection === 'live' && "
               "TitanRay.app.snapshot().snapshots >= 1", timeout_s=30)
    _wait(o, "TitanRay.app.snapshot().equitySeries > 0")
    events = [auth for u, auth in sent if u.endswith("/locked/v1/events")]
    assert events and all(auth == f"Bearer {token}" for auth in events)
    api = [(u, auth) for u, auth in sent if "/v1/" in u]
    assert all(auth == f"Bearer {token}" for _, auth in api), api
    assert len(api) < 25, f"{len(api)} requests against a budget of 40 an hour: {api}"
    assert not any(token in u for u in o.requests) and not any(token in line for line in said)
    o.shot("locked-signed-in")
    o.assert_no_console_errors()


def test_locked_server_refuses_a_token_for_another_audience(open_page, locked_app, mint):
    url, _redis = locked_app
    o = open_page(_home(url))
    page = o.page
    _wait(o, "TitanRay.app.snapshot().locked === true")
    wrong = mint("read", sub="dash-locked-stranger", issuer=ISSUER, audience="another-server")
    _sign_in(o, wrong)
    _wait(o, "!document.getElementById('signin-error').hidden")
    assert page.inner_text("#signin-error") == ("Not signed in: invalid bearer token: the token's audience (aud) "
                                                "does not name this server")
    snap = _snap(o)
    assert snap["signedIn"] is False and snap["identity"] is None and snap["locked"] is True
    assert _storage(o) == {"session": [], "sessionLength": 0, "local": 0}
    assert page.input_value("#token-input") == ""
    assert page.locator("#leaderboard tbody tr[data-model]").count() == 0
    o.shot("locked-refused")
    o.assert_no_console_errors(allow=REFUSED)


def test_locked_server_found_out_by_a_refused_read(open_page, locked_app):
    """Without whoami (an older server, a proxy that drops it) a read's 401 locks the page, and it stops asking."""
    url, _redis = locked_app
    o = open_page(_home(url), route=lambda route: route.abort("failed"), route_pattern="**/v1/whoami")
    page = o.page
    _wait(o, "TitanRay.app.snapshot().locked === true")
    assert page.locator("#locked").is_visible() and page.locator("#signin").is_visible()
    assert "The server said: this route needs the 'read' scope" in page.inner_text("#locked-reason")
    assert page.locator("#errors").is_hidden()  # a state, not an error
    assert page.locator("#leaderboard tbody tr[data-model]").count() == 0
    n = len(o.requests)
    time.sleep(3)  # longer than the event stream's first backoff: nothing more is asked
    assert [u for u in o.requests[n:] if "/v1/" in u] == []
    o.shot("locked-by-401")
    o.assert_no_console_errors(allow=(*REFUSED, "net::ERR_FAILED"))
