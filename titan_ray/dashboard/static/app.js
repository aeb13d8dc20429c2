/* TitanRay dashboard: state, routing and live updates (TitanRay.app).

Routes (in the URL's hash, so the page works from a file too): #/ the leaderboard and equity curves,
#/model/NAME one model's portfolio and trades, #/experiments[/NAME] the A/B experiments, #/audit the
audit trail (live only).
Live: v1/events pushes leaderboard snapshots, fills and the run's status; the equity curves and
an open model page are fetched again when those say something changed (at most every
REFRESH_MS, or less often where the server's read rate limit is small). After each (re)connection
everything is fetched again, to catch up on what a dropped stream missed.
Sign-in: a bearer token pasted into the header's form is checked with v1/whoami and kept for the tab
(TitanRay.api). A server whose reads need a token (whoami's reads_need_token, or a read refused with
401) shows the "sign in" state instead of its data until a token with `read` is given. */
(function (root) {
  "use strict";
  const TR = root.TitanRay;
  const { h, fmt, api, views } = TR;
  const REFRESH_MS = 1500;
  const MAX_LIVE_FILLS = 60;
  const EXPERIMENTS_REFRESH_MS = 5000;
  const AUDIT_REFRESH_MS = 4000;
  const AUDIT_LIMIT = 50;
  // columns whose best value is the smallest: their first click sorts ascending
  const ASCENDING_FIRST = new Set(["model", "p_value", "max_drawdown_duration", "n_rejected"]);
  const $ = (id) => document.getElementById(id);

  const state = {
    leaderboard: null,
    status: "idle",
    sort: { key: null, dir: "desc" },
    liveFills: [],
    route: { view: "overview" },
    experiment: null,
    fillsSeen: 0, // fill events received, for tests and the header
    snapshots: 0, // leaderboard events received
    connections: 0, // times the event stream opened (1 + reconnections)
    identity: null, // v1/whoami of the signed-in token: {identity, auth, scopes, expires}; null signed out
    readsNeedToken: false, // the server said so (whoami), or a read answered 401
    locked: false, // reads are refused for lack of a token: the page shows "sign in" instead of data
    lockReason: "",
    auditRows: 0, // rows the audit trail shows
    readPace: 0, // ms per read the server's rate limit allows on average (whoami's rate_limits.read)
  };
  let follower = null; // the v1/events stream: {kind, close()}

  /* ------------------------------------------------------------------ throttled fetches */

  /** A refresh of `reads` requests at most every REFRESH_MS, and at most a third of the server's read budget. */
  function every(base, reads) {
    return Math.max(base, 3 * reads * state.readPace);
  }

  function throttled(fn, reads = 1) {
    let last = 0;
    let timer = null;
    return function run() {
      const wait = last + every(REFRESH_MS, reads) - Date.now();
      if (wait > 0) {
        if (!timer) timer = setTimeout(() => { timer = null; run(); }, wait);
        return;
      }
      last = Date.now();
      fn();
    };
  }

  function showError(where, err) {
    const box = $("errors");
    const text = `${where}: ${err && err.message ? err.message : err}`;
    box.replaceChildren(h("p", {}, text));
    box.hidden = false;
  }

  function clearError() {
    $("errors").hidden = true;
  }

  /** A read failed: a refusal for lack of a (valid) token locks the page or signs out; else said. True when handled. */
  function refused(err) {
    if (!err || (err.status !== 401 && !(err.status === 403 && state.readsNeedToken))) return false;
    if (err.withToken && err.generation !== api.generation()) return true; // sent with a token given up since
    if (err.withToken && err.status === 401) {
      // the token stopped working (expired, revoked, another key): forget it and say why
      signOut("Signed out: " + err.detail);
    } else {
      setLocked("The server said: " + err.detail);
    }
    return true;
  }

  function failed(where, err, quiet) {
    if (refused(err)) return;
    if (!quiet) showError(where, err);
  }

  async function loadLeaderboard() {
    if (state.locked) return;
    try {
      const body = await api.get("v1/leaderboard");
      if (state.locked) return;
      setLeaderboard(body);
      clearError();
    } catch (err) {
      failed("leaderboard", err);
    }
  }

  async function loadEquity() {
    if (state.locked) return;
    try {
      const body = await api.get("v1/equity?points=2000");
      if (state.locked) return;
      app.equity.update(body);
      $("equity-empty").hidden = Object.keys(body.models || {}).length > 0;
    } catch (err) {
      failed("equity", err);
    }
  }

  const refreshEquity = throttled(loadEquity);
  const refreshModel = throttled(() => {
    if (state.route.view === "model") showModel(state.route.model, { quiet: true });
  }, 2);

  /* ------------------------------------------------------------------ header and leaderboard */

  function setLeaderboard(body, fromEvent) {
    state.leaderboard = body;
    TR.registerModels((body.rows || []).map((r) => r.model));
    if (body.status) setStatus(body.status, fromEvent);
    $("run-id").textContent = body.run_id ? "run " + body.run_id : "";
    const progress = body.progress || {};
    const done = progress.bars_done || 0;
    const total = progress.bars_total;
    const frac = total ? Math.min(done / total, 1) : state.status === "finished" ? 1 : 0;
    $("progress-bar").style.width = (frac * 100).toFixed(1) + "%";
    $("progress-text").textContent = total ? `${fmt.int(done)} / ${fmt.int(total)} bars` : done ? `${fmt.int(done)} bars` : "";
    $("benchmark-note").textContent = body.benchmark
      ? `Significance: paired bootstrap test of each model's Sharpe ratio against the benchmark, ${body.benchmark}; ` +
        "▲ only where it rejects “no better than the benchmark”."
      : "No benchmark model in this arena: significance is not tested.";
    // why "—" stands for CAGR, Sharpe, ...: said once below the table too, for touch screens
    const short = [...new Set((body.rows || []).map(views.withheld).filter(Boolean))];
    $("sample-note").hidden = !short.length;
    $("sample-note").textContent = short.length
      ? "— CAGR, Sharpe, Sortino, Calmar, turnover and the benchmark test are withheld until the sample is " +
        "long enough to annualise: " + short.join("; ") + "."
      : "";
    renderLeaderboard();
    renderModelNav();
  }

  function renderLeaderboard() {
    if (!state.leaderboard) return;
    views.leaderboard($("leaderboard"), state.leaderboard, state.sort, (key) => {
      if (state.sort.key === key) state.sort.dir = state.sort.dir === "asc" ? "desc" : "asc";
      else state.sort = { key, dir: ASCENDING_FIRST.has(key) ? "asc" : "desc" };
      renderLeaderboard();
    });
  }

  /** `fromEvent`: the stream said so; a run that has just finished is then fetched whole once more. */
  function setStatus(status, fromEvent) {
    const changed = status !== state.status;
    state.status = status;
    const pill = $("status-pill");
    pill.textContent = status;
    pill.dataset.status = status;
    document.body.dataset.status = status;
    $("final-banner").hidden = status !== "finished";
    if (changed && fromEvent && status === "finished") {
      // the final leaderboard carries every metric and the significance test: fetch it whole
      loadLeaderboard();
      loadEquity();
      refreshModel();
    }
  }

  function setConnection(value) {
    const conn = $("conn");
    conn.dataset.state = value;
    conn.textContent = { live: "● live", connecting: "connecting…", reconnecting: "reconnecting…", report: "report",
      locked: "locked" }[value] || value;
  }

  function modelNames() {
    return ((state.leaderboard && state.leaderboard.rows) || []).map((r) => r.model);
  }

  function renderModelNav() {
    const names = modelNames();
    $("model-tabs").replaceChildren(...names.map((name) => h("a", {
      href: "#/model/" + encodeURIComponent(name),
      class: "chip" + (state.route.view === "model" && state.route.model === name ? " active" : ""),
    }, h("span", { class: "swatch", style: { background: TR.colorOf(name) } }), name)));
    const link = $("nav-models");
    link.href = names.length ? "#/model/" + encodeURIComponent(state.route.model || names[0]) : "#/";
    // coloured once the run's models are known (registerModels), so the colour matches the chart's
    if (names.length && state.route.view === "model") $("model-swatch").style.background = TR.colorOf(state.route.model);
  }

  /* ------------------------------------------------------------------ live fills */

  function onFills(list) {
    if (!Array.isArray(list) || !list.length) return;
    state.fillsSeen += list.length;
    state.liveFills = list.concat(state.liveFills).slice(0, MAX_LIVE_FILLS);
    renderLiveFills();
    if (state.route.view === "model" && list.some((f) => views.modelOf(f) === state.route.model)) refreshModel();
  }

  function renderLiveFills() {
    $("live-fills").replaceChildren(views.fills(state.liveFills, openWhy, true));
    $("live-fills-count").textContent = state.fillsSeen ? fmt.int(state.fillsSeen) + " received" : "";
  }

  /* ------------------------------------------------------------------ pages */

  async function showModel(model, { quiet } = {}) {
    $("model-title").textContent = model;
    const box = $("model-body");
    if (!quiet) box.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    try {
      const name = encodeURIComponent(model);
      const [portfolio, trades] = await Promise.all([api.get(`v1/portfolios/${name}`), api.get(`v1/trades/${name}?limit=200`)]);
      if (state.route.view !== "model" || state.route.model !== model) return; // the user moved on
      box.replaceChildren(...views.modelPage(portfolio, trades, openWhy));
      box.dataset.model = model;
    } catch (err) {
      if (refused(err)) return;
      if (!quiet) box.replaceChildren(h("p", { class: "error" }, `Cannot show ${model}: ${err.message}`));
    }
  }

  async function showExperiments(name, { quiet } = {}) {
    const list = $("experiment-list");
    const detail = $("experiment-detail");
    fetchedAt.experiments = Date.now();
    try {
      const body = await api.get("v1/experiments");
      const names = (body.experiments || []).map((e) => e.name);
      const selected = name && names.includes(name) ? name : names[0];
      list.replaceChildren(views.experimentList(body, selected, (n) => { location.hash = "#/experiments/" + encodeURIComponent(n); }));
      detail.hidden = !selected;
      if (!selected) return;
      state.experiment = selected;
      const exp = await api.get("v1/experiments/" + encodeURIComponent(selected));
      detail.replaceChildren(...views.experiment(exp, location.href.split("#")[0]));
    } catch (err) {
      if (refused(err)) return;
      if (!quiet) list.replaceChildren(h("p", { class: "error" }, "Cannot show the experiments: " + err.message));
    }
  }

  /** Refetch what `view` shows every `base` ms (slower where the server's read budget is small) while it is open. */
  const fetchedAt = {}; // view -> when its data was last asked for
  function whileOpen(view, base, reads, fn) {
    setInterval(() => {
      if (api.isReport || state.locked || state.route.view !== view || document.hidden) return;
      if (Date.now() - (fetchedAt[view] || 0) < every(base, reads) - 100) return;
      fn();
    }, 1000);
  }

  // the A/B counts and latencies change with every request: refetched while the view is open
  whileOpen("experiments", EXPERIMENTS_REFRESH_MS, 2, () => showExperiments(state.experiment, { quiet: true }));
  whileOpen("audit", AUDIT_REFRESH_MS, 1, () => showAudit({ quiet: true }));

  function route() {
    const parts = (location.hash.replace(/^#\/?/, "") || "").split("/").map(decodeURIComponent);
    const view = parts[0] === "model" && parts[1] ? "model" : parts[0] === "experiments" ? "experiments"
      : parts[0] === "audit" && !api.isReport ? "audit" : "overview";
    state.route = { view, model: view === "model" ? parts[1] : null };
    for (const section of document.querySelectorAll("main > .view")) section.hidden = section.id !== "view-" + view;
    for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === view);
    renderModelNav();
    if (!state.locked) {
      if (view === "model") showModel(state.route.model);
      if (view === "experiments") showExperiments(parts[1]);
    }
    if (view === "audit") showAudit();
    window.scrollTo(0, 0);
  }

  /* ------------------------------------------------------------------ audit trail */

  const holds = (scope) => !!state.identity && (state.identity.scopes || []).includes(scope);

  function auditNote(text, reason, withButton) {
    state.auditRows = 0;
    const note = h("p", { class: "empty audit-note", dataset: { reason } }, text);
    $("audit-body").replaceChildren(...(withButton
      ? [note, h("button", { type: "button", class: "btn primary", onclick: () => openSignIn() }, "Sign in")] : [note]));
  }

  /** The audit trail (admin only): the newest AUDIT_LIMIT entries; a note instead without an admin token. */
  async function showAudit({ quiet } = {}) {
    if (api.isReport) return;
    if (!state.identity) {
      auditNote("Sign in with an admin token to see the audit trail.", "anonymous", true);
      return;
    }
    if (!holds("admin")) {
      auditNote(`The audit trail needs an admin token; the token of ${state.identity.identity} holds ` +
        `${(state.identity.scopes || []).join(", ") || "no scopes"}.`, "needs-admin", false);
      return;
    }
    const box = $("audit-body");
    if (!quiet && !box.querySelector("table.audit")) box.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    const asked = api.generation();
    fetchedAt.audit = Date.now();
    try {
      const body = await api.get(`v1/audit?limit=${AUDIT_LIMIT}`);
      if (state.route.view !== "audit" || asked !== api.generation()) return; // moved on, or signed out
      const entries = body.entries || [];
      box.replaceChildren(views.audit(entries));
      state.auditRows = entries.length;
    } catch (err) {
      if (err.status === 403) {
        auditNote("The audit trail needs an admin token: " + err.detail, "needs-admin", false);
      } else if (!refused(err) && !quiet) {
        state.auditRows = 0;
        box.replaceChildren(h("p", { class: "error" }, "Cannot show the audit trail: " + err.message));
      }
    }
  }

  /* ------------------------------------------------------------------ "Why?" */

  async function openWhy(decisionId) {
    const dialog = $("why");
    const body = $("why-body");
    $("why-title").textContent = "Why?";
    body.replaceChildren(h("p", { class: "loading" }, "Loading the explanation…"));
    dialog.dataset.decisionId = decisionId;
    delete dialog.dataset.loaded;
    if (!dialog.open) dialog.showModal();
    try {
      const why = await api.get(`v1/decisions/${encodeURIComponent(decisionId)}/why`);
      if (dialog.dataset.decisionId !== decisionId) return;
      $("why-title").textContent = `Why did ${why.model} trade ${why.symbol}?`;
      body.replaceChildren(...views.why(why));
      dialog.dataset.loaded = decisionId;
    } catch (err) {
      body.replaceChildren(h("p", { class: "error" }, `No explanation for ${decisionId}: ${err.message}`));
    }
  }

  /* ------------------------------------------------------------------ start */

  const app = {
    state,
    equity: null,
    openWhy,
    /** What tests and curious users can ask the page: what it shows right now. */
    snapshot() {
      return {
        status: state.status,
        models: modelNames(),
        equitySeries: app.equity ? app.equity.seriesCount() : 0,
        fillsSeen: state.fillsSeen,
        snapshots: state.snapshots,
        connections: state.connections,
        connection: $("conn").dataset.state,
        stream: follower ? follower.kind : null,
        signedIn: !!state.identity && api.token() !== null,
        identity: state.identity ? state.identity.identity : null,
        scopes: state.identity ? [...(state.identity.scopes || [])] : [],
        readsNeedToken: state.readsNeedToken,
        locked: state.locked,
        auditRows: state.auditRows,
      };
    },
    /** After a change this page made: the audit trail shows it at once. */
    refreshAudit: () => showAudit({ quiet: true }),
  };

  /* ------------------------------------------------------------------ sign-in */

  function renderAuth() {
    const who = state.identity;
    $("auth").dataset.signedIn = String(!!who);
    $("who").hidden = !who;
    $("signin-open").hidden = !!who;
    $("signout").hidden = !who;
    $("who-name").textContent = who ? who.identity : "";
    $("who-scopes").replaceChildren(...(who ? who.scopes || [] : []).map((scope) => h("span", { class: "scope" }, scope)));
    $("who").title = who ? `${who.identity} (${who.auth}): ${(who.scopes || []).join(", ") || "no scopes"}` +
      (who.expires ? `, until ${fmt.seconds(who.expires)}` : "") : "";
  }

  function setIdentity(who) {
    state.identity = who && who.auth !== "anonymous" ? who : null;
    renderAuth();
  }

  function learn(who) {
    state.readsNeedToken = !!who.reads_need_token;
    const read = (who.rate_limits || {}).read;
    state.readPace = read && read.requests > 0 ? (1000 * read.period_s) / read.requests : 0;
  }

  function openSignIn(message) {
    const form = $("signin");
    form.hidden = false;
    const box = $("signin-error");
    box.textContent = message || "";
    box.hidden = !message;
    $("token-input").focus();
  }

  function closeSignIn() {
    $("signin").hidden = true;
    $("signin-error").hidden = true;
    $("token-input").value = "";
  }

  /** Check `raw` with v1/whoami; keep it only when the server accepts it. */
  async function signIn(raw) {
    const token = String(raw || "").trim().replace(/^Bearer\s+/i, "");
    const input = $("token-input");
    input.value = ""; // a refused token is not kept anywhere, not even in the field
    if (!token) {
      openSignIn("Paste a bearer token first.");
      return;
    }
    const button = $("signin-submit");
    button.disabled = true;
    let who;
    try {
      who = await api.whoami(token);
    } catch (err) {
      openSignIn(err.status === 401 ? "Not signed in: " + err.detail : "Cannot sign in: " + err.message);
      return;
    } finally {
      button.disabled = false;
    }
    if (!who || who.auth === "anonymous") {
      openSignIn("Not signed in: the server did not recognise a token.");
      return;
    }
    api.setToken(token);
    setIdentity(who);
    learn(who);
    closeSignIn();
    if (state.readsNeedToken && !holds("read")) {
      setLocked(`The token of ${who.identity} holds ${(who.scopes || []).join(", ") || "no scopes"}; reads need 'read'.`);
      return;
    }
    unlock();
    resume(); // the stream again, now with the token (fetch), and everything shown fetched with it
  }

  /** Forget the token; `message` (why, when the page did it) is shown in the sign-in form. */
  function signOut(message) {
    api.setToken(null);
    setIdentity(null);
    if (message) openSignIn(message);
    if (state.readsNeedToken) {
      setLocked("Signed out.");
    } else {
      resume(); // anonymous again: EventSource, and the data as anyone sees it
    }
  }

  /** Reads need a token the page does not have: say so, show the sign-in form, stop the stream, drop the data. */
  function setLocked(reason) {
    state.readsNeedToken = true;
    stopFollowing();
    setConnection("locked");
    const first = !state.locked;
    state.locked = true;
    state.lockReason = reason || "";
    document.body.dataset.locked = "true";
    $("locked").hidden = false;
    $("locked-reason").textContent = reason || "";
    clearError();
    state.leaderboard = null;
    $("leaderboard").replaceChildren();
    $("progress-text").textContent = "";
    state.liveFills = [];
    renderLiveFills();
    if (app.equity) app.equity.clear();
    $("model-body").replaceChildren();
    $("experiment-list").replaceChildren();
    $("experiment-detail").replaceChildren();
    renderModelNav();
    if (state.route.view === "audit") showAudit();
    if (first && $("signin").hidden) openSignIn();
  }

  function unlock() {
    state.locked = false;
    state.lockReason = "";
    delete document.body.dataset.locked;
    $("locked").hidden = true;
  }

  function stopFollowing() {
    if (follower) follower.close();
    follower = null;
  }

  function startFollowing() {
    stopFollowing();
    follower = api.follow({
      state: setConnection,
      opened: () => {
        state.connections += 1;
        loadLeaderboard();
        loadEquity();
        refreshModel();
      },
      leaderboard: (body) => {
        if (state.locked) return;
        state.snapshots += 1;
        setLeaderboard(body, true);
        refreshEquity();
      },
      fill: (list) => {
        if (!state.locked) onFills(list);
      },
      status: (body) => setStatus(body.status, true),
      denied: (err) => refused(err) || showError("events", err),
    });
  }

  /** Follow the stream and (re)load what the page shows. */
  function resume() {
    startFollowing();
    loadLeaderboard();
    loadEquity();
    route();
  }

  /** Live start: who the stored token proves (and whether reads need one), then the data, or "sign in". */
  async function startLive() {
    document.body.dataset.mode = "live";
    renderAuth();
    let who = null;
    try {
      who = await api.whoami();
    } catch (err) {
      if (err.status === 401 && err.withToken) {
        // the token kept from earlier is no longer accepted (expired, say): forget it, ask again
        api.setToken(null);
        openSignIn("Signed out: " + err.detail);
        try {
          who = await api.whoami(null);
        } catch (_) {
          who = null;
        }
      }
      // no whoami (unreachable, an older server): carry on; a read's 401 says whether reads need a token
    }
    if (who) {
      setIdentity(who);
      learn(who);
    }
    if (state.readsNeedToken && !holds("read")) {
      setLocked(state.identity ? `The token of ${state.identity.identity} lacks the 'read' scope.`
        : "v1/whoami says reads need a bearer token here.");
      route();
      return;
    }
    resume();
  }

  function start() {
    app.equity = new TR.EquityChart($("equity-chart"), $("equity-legend"));
    $("why-close").addEventListener("click", () => $("why").close());
    $("why").addEventListener("click", (event) => {
      // a click on the backdrop (outside the dialog's box) closes it
      const box = event.currentTarget.getBoundingClientRect();
      const inside = event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top &&
        event.clientY <= box.bottom;
      if (event.target === event.currentTarget && !inside) event.currentTarget.close();
    });
    window.addEventListener("hashchange", route);
    $("signin-open").addEventListener("click", () => ($("signin").hidden ? openSignIn() : closeSignIn()));
    $("locked-signin").addEventListener("click", () => openSignIn());
    $("signin-cancel").addEventListener("click", closeSignIn);
    $("signout").addEventListener("click", () => signOut());
    $("signin").addEventListener("submit", (event) => {
      event.preventDefault();
      signIn($("token-input").value);
    });
    if (api.isReport) {
      document.body.dataset.mode = "report";
      setConnection("report");
      const meta = api.report.meta || {};
      const facts = [
        meta.seed !== undefined ? `seed ${meta.seed}` : null,
        meta.n_symbols ? `${meta.n_symbols} symbols` : null,
        meta.n_timestamps ? `${fmt.int(meta.n_timestamps)} × ${meta.frequency || "?"} bars` : null,
        meta.data_source || null,
        meta.code_version ? `code ${meta.code_version}` : null,
      ].filter(Boolean);
      $("report-note").textContent = `Report of ${meta.run_dir || "a finished run"}` +
        (facts.length ? ` (${facts.join(" · ")})` : "") +
        (meta.generated ? `, written ${fmt.time(meta.generated)}` : "") + ". Opens without a server.";
      loadLeaderboard();
      loadEquity();
      renderLiveFills();
      route();
    } else {
      renderLiveFills();
      startLive();
    }
  }

  TR.app = app;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})(window);
