/* TitanRay dashboard: every model's equity curve on one chart, drawdowns in a pane below
(TradingView lightweight-charts, vendored in static/vendor). */
(function (root) {
  "use strict";
  const TR = root.TitanRay;
  const { h, fmt } = TR;

  const PALETTE = ["#4cc9f0", "#f72585", "#ffd166", "#06d6a0", "#b388ff", "#ff8c42", "#90be6d", "#ef476f",
    "#73d2de", "#f9c74f", "#c77dff", "#43aa8b"];
  const colors = new Map();

  /** One colour per model for the whole page, in the order models first appear. */
  TR.colorOf = function (model) {
    if (!colors.has(model)) colors.set(model, PALETTE[colors.size % PALETTE.length]);
    return colors.get(model);
  };

  /** Colour a run's models alphabetically, so a model keeps its colour whichever payload arrives first. */
  TR.registerModels = function (names) {
    [...names].sort().forEach(TR.colorOf);
  };

  function cssVar(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  /** Points for setData: non-finite values skipped, times strictly increasing (the library's rule). */
  function points(timestamps, values, scale) {
    const out = [];
    let last = -Infinity;
    const n = Math.min(timestamps.length, values ? values.length : 0);
    for (let i = 0; i < n; i++) {
      const t = timestamps[i];
      const v = values[i];
      if (!fmt.finite(t) || !fmt.finite(v) || t <= last) continue;
      out.push({ time: t, value: v * scale });
      last = t;
    }
    return out;
  }

  /** Drawdown from equity, for a payload that leaves it out: equity / running peak - 1. */
  function drawdownOf(equity) {
    let peak = -Infinity;
    return equity.map((v) => {
      if (!fmt.finite(v)) return null;
      peak = Math.max(peak, v);
      return peak > 0 ? v / peak - 1 : 0;
    });
  }

  class EquityChart {
    constructor(container, legend) {
      const LC = root.LightweightCharts;
      this.LC = LC;
      this.container = container;
      this.legend = legend;
      this.series = new Map(); // model -> {equity, drawdown, color, visible, last}
      // the whole run stays in view as it grows, until the user zooms or drags; a double click fits again
      this.follow = true;
      const text = cssVar("--muted", "#9aa4b2");
      const grid = cssVar("--grid", "#232a36");
      this.chart = LC.createChart(container, {
        autoSize: true,
        layout: {
          background: { type: "solid", color: "transparent" },
          textColor: text,
          fontFamily: cssVar("--font", "system-ui, sans-serif"),
          panes: { separatorColor: grid, separatorHoverColor: grid, enableResize: true },
        },
        grid: { vertLines: { color: grid }, horzLines: { color: grid } },
        rightPriceScale: { borderVisible: false },
        // minBarSpacing: 2,000 points must fit a phone's 300 px when the whole run is shown
        timeScale: { borderVisible: false, timeVisible: true, secondsVisible: false, minBarSpacing: 0.01 },
        crosshair: { mode: LC.CrosshairMode.Normal },
      });
      const stop = () => { this.follow = false; };
      for (const name of ["wheel", "pointerdown", "touchstart"]) container.addEventListener(name, stop, { passive: true });
      container.addEventListener("dblclick", () => {
        this.follow = true;
        this.fit();
      });
      // fit again when the width changes (a phone turned, a hidden view shown)
      let width = 0;
      new ResizeObserver((entries) => {
        const w = Math.round(entries[0].contentRect.width);
        if (w !== width && w > 0) {
          width = w;
          if (this.follow) requestAnimationFrame(() => this.fit());
        }
      }).observe(container);
    }

    fit() {
      this.chart.timeScale().fitContent();
    }

    /** Draw a v1/equity payload: {timestamps, models: {name: {equity, drawdown}}}. */
    update(payload) {
      const timestamps = payload.timestamps || [];
      TR.registerModels(Object.keys(payload.models || {}));
      for (const [model, curve] of Object.entries(payload.models || {})) {
        const entry = this.series.get(model) || this.add(model);
        const equity = curve.equity || [];
        entry.equity.setData(points(timestamps, equity, 1));
        entry.drawdown.setData(points(timestamps, curve.drawdown || drawdownOf(equity), 100));
        entry.last = [...equity].reverse().find(fmt.finite);
      }
      const panes = this.chart.panes();
      if (panes.length > 1) {
        panes[0].setStretchFactor(3);
        panes[1].setStretchFactor(1);
      }
      if (this.follow && timestamps.length) this.fit();
      this.renderLegend();
    }

    /** Remove every curve (a page that may no longer show them: signed out of a locked server). */
    clear() {
      for (const s of this.series.values()) {
        this.chart.removeSeries(s.equity);
        this.chart.removeSeries(s.drawdown);
      }
      this.series.clear();
      this.follow = true;
      this.renderLegend();
    }

    add(model) {
      const color = TR.colorOf(model);
      const line = this.LC.LineSeries;
      const entry = {
        color,
        visible: true,
        last: null,
        equity: this.chart.addSeries(line, {
          color, lineWidth: 2, priceLineVisible: false, lastValueVisible: false,
          // whole dollars above 10,000: the axis stays narrow enough for a phone
          priceFormat: { type: "custom", formatter: (v) => (Math.abs(v) >= 1e4 ? fmt.int(v) : fmt.money(v)), minMove: 0.01 },
        }, 0),
        drawdown: this.chart.addSeries(line, {
          color, lineWidth: 1, priceLineVisible: false, lastValueVisible: false,
          priceFormat: { type: "custom", formatter: (v) => v.toFixed(1) + "%", minMove: 0.01 },
        }, 1),
      };
      this.series.set(model, entry);
      return entry;
    }

    /** How many equity series the chart holds (its first pane), as the library counts them. */
    seriesCount() {
      const pane = this.chart.panes()[0];
      return pane ? pane.getSeries().length : 0;
    }

    renderLegend() {
      this.legend.replaceChildren(...[...this.series].map(([model, s]) => h("button", {
        type: "button",
        class: "legend-item" + (s.visible ? "" : " off"),
        "aria-pressed": String(s.visible),
        title: s.visible ? `hide ${model}` : `show ${model}`,
        dataset: { model },
        onclick: () => this.toggle(model),
      }, h("span", { class: "swatch", style: { background: s.color } }), model,
      h("span", { class: "legend-value" }, fmt.money(s.last)))));
    }

    toggle(model) {
      const s = this.series.get(model);
      s.visible = !s.visible;
      s.equity.applyOptions({ visible: s.visible });
      s.drawdown.applyOptions({ visible: s.visible });
      this.renderLegend();
    }
  }

  TR.EquityChart = EquityChart;
})(window);
