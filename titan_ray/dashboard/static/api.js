/* TitanRay dashboard: where the data comes from (TitanRay.api).

Live: the JSON API beside the page (URLs relative to the page, so a Serve route prefix works) and
the server-sent events of v1/events. Report: the payloads that `titan-ray report` embedded in the
page as <script id="titan-ray-data" type="application/json">, answered by the same get(path). */
(function (root) {
  "use strict";
  const TR = root.TitanRay;

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const embedded = document.getElementById("titan-ray-data");
  const REPORT = embedded ? JSON.parse(embedded.textContent) : null;

  async function getLive(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, `${path}: the server cannot be reached (${err.message})`);
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch (_) {
        /* not JSON: keep the status text */
      }
      throw new ApiError(response.status, `${path}: HTTP ${response.status} ${detail}`);
    }
    return response.json();
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

  /* Follow v1/events. handlers: leaderboard(body), fill(list), status(body), state("connecting" |
  "live" | "reconnecting"), opened() (after each (re)connection: time to catch up on what was missed).

  The browser retries a dropped stream by itself while readyState is CONNECTING; a stream it gave up
  on (CLOSED: an HTTP error or a proxy that answered with something else) is opened again here,
  with a backoff from 1 s to 15 s. */
  function follow(handlers) {
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
      for (const name of ["leaderboard", "fill", "status"]) {
        source.addEventListener(name, (event) => {
          let data;
          try {
            data = JSON.parse(event.data);
          } catch (_) {
            return; // a malformed message is skipped; the next snapshot repairs the page
          }
          handlers[name](data);
        });
      }
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
      close() {
        stopped = true;
        clearTimeout(timer);
        if (source) source.close();
      },
    };
  }

  TR.api = {
    ApiError,
    report: REPORT,
    isReport: REPORT !== null,
    get: REPORT ? getReport : getLive,
    follow,
  };
})(window);
