/* TitanRay dashboard: DOM and number-formatting helpers (TitanRay.fmt, TitanRay.h). */
(function (root) {
  "use strict";
  const TR = (root.TitanRay = root.TitanRay || {});

  /** Build an element: h("td", {class: "num", onclick: fn}, "text", childNode, [more]). */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  const DASH = "—";
  const finite = (x) => typeof x === "number" && Number.isFinite(x);

  function group(x, digits) {
    return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  // Ratios annualised over a few bars (a CAGR of 1e10 %) are true but unreadable: past these
  // magnitudes numbers show in exponent form, so a column keeps its width.
  const HUGE_RATIO = 1e5;
  const HUGE_PCT = 1e5; // in percent

  function ratio(x, digits = 2) {
    if (!finite(x)) return DASH;
    return Math.abs(x) >= HUGE_RATIO ? x.toExponential(1) : x.toFixed(digits);
  }

  function pct(x, digits = 2, signed = false) {
    if (!finite(x)) return DASH;
    const p = x * 100;
    const text = Math.abs(p) >= HUGE_PCT ? p.toExponential(1) : p.toFixed(digits);
    return (signed && x > 0 ? "+" : "") + text + "%";
  }

  const fmt = {
    DASH,
    finite,
    money: (x) => (finite(x) ? group(x, 2) : DASH),
    signedMoney: (x) => (finite(x) ? (x > 0 ? "+" : "") + group(x, 2) : DASH),
    pct: (x, digits = 2) => pct(x, digits),
    signedPct: (x, digits = 2) => pct(x, digits, true),
    ratio,
    int: (x) => (finite(x) ? group(Math.round(x), 0) : DASH),
    qty: (x) => (finite(x) ? (Number.isInteger(x) ? group(x, 0) : group(x, 4)) : DASH),
    price: (x) => (finite(x) ? group(x, x >= 1000 ? 2 : 4).replace(/0{1,2}$/, "") : DASH),
    weight: (x) => (finite(x) ? (x * 100).toFixed(1) + "%" : DASH),
    pvalue: (x) => (finite(x) ? (x < 0.001 ? "<0.001" : x.toFixed(3)) : DASH),
    ms: (x) => (finite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) + " ms" : DASH),
    /** Unix seconds, int64 nanoseconds, or an ISO 8601 string, shown in UTC. */
    time(value) {
      const date = fmt.toDate(value);
      return date ? date.toISOString().replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC") : DASH;
    },
    /** As time(), to the second (the audit trail's times). */
    seconds(value) {
      const date = fmt.toDate(value);
      return date ? date.toISOString().replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : DASH;
    },
    toDate(value) {
      if (value === null || value === undefined || value === "") return null;
      let date;
      if (typeof value === "number") date = new Date(value > 1e14 ? value / 1e6 : value > 1e11 ? value : value * 1000);
      else date = new Date(value);
      return Number.isNaN(date.getTime()) ? null : date;
    },
    /** A JSON value as compact JSON (the audit trail's before and after); "—" for none. */
    json(value) {
      if (value === null || value === undefined) return DASH;
      try {
        return JSON.stringify(value);
      } catch (_) {
        return String(value);
      }
    },
    /** A JSON value of unknown shape (experiment metrics, comparisons) as short text. */
    any(value) {
      if (value === null || value === undefined) return DASH;
      if (typeof value === "number") return Number.isInteger(value) ? group(value, 0) : fmt.ratio(value, 4);
      if (typeof value === "boolean") return value ? "yes" : "no";
      if (typeof value === "string") return value;
      return JSON.stringify(value);
    },
  };

  TR.h = h;
  TR.fmt = fmt;
})(window);
