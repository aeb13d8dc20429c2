/* TitanRay dashboard: state, routing and live updates (TitanRay.app).

Routes (in the URL's hash, so the page works from a file too): #/ the leaderboard and equity curves,
#/model/NAME one model's portfolio and trades, #/experiments[/NAME] the A/B experiments.
Live: v1/events pushes leaderboard snapshots, fills and the run's status; the equity curves and
an open model page are fetched again when those say something changed (at most every
REFRESH_MS). After each (re)connection everything is fetched again, to catch up on what a dropped
stream missed. */
(function (root) {
  "use strict";
  const TR = root.TitanRay;
  const { h, fmt, api, views } = TR;
  const REFRESH_MS = 1500;
  const MAX_LIVE_FILLS = 60;
  const EXPERIMENTS_REFRESH_MS = 5000;
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
  };

  /* ------------------------------------------------------------------ throttled fetches */

  function throttled(fn) {
    let last = 0;
    let timer = null;
    return function run() {
      const wait = last + REFRESH_MS - Date.now();
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

  async function loadLeaderboard() {
    try {
      setLeaderboard(await api.get("v1/leaderboard"));
      clearError();
    } catch (err) {
      showError("leaderboard", err);
    }
  }

  async function loadEquity() {
    try {
      const body = await api.get("v1/equity?points=2000");
      app.equity.update(body);
      $("equity-empty").hidden = Object.keys(body.models || {}).length > 0;
    } catch (err) {
      showError("equity", err);
    }
  }

  const refreshEquity = throttled(loadEquity);
  const refreshModel = throttled(() => {
    if (state.route.view === "model") showModel(state.route.model, { quiet: true });
  });

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
    conn.textContent = { live: "● live", connecting: "connecting…", reconnecting: "reconnecting…", report: "report" }[value] || value;
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
      if (!quiet) box.replaceChildren(h("p", { class: "error" }, `Cannot show ${model}: ${err.message}`));
    }
  }

  async function showExperiments(name, { quiet } = {}) {
    const list = $("experiment-list");
    const detail = $("experiment-detail");
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
      if (!quiet) list.replaceChildren(h("p", { class: "error" }, "Cannot show the experiments: " + err.message));
    }
  }

  // the A/B counts and latencies change with every request: refetched while the view is open
  setInterval(() => {
    if (!api.isReport && state.route.view === "experiments" && !document.hidden) showExperiments(state.experiment, { quiet: true });
  }, EXPERIMENTS_REFRESH_MS);

  function route() {
    const parts = (location.hash.replace(/^#\/?/, "") || "").split("/").map(decodeURIComponent);
    const view = parts[0] === "model" && parts[1] ? "model" : parts[0] === "experiments" ? "experiments" : "overview";
    state.route = { view, model: view === "model" ? parts[1] : null };
    for (const section of document.querySelectorAll("main > .view")) section.hidden = section.id !== "view-" + view;
    for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === view);
    renderModelNav();
    if (view === "model") showModel(state.route.model);
    if (view === "experiments") showExperiments(parts[1]);
    window.scrollTo(0, 0);
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
      };
    },
  };

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
    } else {
      document.body.dataset.mode = "live";
      api.follow({
        state: setConnection,
        opened: () => {
          state.connections += 1;
          loadLeaderboard();
          loadEquity();
          refreshModel();
        },
        leaderboard: (body) => {
          state.snapshots += 1;
          setLeaderboard(body, true);
          refreshEquity();
        },
        fill: onFills,
        status: (body) => setStatus(body.status, true),
      });
    }
    loadLeaderboard();
    loadEquity();
    renderLiveFills();
    route();
  }

  TR.app = app;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})(window);
