/* TitanRay dashboard: the tables and panels (TitanRay.views). Each render function takes a payload
of the JSON API (BRIEF's shapes) and returns or fills DOM nodes; none of them fetches. */
(function (root) {
  "use strict";
  const TR = root.TitanRay;
  const { h, fmt } = TR;

  /* ---------------------------------------------------------------- leaderboard */

  // Every metric of DESIGN.md's leaderboard. `alt` is the live snapshot's name for the same number.
  // `annualised`: withheld ("—", the reason on hover) while the row's sample_too_small is true
  // (titan_ray/metrics/sample.py: the longer of 30 returns and one trading day of bars).
  const COLUMNS = [
    { key: "model", label: "Model", text: true },
    { key: "final_equity", alt: "equity", label: "Equity", fmt: fmt.money },
    { key: "total_return", label: "Return", fmt: fmt.signedPct },
    { key: "cagr", label: "CAGR", fmt: fmt.signedPct, annualised: true },
    { key: "sharpe", label: "Sharpe", fmt: fmt.ratio, annualised: true },
    { key: "sortino", label: "Sortino", fmt: fmt.ratio, annualised: true },
    { key: "calmar", label: "Calmar", fmt: fmt.ratio, annualised: true },
    { key: "max_drawdown", label: "Max DD", fmt: fmt.pct },
    { key: "max_drawdown_duration", label: "DD bars", fmt: fmt.int, title: "longest drawdown, in bars" },
    { key: "profit_factor", label: "Profit factor", fmt: fmt.ratio },
    { key: "win_rate", label: "Win rate", fmt: (x) => fmt.pct(x, 1) },
    { key: "n_trades", label: "Trades", fmt: fmt.int, title: "closed round trips" },
    { key: "n_orders", label: "Orders", fmt: fmt.int },
    { key: "n_rejected", label: "Rejected", fmt: fmt.int },
    { key: "turnover", label: "Turnover", fmt: (x) => (fmt.finite(x) ? fmt.ratio(x, 1) + "×" : fmt.DASH), annualised: true,
      title: "annualised one-way turnover: traded value / mean equity / 2, per year" },
    { key: "exposure", label: "Exposure", fmt: (x) => fmt.pct(x, 1), title: "average invested fraction" },
    { key: "var_95", label: "VaR 95%", fmt: fmt.signedPct,
      title: "historical 95% value at risk of one bar's return (negative: a loss); docs/risk.md" },
    { key: "cvar_95", label: "CVaR 95%", fmt: fmt.signedPct, title: "mean of the worst 5% of bar returns" },
    { key: "implementation_shortfall", label: "Shortfall", fmt: (x) => (fmt.finite(x) ? fmt.ratio(x, 1) + " bps" : fmt.DASH),
      title: "implementation shortfall: the fills against the decision's close, commission included, in bps of the arrival notional" },
    { key: "p_value", alt: "sharpe_vs_benchmark_p", label: "vs benchmark", sig: true, annualised: true,
      title: "paired bootstrap test of “Sharpe ≤ the benchmark's”: ▲ where it is rejected; p-value beside" },
  ];

  /** An LLM model's badges (docs/llm.md): "llm" with its requests, tokens, latency and cost on hover, and
  "contaminated" when it decided on bars before its knowledge cutoff. Other rows: none. */
  function llmBadges(row) {
    if (row.llm_calls === undefined) return null;
    const usage = `LLM: ${row.llm_calls} requests (${row.llm_failures} failed), ${row.llm_tokens} tokens, ` +
      `mean latency ${row.llm_latency_s ?? "—"} s, cost ${row.llm_cost}`;
    return [
      h("span", { class: "badge muted", title: usage }, "llm"),
      row.contaminated ? h("span", {
        class: "badge bad",
        title: `${row.contaminated_bars} decision bars before the model's knowledge cutoff (${row.knowledge_cutoff}): ` +
          "it may have been trained on what came next",
      }, "contaminated: " + row.contaminated_bars) : null,
    ];
  }

  /** Why the row's annualised figures are withheld, or null when they are shown. */
  function withheld(row) {
    if (row.sample_too_small !== true) return null;
    return row.sample_note || "too few returns to annualise";
  }

  /** The "—" of a withheld figure, the reason on hover. */
  function withheldMark(row) {
    return h("span", { class: "muted withheld", title: "withheld: " + withheld(row) }, fmt.DASH);
  }

  function cell(row, col) {
    const value = row[col.key];
    return value === undefined && col.alt ? row[col.alt] : value;
  }

  function sortRows(rows, sort) {
    if (!sort.key) return rows.slice(); // the server's order: its ranking
    const col = COLUMNS.find((c) => c.key === sort.key);
    const sign = sort.dir === "asc" ? 1 : -1;
    const keyed = rows.map((row, i) => ({ row, i, v: cell(row, col) }));
    keyed.sort((a, b) => {
      const av = a.v, bv = b.v;
      const aMissing = av === null || av === undefined || (typeof av === "number" && !Number.isFinite(av));
      const bMissing = bv === null || bv === undefined || (typeof bv === "number" && !Number.isFinite(bv));
      if (aMissing || bMissing) return aMissing === bMissing ? a.i - b.i : aMissing ? 1 : -1; // missing last
      if (av < bv) return -sign;
      if (av > bv) return sign;
      return a.i - b.i;
    });
    return keyed.map((k) => k.row);
  }

  /** The significance marker: ▲ where the model's Sharpe beats the benchmark's at the test's level. */
  function significance(row, benchmark, col) {
    const p = cell(row, col);
    if (benchmark && row.model === benchmark) {
      return h("span", { class: "badge bench", title: "the yardstick every model is tested against" }, "benchmark");
    }
    if (withheld(row)) return withheldMark(row);
    if (row.beats_benchmark === true) {
      return h("span", {
        class: "badge good sig-beats",
        title: `Sharpe beats ${benchmark || "the benchmark"}'s: paired bootstrap p = ${fmt.pvalue(p)}`,
      }, "▲ p " + fmt.pvalue(p));
    }
    if (fmt.finite(p)) {
      return h("span", { class: "muted", title: `not significant: p = ${fmt.pvalue(p)}` }, "p " + fmt.pvalue(p));
    }
    return h("span", { class: "muted", title: "not tested (too few bars yet)" }, fmt.DASH);
  }

  /** Fill `table` with the leaderboard body; `sort` = {key, dir}; `onSort(key)` on a header click. */
  function leaderboard(table, body, sort, onSort) {
    const benchmark = body.benchmark;
    const head = h("tr", {}, h("th", { class: "rank", scope: "col" }, "#"), COLUMNS.map((col) => {
      const active = sort.key === col.key;
      return h("th", {
        scope: "col",
        class: col.text ? "text" : "num",
        title: col.title,
        "aria-sort": active ? (sort.dir === "asc" ? "ascending" : "descending") : "none",
        dataset: { key: col.key },
      }, h("button", { type: "button", class: "sort", onclick: () => onSort(col.key) }, col.label,
        h("span", { class: "arrow" }, active ? (sort.dir === "asc" ? "▲" : "▼") : "")));
    }));
    const rank = new Map((body.rows || []).map((row, i) => [row.model, i + 1]));
    const rows = sortRows(body.rows || [], sort).map((row) => h("tr", {
      dataset: { model: row.model },
      class: row.beats_benchmark === true ? "beats" : null,
    }, h("td", { class: "rank" }, rank.get(row.model)), COLUMNS.map((col) => {
      if (col.key === "model") {
        return h("td", { class: "text model", dataset: { key: "model" } }, h("span", { class: "model-cell" },
          h("span", { class: "swatch", style: { background: TR.colorOf(row.model) } }),
          h("a", { href: "#/model/" + encodeURIComponent(row.model) }, row.model),
          row.halted ? h("span", { class: "badge bad", title: "trading halted" }, "halted: " + row.halted) : null,
          llmBadges(row)));
      }
      if (col.sig) return h("td", { class: "num sig", dataset: { key: col.key } }, significance(row, benchmark, col));
      if (col.annualised && withheld(row)) {
        return h("td", { class: "num withheld-cell", title: "withheld: " + withheld(row), dataset: { key: col.key } },
          withheldMark(row));
      }
      const value = cell(row, col);
      const cls = ["num"];
      if (["total_return", "cagr"].includes(col.key) && fmt.finite(value)) cls.push(value >= 0 ? "pos" : "neg");
      return h("td", { class: cls.join(" "), dataset: { key: col.key } }, col.fmt(value));
    })));
    table.replaceChildren(h("thead", {}, head), h("tbody", {}, rows.length ? rows : h("tr", {},
      h("td", { colspan: COLUMNS.length + 1, class: "empty" }, "No models yet: the arena has not started."))));
  }

  /* ---------------------------------------------------------------- tables */

  /** A table from column specs [{label, value(row) -> node|text, num}] and rows; `empty` when none. */
  function table(columns, rows, empty, attrs) {
    return h("div", { class: "table-wrap" }, h("table", attrs || {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: cls(c) }, c.label)))),
      h("tbody", {}, rows.length ? rows.map((row) => h("tr", c_attrs(row),
        columns.map((c) => h("td", { class: cls(c) }, c.value(row)))))
        : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)))));
  }

  const cls = (c) => (c.num ? "num" : "text") + (c.sticky ? " sticky-right" : "");
  const c_attrs = (row) => (row && row.decision_id ? { dataset: { decisionId: row.decision_id } } : {});

  const side = (s) => h("span", { class: "side " + String(s).toLowerCase() }, s);
  const signed = (x) => h("span", { class: fmt.finite(x) ? (x >= 0 ? "pos" : "neg") : "" }, fmt.signedMoney(x));

  function whyButton(decisionId, onWhy) {
    return h("button", {
      type: "button", class: "why", title: "why did the model trade?", dataset: { decisionId },
      onclick: () => onWhy(decisionId),
    }, "Why?");
  }

  /** The trade list: fills, newest first, each with its "Why?" button. */
  function fills(list, onWhy, withModel) {
    const columns = [
      { label: "Time", value: (f) => fmt.time(f.timestamp) },
      withModel ? { label: "Model", value: (f) => modelOf(f) } : null,
      { label: "Symbol", value: (f) => f.symbol },
      { label: "Side", value: (f) => side(f.side) },
      { label: "Qty", num: true, value: (f) => fmt.qty(f.quantity) },
      { label: "Price", num: true, value: (f) => fmt.price(f.price) },
      { label: "Commission", num: true, value: (f) => fmt.money(f.commission) },
      { label: "", sticky: true, value: (f) => (f.decision_id ? whyButton(f.decision_id, onWhy) : fmt.DASH) },
    ].filter(Boolean);
    return table(columns, newestFirst(list), "No fills yet.", { class: "fills" });
  }

  const modelOf = (f) => f.model;

  function newestFirst(list) {
    return list.map((x, i) => ({ x, i, t: (fmt.toDate(x.timestamp || x.exit_time) || new Date(0)).getTime() }))
      .sort((a, b) => b.t - a.t || b.i - a.i).map((k) => k.x);
  }

  /** The per-model page: portfolio, positions, trades (fills) with "Why?", round trips, orders, rejections. */
  function modelPage(portfolio, trades, onWhy) {
    const positions = portfolio.positions || [];
    const unrealized = positions.reduce((sum, p) => sum + (fmt.finite(p.unrealized_pnl) ? p.unrealized_pnl : 0), 0);
    const orders = trades.orders || [];
    const rejected = orders.filter((o) => o.status === "REJECTED");
    const stat = (label, value, cls) => h("div", { class: "stat" }, h("div", { class: "stat-label" }, label),
      h("div", { class: "stat-value " + (cls || "") }, value));
    return [
      h("div", { class: "stats" },
        stat("Equity", fmt.money(portfolio.equity)),
        stat("Cash", fmt.money(portfolio.cash)),
        stat("Realized P&L", fmt.signedMoney(portfolio.realized_pnl), portfolio.realized_pnl >= 0 ? "pos" : "neg"),
        stat("Unrealized P&L", fmt.signedMoney(unrealized), unrealized >= 0 ? "pos" : "neg"),
        stat("Status", portfolio.halted ? "halted: " + portfolio.halted : "trading", portfolio.halted ? "neg" : "")),
      section("Positions", positions.length, table([
        { label: "Symbol", value: (p) => p.symbol },
        { label: "Qty", num: true, value: (p) => fmt.qty(p.quantity) },
        { label: "Avg cost", num: true, value: (p) => fmt.price(p.avg_cost) },
        { label: "Mark", num: true, value: (p) => fmt.price(p.mark) },
        { label: "Value", num: true, value: (p) => fmt.money(p.market_value) },
        { label: "Unrealized", num: true, value: (p) => signed(p.unrealized_pnl) },
        { label: "Weight", num: true, value: (p) => fmt.weight(p.weight) },
      ], positions, "No open positions.", { class: "positions" })),
      section("Trades", (trades.fills || []).length, fills(trades.fills || [], onWhy, false), "fills, newest first"),
      section("Round trips", (trades.round_trips || []).length, table([
        { label: "Symbol", value: (t) => t.symbol },
        { label: "Entry", value: (t) => fmt.time(t.entry_time) },
        { label: "Exit", value: (t) => fmt.time(t.exit_time) },
        { label: "Qty", num: true, value: (t) => fmt.qty(t.quantity) },
        { label: "Entry price", num: true, value: (t) => fmt.price(t.entry_price) },
        { label: "Exit price", num: true, value: (t) => fmt.price(t.exit_price) },
        { label: "P&L", num: true, value: (t) => signed(t.pnl) },
      ], newestFirst(trades.round_trips || []), "No closed round trips yet.", { class: "round-trips" })),
      section("Orders", orders.length, table([
        { label: "Time", value: (o) => fmt.time(o.timestamp) },
        { label: "Symbol", value: (o) => o.symbol },
        { label: "Side", value: (o) => side(o.side) },
        { label: "Qty", num: true, value: (o) => fmt.qty(o.quantity) },
        { label: "Status", value: (o) => h("span", { class: "status " + String(o.status).toLowerCase() }, o.status) },
        { label: "", sticky: true, value: (o) => (o.decision_id ? whyButton(o.decision_id, onWhy) : "") },
      ], newestFirst(orders), "No orders yet.", { class: "orders" })),
      section("Rejections", rejected.length, table([
        { label: "Time", value: (o) => fmt.time(o.timestamp) },
        { label: "Symbol", value: (o) => o.symbol },
        { label: "Side", value: (o) => side(o.side) },
        { label: "Qty", num: true, value: (o) => fmt.qty(o.quantity) },
        { label: "Reason", value: (o) => h("code", {}, o.reason || fmt.DASH) },
        { label: "Detail", value: (o) => o.detail || "" },
      ], newestFirst(rejected), "No rejected orders.", { class: "rejections" })),
    ];
  }

  function section(title, count, content, note) {
    return h("section", { class: "card", dataset: { section: title.toLowerCase().replace(/ /g, "-") } },
      h("h2", {}, title, h("span", { class: "count" }, count), note ? h("span", { class: "note" }, note) : null),
      content);
  }

  /* ---------------------------------------------------------------- "Why?" */

  /** The explanation of one decision: the sentence, the attribution bars, the inputs. */
  function why(body) {
    const features = (body.features || []).slice();
    const attributed = features.filter((f) => fmt.finite(f.attribution) && f.attribution !== 0);
    const scale = Math.max(1e-300, ...attributed.map((f) => Math.abs(f.attribution)));
    const bars = attributed.sort((a, b) => Math.abs(b.attribution) - Math.abs(a.attribution)).map((f) => {
      const width = (Math.abs(f.attribution) / scale) * 50 + "%";
      const positive = f.attribution > 0;
      return h("div", { class: "attr-row", dataset: { feature: f.name } },
        h("div", { class: "attr-name", title: f.name }, f.name),
        h("div", { class: "attr-track" }, h("div", { class: "attr-axis" }), h("div", {
          class: "attr-bar " + (positive ? "pos" : "neg"),
          style: positive ? { left: "50%", width } : { right: "50%", width },
        })),
        h("div", { class: "attr-value num " + (positive ? "pos" : "neg") }, fmt.any(f.attribution)));
    });
    const move = (body.new_weight || 0) - (body.old_weight || 0);
    return [
      h("p", { class: "why-sentence" }, body.sentence || "(no sentence)"),
      h("dl", { class: "facts" },
        fact("Model", body.model), fact("Symbol", body.symbol), fact("Decided at", fmt.time(body.timestamp)),
        fact("Weight", h("span", {}, fmt.weight(body.old_weight), " → ", h("b", { class: move >= 0 ? "pos" : "neg" },
          fmt.weight(body.new_weight)))),
        fact("Price", fmt.price(body.price)), fact("Method", h("code", {}, body.method)),
        fact("Base value", fmt.any(body.base_value)), fact("Decision", h("code", {}, body.decision_id))),
      h("h3", {}, "Attributions", h("span", { class: "note" }, "contribution of each input, in the method's units")),
      bars.length ? h("div", { class: "attr-bars" }, bars)
        : h("p", { class: "muted" }, `The ${body.method} method gives no attributions: the inputs below are the whole reason.`),
      h("h3", {}, "Inputs"),
      table([
        { label: "Feature", value: (f) => f.name },
        { label: "Value", num: true, value: (f) => fmt.any(f.value) },
        { label: "Attribution", num: true, value: (f) => fmt.any(f.attribution) },
      ], features, "This decision recorded no inputs.", { class: "inputs" }),
    ];
  }

  const fact = (label, value) => h("div", {}, h("dt", {}, label), h("dd", {}, value));

  /* ---------------------------------------------------------------- experiments */

  function experimentList(body, selected, onSelect) {
    const list = body.experiments || [];
    if (!list.length) {
      return h("p", { class: "empty" }, "No A/B experiments are configured on this server.");
    }
    return h("div", { class: "exp-list" }, list.map((exp) => h("button", {
      type: "button", class: "exp-item" + (exp.name === selected ? " active" : ""), dataset: { experiment: exp.name },
      onclick: () => onSelect(exp.name),
    }, h("b", {}, exp.name), h("span", { class: "muted" }, `${(exp.arms || []).length} arms`),
    h("span", { class: "weights" }, (exp.arms || []).map((a) => h("span", {
      class: "weight-seg", title: `${a.name}: ${fmt.weight(a.weight)}`,
      style: { flexGrow: String(Math.max(a.weight || 0, 0.0001)), background: TR.colorOf("arm:" + a.name) },
    }))))));
  }

  // how an arm's arena metrics read (the rest print as they come)
  const METRIC_FORMATS = {
    final_equity: fmt.money, total_return: fmt.signedPct, sharpe: fmt.ratio, sortino: fmt.ratio,
    max_drawdown: fmt.pct, win_rate: (x) => fmt.pct(x, 1), turnover: (x) => (fmt.finite(x) ? fmt.ratio(x, 1) + "×" : fmt.DASH),
    n_trades: fmt.int,
  };
  const HIDDEN_METRICS = new Set(["model", "in_arena"]);

  /** One experiment: its arms (weight, traffic, errors, latency, arena metrics), the comparison, a curl line. */
  function experiment(body, baseUrl) {
    const arms = body.arms || [];
    const total = arms.reduce((sum, a) => sum + (fmt.finite(a.requests) ? a.requests : 0), 0);
    const metricKeys = [...new Set(arms.flatMap((a) => Object.keys(a.metrics || {})))].filter((k) => !HIDDEN_METRICS.has(k));
    const latency = (a, q) => fmt.ms((a.latency_ms || {})[q]);
    const content = [
      h("h2", {}, body.name, body.weights_source ? h("span", { class: "note" }, "weights from " + body.weights_source) : null),
      table([
        { label: "Arm", value: (a) => h("span", { class: "model-cell" }, h("span", { class: "swatch", style: { background: TR.colorOf("arm:" + a.name) } }),
          a.name, a.shadow ? h("span", { class: "badge muted", title: "gets a copy of the traffic; its answers are not returned" }, "shadow") : null) },
        { label: "Model", value: (a) => `${a.model}${a.version !== undefined && a.version !== null ? " v" + a.version : ""}` },
        { label: "Weight", num: true, value: (a) => h("span", { class: "model-cell" }, h("span", { class: "meter" },
          h("span", { class: "meter-fill", style: { width: fmt.weight(a.weight) } })), fmt.weight(a.weight)) },
        { label: "Requests", num: true, value: (a) => fmt.int(a.requests) },
        { label: "Traffic", num: true, value: (a) => (total ? fmt.pct(a.requests / total, 1) : fmt.DASH) },
        { label: "Errors", num: true, value: (a) => fmt.int(a.errors) },
        { label: "p50", num: true, value: (a) => latency(a, "p50") },
        { label: "p90", num: true, value: (a) => latency(a, "p90") },
        { label: "p99", num: true, value: (a) => latency(a, "p99") },
        ...metricKeys.map((k) => ({ label: k.replace(/_/g, " "), num: true,
          value: (a) => (METRIC_FORMATS[k] || fmt.any)((a.metrics || {})[k]) })),
      ], arms, "This experiment has no arms.", { class: "arms" }),
    ];
    const cmp = body.comparison;
    if (cmp && Object.keys(cmp).length) {
      content.push(h("h3", {}, "Comparison", h("span", { class: "note" },
        [cmp.test, fmt.finite(cmp.alpha) ? `α = ${cmp.alpha}` : null].filter(Boolean).join(" · "))));
      const tests = cmp.tests || [];
      if (tests.length) {
        content.push(table([
          { label: "Arm", value: (t) => t.arm },
          { label: "vs", value: (t) => t.vs },
          { label: "Bars", num: true, value: (t) => fmt.int(t.n_bars) },
          { label: "Sharpe difference", num: true, value: (t) => fmt.ratio(t.difference) },
          { label: "95% CI", num: true, value: (t) => (Array.isArray(t.ci) ? `${fmt.ratio(t.ci[0])} … ${fmt.ratio(t.ci[1])}` : fmt.DASH) },
          { label: "p", num: true, value: (t) => fmt.pvalue(t.p_value) },
          { label: "", value: (t) => (t.significant ? h("span", { class: "badge good" }, "▲ significant")
            : h("span", { class: "muted" }, t.reason || "not significant")) },
        ], tests, "", { class: "tests" }));
      }
      if (cmp.reason) content.push(h("p", { class: "muted" }, cmp.reason));
      const rest = Object.fromEntries(Object.entries(cmp).filter(([k]) => !["test", "alpha", "tests", "arms", "reason", "control"].includes(k)));
      if (Object.keys(rest).length) content.push(keyValues(rest));
    }
    const shadows = (body.shadow_log || []).slice(-20).reverse();
    if (shadows.length) content.push(h("h3", {}, "Shadow comparisons", h("span", { class: "note" }, "latest first")), records(shadows));
    if (body.example_request !== undefined && body.example_request !== null) {
      const json = JSON.stringify(body.example_request);
      const url = new URL(`v1/experiments/${encodeURIComponent(body.name)}/predict`, baseUrl).href;
      content.push(h("h3", {}, "Try it"), h("pre", { class: "curl" },
        `curl -X POST ${url} \\\n  -H 'Content-Type: application/json' -H 'X-Client-Key: me' \\\n  -d '${json.replace(/'/g, "'\\''")}'`));
    }
    return content;
  }

  /* ---------------------------------------------------------------- audit trail */

  /** A small JSON object as "key: value, ..." (a target such as {"experiment": "ab"}); else compact JSON. */
  function target(value) {
    if (!value || typeof value !== "object" || Array.isArray(value)) return fmt.json(value);
    return Object.entries(value).map(([k, v]) => `${k}: ${typeof v === "string" ? v : fmt.json(v)}`).join(", ");
  }

  /** The audit trail (v1/audit entries, newest first): who did what, when, and the state before and after.
  Each cell carries its column's name (data-label): a phone shows every entry as a card of labelled lines. */
  function audit(entries) {
    const status = (e) => h("span", {
      class: "badge " + (e.status >= 200 && e.status < 300 ? "good" : e.status >= 400 ? "bad" : "muted"),
    }, e.status);
    const change = (e) => h("div", { class: "change" },
      h("code", { class: "json before" }, fmt.json(e.before)), h("span", { class: "muted" }, " → "),
      h("code", { class: "json after" }, fmt.json(e.after)),
      e.detail ? h("div", { class: "muted detail" }, e.detail) : null);
    const columns = [
      { label: "Time", cls: "text time", value: (e) => fmt.seconds(e.time) },
      { label: "Identity", cls: "text", value: (e) => [e.identity, e.auth ? h("span", { class: "muted" }, " · " + e.auth) : null,
        e.client ? h("div", { class: "muted small" }, e.client) : null] },
      { label: "Request", cls: "text", title: (e) => e.path || "", value: (e) => [h("b", {}, e.method), " ", h("code", {}, e.route || e.path)] },
      { label: "Target", cls: "text", value: (e) => target(e.target) },
      { label: "Status", cls: "num status", value: status },
      { label: "Before → after", cls: "text wrap", value: change },
      { label: "Request id", cls: "text", value: (e) => h("code", { class: "request-id" }, e.request_id) },
    ];
    return h("div", { class: "table-wrap" }, h("table", { class: "audit" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.cls.split(" ")[0] }, c.label)))),
      h("tbody", {}, entries.length ? entries.map((e) => h("tr", {
        dataset: { requestId: e.request_id || "", identity: e.identity || "", id: e.id || "" },
      }, columns.map((c) => h("td", { class: c.cls, title: c.title ? c.title(e) : null, dataset: { label: c.label } },
        h("div", { class: "cell" }, c.value(e))))))
        : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, "No changes recorded yet.")))));
  }

  /** A list of objects of unknown shape as a table (one column per key). */
  function records(list) {
    const keys = [...new Set(list.flatMap((r) => Object.keys(r || {})))];
    return table(keys.map((k) => ({ label: k, value: (r) => fmt.any((r || {})[k]) })), list, "");
  }

  /** A JSON object of unknown shape as a definition list (nested objects nest). */
  function keyValues(obj) {
    return h("dl", { class: "kv" }, Object.entries(obj).map(([k, v]) => h("div", {}, h("dt", {}, k),
      h("dd", {}, v && typeof v === "object" && !Array.isArray(v) ? keyValues(v) : fmt.any(v)))));
  }

  TR.views = { COLUMNS, leaderboard, withheld, fills, modelPage, why, experimentList, experiment, modelOf, audit };
})(window);
