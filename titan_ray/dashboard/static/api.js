/* TitanRay dashboard: where the data comes from (TitanRay.api).

Live: the JSON API beside the page (URLs relative to the page, so a Serve route prefix works) and
the server-sent events of v1/events. Report: the payloads that `titan-ray report` embedded in the
page as <script id="titan-ray-data" type="application/json">, answered by the same get(path).

Signed in (a bearer token pasted into the page), every request carries `Authorization: Bearer T`.
The token lives in this tab's sessionStorage only, under a key of the page's own path (two apps on
one origin keep their own); never in localStorage, a URL or the console. EventSource cannot send
headers: signed in, v1/events is followed with fetch() and a reader of text/event-stream instead. */
(function (root) {
  "use strict";
  const TR = root.TitanRay;

  class ApiError extends Error {
    /** status: the HTTP status (0: unreachable); detail: the server's reason; withToken: sent signed in;
    generation: which sign-in it was sent with (a newer sign-in makes an old refusal moot). */
    constructor(status, message, extra) {
      super(message);
      this.status = status;
      Object.assign(this, { detail: message, withToken: false, generation: 0, retryAfter: null }, extra || {});
    }
  }

  const embedded = document.getElementById("titan-ray-data");
  const REPORT = embedded ? JSON.parse(embedded.textContent) : null;

  /* ------------------------------------------------------------------ the token */

  const TOKEN_KEY = "titan-ray.token:" + new URL(".", location.href).pathname;
  let memoryToken = null; // where sessionStorage is refused (a sandboxed frame): this page's life only
  let generation = 0; // bumped at every sign-in and sign-out
  let pausedUntil = 0; // a 429's Retry-After: no request before then (the server asked)

  function storage() {
    try {
      return root.sessionStorage;
    } catch (_) {
      return null;
    }
  }

  function token() {
    if (REPORT) return null;
    const store = storage();
    try {
      return (store ? store.getItem(TOKEN_KEY) : memoryToken) || null;
    } catch (_) {
      return memoryToken;
    }
  }

  /** Keep `value` as the bearer token of this tab; null forgets it. */
  function setToken(value) {
    generation += 1;
    pausedUntil = 0; // rate limits are per identity: a new one has its own budget
    const store = storage();
    memoryToken = null;
    try {
      if (value) store.setItem(TOKEN_KEY, value);
      else if (store) store.removeItem(TOKEN_KEY);
    } catch (_) {
      memoryToken = value || null;
    }
  }

  function authHeaders(bearer, extra) {
    const headers = Object.assign({}, extra);
    if (bearer) headers.Authorization = "Bearer " + bearer;
    return headers;
  }

  /** The server's reason for a refusal: its JSON `detail`, else the status text. */
  async function reasonOf(response) {
    let detail = response.statusText || "HTTP " + response.status;
    try {
      const body = await response.json();
      if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) {
      /* not JSON: keep the status text */
    }
    return detail;
  }

  function retryAfterOf(response) {
    const seconds = Number(response.headers.get("Retry-After"));
    return Number.isFinite(seconds) && seconds > 0 ? seconds : null;
  }

  /* ------------------------------------------------------------------ requests */

  /** GET `path` with `bearer` (default: the signed-in token); the JSON body, or an ApiError. */
  async function request(path, bearer) {
    const mine = bearer === undefined; // the page's own identity (a 429 pauses its requests only)
    const sent = mine ? token() : bearer;
    const extra = { withToken: !!sent, generation };
    if (mine && Date.now() < pausedUntil) {
      const wait = Math.ceil((pausedUntil - Date.now()) / 1000);
      throw new ApiError(429, `${path}: waiting ${wait} s: the server's rate limit was reached (HTTP 429)`,
        Object.assign(extra, { detail: "rate limit reached", retryAfter: wait }));
    }
    let response;
    try {
      response = await fetch(path, { headers: authHeaders(sent, { Accept: "application/json" }), cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, `${path}: the server cannot be reached (${err.message})`, extra);
    }
    if (!response.ok) {
      const detail = await reasonOf(response);
      const retryAfter = response.status === 429 ? retryAfterOf(response) : null;
      if (retryAfter && mine && extra.generation === generation) pausedUntil = Math.max(pausedUntil, Date.now() + retryAfter * 1000);
      throw new ApiError(response.status, `${path}: HTTP ${response.status} ${detail}`,
        Object.assign(extra, { detail, retryAfter }));
    }
    return response.json();
  }

  const getLive = (path) => request(path);

  /** Who `bearer` proves to be (v1/whoami), and what the server asks for; an ApiError (401: the reason). */
  function whoami(bearer) {
    return request("v1/whoami", bearer === undefined ? undefined : bearer || null);
  }

  function getReport(path) {
    const route = path.split("?")[0];
    const parts = route.split("/").map(decodeURIComponent); // ["v1", "trades", "sma"]
    const tables = {
      leaderboard: () => REPORT.leaderboard,
      equity: () => REPORT.equity,
      portfolios: () => (REPORT.portfolios || {})[parts[2]],
      trades: () => (REPORT.trades || {})[parts[2]],
      decisions: () => (REPORT.why || {})[parts[2]],
      experiments: () => (parts[2] ? (REPORT.experiment_details || {})[parts[2]] : REPORT.experiments),
    };
    const value = tables[parts[1]] ? tables[parts[1]]() : undefined;
    if (value === undefined || value === null) {
      return Promise.reject(new ApiError(404, `this report does not include ${route}`));
    }
    return Promise.resolve(value);
  }

  /* ------------------------------------------------------------------ server-sent events */

  /** A text/event-stream parser (the HTML standard's rules): push(text) as chunks arrive, in any split;
  onEvent({type, data, lastEventId}) per dispatched event, onRetry(ms) per valid `retry:` field. */
  function sseParser(onEvent, onRetry) {
    let buffer = "";
    let started = false;
    let type = "";
    let data = [];
    let lastEventId = "";

    function line(text) {
      if (text === "") {
        if (data.length) onEvent({ type: type || "message", data: data.join("\n"), lastEventId });
        type = "";
        data = [];
        return;
      }
      if (text[0] === ":") return; // a comment (keep-alive)
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "id") {
        if (!value.includes("\0")) lastEventId = value;
      } else if (field === "retry") {
        if (/^\d+$/.test(value)) onRetry(parseInt(value, 10));
      }
    }

    return {
      push(text) {
        if (!started && text) {
          started = true;
          if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        }
        buffer += text;
        let start = 0;
        for (let i = 0; i < buffer.length; i++) {
          const c = buffer[i];
          if (c !== "\n" && c !== "\r") continue;
          if (c === "\r" && i === buffer.length - 1) break; // "\r\n" split across two chunks: wait for the next
          line(buffer.slice(start, i));
          if (c === "\r" && buffer[i + 1] === "\n") i += 1;
          start = i + 1;
        }
        buffer = buffer.slice(start);
      },
      get lastEventId() {
        return lastEventId;
      },
    };
  }

  const EVENTS = ["leaderboard", "fill", "status"];

  function deliver(handlers, name, text) {
    if (!EVENTS.includes(name)) return;
    let data;
    try {
      data = JSON.parse(text);
    } catch (_) {
      return; // a malformed message is skipped; the next snapshot repairs the page
    }
    handlers[name](data);
  }

  /* Follow v1/events. handlers: leaderboard(body), fill(list), status(body), state("connecting" |
  "live" | "reconnecting"), opened() (after each (re)connection: time to catch up on what was missed),
  denied(ApiError) (the fetch stream only: 401/403, not retried). Returns {kind, close()}.

  Anonymous: EventSource. The browser retries a dropped stream by itself while readyState is
  CONNECTING; a stream it gave up on (CLOSED: an HTTP error or a proxy that answered with something
  else) is opened again here, with a backoff from 1 s to 15 s. Signed in: fetch() with the bearer
  token, the same states and the same retries (a stream that ends: after the server's `retry:`; one
  that fails: the backoff, or a 429's Retry-After). */
  function follow(handlers) {
    const bearer = token();
    return bearer ? followFetch(handlers, bearer) : followEventSource(handlers);
  }

  function followEventSource(handlers) {
    let source = null;
    let timer = null;
    let delay = 1000;
    let stopped = false;

    function open() {
      source = new EventSource("v1/events");
      handlers.state("connecting");
      source.addEventListener("open", () => {
        delay = 1000;
        handlers.state("live");
        handlers.opened();
      });
      for (const name of EVENTS) source.addEventListener(name, (event) => deliver(handlers, name, event.data));
      source.addEventListener("error", () => {
        if (stopped) return;
        handlers.state("reconnecting");
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          clearTimeout(timer);
          timer = setTimeout(open, delay);
          delay = Math.min(delay * 2, 15000);
        }
      });
    }

    open();
    return {
      kind: "eventsource",
      close() {
        stopped = true;
        clearTimeout(timer);
        if (source) source.close();
      },
    };
  }

  function followFetch(handlers, bearer) {
    let controller = null;
    let timer = null;
    let delay = 1000;
    let retryMs = 3000; // until the server says (retry:), as a browser's EventSource
    let lastEventId = "";
    let stopped = false;

    function again(waitMs) {
      if (stopped) return;
      handlers.state("reconnecting");
      clearTimeout(timer);
      timer = setTimeout(open, waitMs);
    }

    function failed(retryAfter) {
      const wait = Math.max(delay, (retryAfter || 0) * 1000);
      delay = Math.min(delay * 2, 15000);
      again(wait);
    }

    async function open() {
      if (stopped) return;
      controller = new AbortController();
      handlers.state("connecting");
      let response;
      try {
        const headers = authHeaders(bearer, { Accept: "text/event-stream" });
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        response = await fetch("v1/events", { headers, cache: "no-store", signal: controller.signal });
      } catch (_) {
        if (!stopped) again(retryMs); // the network: EventSource would keep trying too
        return;
      }
      if (stopped) return;
      if (response.status === 401 || response.status === 403) {
        const detail = await reasonOf(response);
        stopped = true;
        if (handlers.denied) handlers.denied(new ApiError(response.status, `v1/events: HTTP ${response.status} ${detail}`,
          { detail, withToken: true, generation }));
        return;
      }
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok || !/^text\/event-stream/i.test(type) || !response.body) {
        const retryAfter = response.status === 429 ? retryAfterOf(response) : null;
        try {
          await response.body.cancel();
        } catch (_) {
          /* nothing to cancel */
        }
        failed(retryAfter);
        return;
      }
      delay = 1000;
      handlers.state("live");
      handlers.opened();
      const parser = sseParser((event) => {
        if (!stopped) deliver(handlers, event.type, event.data);
      }, (ms) => { retryMs = ms; });
      const reader = response.body.getReader();
      const decoder = new TextDecoder("utf-8");
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(decoder.decode(value, { stream: true }));
          lastEventId = parser.lastEventId;
        }
      } catch (_) {
        /* the connection dropped (or close() aborted it) */
      }
      again(retryMs); // the stream ended: open it again, as EventSource does
    }

    open();
    return {
      kind: "fetch",
      close() {
        stopped = true;
        clearTimeout(timer);
        if (controller) controller.abort();
      },
    };
  }

  TR.api = {
    ApiError,
    report: REPORT,
    isReport: REPORT !== null,
    get: REPORT ? getReport : getLive,
    whoami,
    token,
    setToken,
    generation: () => generation,
    follow,
    sseParser,
  };
})(window);
