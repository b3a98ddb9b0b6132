// baton dashboard: the history graphs of the service, VM and fleet pages, drawn with the
// vendored uPlot. Only those pages load this (and uPlot).
// - each <figure data-chart> holds its queries in data-series (JSON: q, name, label);
//   "$window" in a query is the rate's range, chosen from the step;
// - the range buttons of the enclosing [data-charts] choose 15m … 14d (1h at first);
//   the step keeps a chart at a few hundred points at most;
// - every chart is read again every 10 s while the page is visible, and at once when
//   it becomes visible again;
// - charts live outside the page's live region; any chart that appears later (a swap)
//   is attached too.
(function () {
  "use strict";

  var REFRESH_MS = 10000;
  var MAX_POINTS = 300;
  var STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600];
  var DEFAULT_RANGE = 3600;
  var HEIGHT = 190;

  function stepFor(range) {
    for (var i = 0; i < STEPS.length; i++) {
      if (range / STEPS[i] <= MAX_POINTS) return STEPS[i];
    }
    return STEPS[STEPS.length - 1];
  }

  // The range of a rate: two steps, at least a minute (several samples at the
  // daemon's 10 s).
  function windowFor(step) {
    return Math.max(60, 2 * step) + "s";
  }

  // ---- colours, from the stylesheet ----
  function css(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }
  function palette() {
    var out = [];
    for (var i = 1; i <= 8; i++) {
      var c = css("--chart-" + i, "");
      if (c) out.push(c);
    }
    return out.length ? out : ["#1d4ed8", "#15803d", "#c2410c", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f", "#b91c1c"];
  }

  // ---- values as people read them ----
  function trim(n, digits) {
    return Number(n.toFixed(digits)).toString();
  }
  var VM_STATES = ["stopped", "running", "paused", "migrating", "failed"];
  function formatter(unit) {
    return function (v) {
      if (v === null || v === undefined || !isFinite(v)) return "—";
      var a = Math.abs(v);
      switch (unit) {
        case "bytes": {
          var units = ["B", "KiB", "MiB", "GiB", "TiB"];
          var i = 0;
          while (a >= 1024 && i < units.length - 1) { a /= 1024; v /= 1024; i++; }
          return trim(v, a >= 100 || i === 0 ? 0 : 1) + " " + units[i];
        }
        case "seconds":
          if (a === 0) return "0";
          if (a < 1) return trim(v * 1000, a < 0.01 ? 2 : 1) + " ms";
          return trim(v, 2) + " s";
        case "rate":
          return trim(v, a >= 100 ? 0 : a >= 1 ? 1 : 3) + "/s";
        case "cores":
          return trim(v, a >= 10 ? 1 : 3);
        case "load":
          return trim(v, 2);
        case "vm-state":
          return VM_STATES[Math.round(v)] || trim(v, 0);
        default:
          return trim(v, a >= 100 ? 0 : 2);
      }
    };
  }

  // ---- legends ----
  // A series is named by its line's name, then the value of its label (state="desired"
  // → "desired"); without either, by its labels.
  function legend(line, labels) {
    var parts = [];
    if (line.name) parts.push(line.name);
    if (line.label && labels[line.label] !== undefined) parts.push(labels[line.label]);
    if (parts.length) return parts.join(" ");
    var rest = Object.keys(labels).filter(function (k) { return k !== "__name__"; })
      .map(function (k) { return labels[k]; });
    return rest.length ? rest.join(" ") : "value";
  }

  // What is wanted rather than what is: dashed and muted.
  function isReference(label) {
    return label === "desired" || label === "total" || /^total\b/.test(label);
  }

  // ---- one chart ----
  var charts = [];
  var attached = new WeakSet();

  function attach(fig) {
    if (attached.has(fig)) return;
    attached.add(fig);
    var lines;
    try { lines = JSON.parse(fig.getAttribute("data-series") || "[]"); } catch (e) { lines = []; }
    var chart = {
      fig: fig,
      lines: lines,
      unit: fig.getAttribute("data-unit") || "count",
      plotEl: fig.querySelector(".chart-plot"),
      emptyEl: fig.querySelector(".chart-empty"),
      plot: null,
      keys: "",
      seq: 0,
      abort: null
    };
    fig.setAttribute("data-state", "loading");
    charts.push(chart);
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(function () {
        if (chart.plot) chart.plot.setSize(size(chart));
      }).observe(chart.plotEl);
    }
    load(chart);
  }

  function size(chart) {
    var w = chart.plotEl.clientWidth || chart.fig.clientWidth || 300;
    return { width: Math.max(200, w), height: HEIGHT };
  }

  function rangeOf(fig) {
    var box = fig.closest("[data-charts]");
    var r = box ? Number(box.getAttribute("data-range")) : NaN;
    return r > 0 ? r : DEFAULT_RANGE;
  }

  function show(chart, state, message) {
    chart.fig.setAttribute("data-state", state);
    var empty = state !== "drawn";
    if (chart.emptyEl) {
      chart.emptyEl.hidden = !empty || state === "loading";
      chart.emptyEl.textContent = message || "no data yet";
    }
    chart.plotEl.hidden = empty;
    if (empty && chart.plot) {
      chart.plot.destroy();
      chart.plot = null;
      chart.keys = "";
    }
  }

  function load(chart) {
    if (!document.contains(chart.fig)) return;
    var range = rangeOf(chart.fig);
    var step = stepFor(range);
    var to = Math.floor(Date.now() / 1000);
    var from = to - range;
    var seq = ++chart.seq;
    if (chart.abort) chart.abort.abort();
    var abort = typeof AbortController === "function" ? new AbortController() : null;
    chart.abort = abort;
    var reads = chart.lines.map(function (line) {
      var q = String(line.q).split("$window").join(windowFor(step));
      var url = "/ui/series?query=" + encodeURIComponent(q) + "&from=" + from + "&to=" + to + "&step=" + step;
      return fetch(url, {
        headers: { "HX-Request": "true", "Accept": "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        signal: abort ? abort.signal : undefined
      }).then(function (r) {
        if (r.status === 401) {
          window.location.href = "/ui/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
          throw new Error("logged out");
        }
        return r.json().then(function (body) {
          if (!r.ok) throw new Error(body && body.error ? body.error : "HTTP " + r.status);
          return body;
        });
      });
    });
    Promise.all(reads).then(function (answers) {
      if (seq !== chart.seq) return;
      draw(chart, answers);
    }).catch(function (e) {
      if (seq !== chart.seq || (e && e.name === "AbortError")) return;
      show(chart, "error", "could not read the history: " + (e && e.message ? e.message : e));
    });
  }

  function draw(chart, answers) {
    var first = answers[0];
    if (!first) { show(chart, "empty"); return; }
    var from = first.from, step = first.step;
    var n = Math.floor((first.to - from) / step + 1e-9) + 1;
    var xs = new Array(n);
    for (var i = 0; i < n; i++) xs[i] = from + i * step;
    var names = [];
    var columns = [];
    var seen = 0;
    answers.forEach(function (answer, li) {
      var line = chart.lines[li];
      (answer.series || []).forEach(function (s) {
        var ys = new Array(n).fill(null);
        s.points.forEach(function (p) {
          var at = Math.round((p[0] - from) / step);
          if (at >= 0 && at < n && p[1] !== null) { ys[at] = p[1]; seen++; }
        });
        names.push(legend(line, s.labels || {}));
        columns.push(ys);
      });
    });
    if (seen === 0) { show(chart, "empty"); return; }
    var data = [xs].concat(columns);
    var keys = names.join("\u0000");
    if (chart.plot && chart.keys === keys) {
      chart.plot.setData(data);
    } else {
      if (chart.plot) chart.plot.destroy();
      chart.plotEl.hidden = false;
      chart.plot = new uPlot(options(chart, names), data, chart.plotEl);
      chart.keys = keys;
    }
    show(chart, "drawn");
    chart.fig.setAttribute("data-lines", String(columns.filter(function (c) {
      return c.some(function (v) { return v !== null; });
    }).length));
  }

  // The points with no neighbour (a series that just began, or between gaps): drawn
  // as dots, since a line needs two.
  function isolated(u, si) {
    var ys = u.data[si];
    var out = [];
    for (var i = 0; i < ys.length; i++) {
      if (ys[i] !== null && (i === 0 || ys[i - 1] === null) && (i === ys.length - 1 || ys[i + 1] === null)) out.push(i);
    }
    return out.length ? out : null;
  }

  function options(chart, names) {
    var colours = palette();
    var muted = css("--muted", "#5b6473");
    var grid = css("--line", "#d9dde3");
    var fmt = formatter(chart.unit);
    var k = 0;
    var series = [{}].concat(names.map(function (name) {
      var ref = isReference(name);
      var colour = ref ? muted : colours[k++ % colours.length];
      var s = {
        label: name,
        stroke: colour,
        width: ref ? 1.5 : 2,
        spanGaps: false,
        points: { show: false, size: 6, width: 1, stroke: colour, fill: colour, filter: isolated },
        value: function (u, v) { return fmt(v); }
      };
      if (ref) s.dash = [6, 4];
      return s;
    }));
    var yAxis = {
      stroke: muted,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      size: 64,
      values: function (u, vals) { return vals.map(fmt); }
    };
    var y = {
      range: function (u, min, max) {
        if (chart.unit === "vm-state") return [0, 4];
        var lo = Math.min(0, min);
        var hi = max > lo ? max * 1.1 : lo + 1;
        return [lo, hi];
      }
    };
    if (chart.unit === "count" || chart.unit === "vm-state") {
      yAxis.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
    }
    var sz = size(chart);
    return {
      width: sz.width,
      height: sz.height,
      series: series,
      scales: { x: { time: true }, y: y },
      axes: [
        { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
        yAxis
      ],
      legend: { live: true },
      cursor: { points: { show: false } }
    };
  }

  // ---- the page ----
  function attachAll(root) {
    if (typeof uPlot !== "function") return;
    (root || document).querySelectorAll("figure[data-chart]").forEach(attach);
  }

  function refreshAll() {
    charts = charts.filter(function (c) { return document.contains(c.fig); });
    charts.forEach(load);
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-charts] button[data-range]");
    if (!button) return;
    var box = button.closest("[data-charts]");
    box.setAttribute("data-range", button.getAttribute("data-range"));
    box.querySelectorAll("button[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", b === button ? "true" : "false");
    });
    charts.forEach(function (c) { if (box.contains(c.fig)) load(c); });
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-charts]").forEach(function (box) {
      if (!box.getAttribute("data-range")) box.setAttribute("data-range", String(DEFAULT_RANGE));
    });
    attachAll(document);
    setInterval(function () { if (!document.hidden) refreshAll(); }, REFRESH_MS);
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refreshAll();
  });
  // A swap that brings charts (none does today: they are outside the live region).
  document.addEventListener("htmx:load", function (evt) { attachAll(evt.target); });
})();
