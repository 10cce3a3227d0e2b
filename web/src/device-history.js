// A device's history over a chosen time window: the range, pan and zoom controls, the charts of
// temperature and current (with the fault thresholds) and of position and speed, and the events
// and alerts in that same window, with the requests that fill them. It is apart from device.js
// because all of it hangs on one piece of state, the window, that nothing else on the device page
// reads: the status and the commands show the device as it is now, whatever window is chosen.
import { api, expectShape } from "./api.js";
import { makeChart } from "./chart.js";
import { el, setText } from "./dom.js";
import { amperes, celsius, degrees, degreesPerSecond, fullTime, isTime } from "./format.js";
import { LIMITS } from "./limits.js";

const RAW_PAGE = 5000;
const RANGES = [
  { key: "5m", label: "5 min", ms: 5 * 60e3, raw: true },
  { key: "15m", label: "15 min", ms: 15 * 60e3, raw: true },
  { key: "1h", label: "1 h", ms: 3600e3, raw: true },
  { key: "6h", label: "6 h", ms: 6 * 3600e3, raw: true },
  { key: "1d", label: "1 day", ms: 86400e3, raw: false },
  { key: "7d", label: "7 days", ms: 7 * 86400e3, raw: false },
];
const EVENT_ICONS = { BOOT: "↻", STARTED: "▶", STOPPED: "■", ESTOP: "⛔", FAULT: "⚠", FAULT_CLEARED: "✓", BUTTON_STUCK: "☝", BACKLOG_DROPPED: "⌫" };
const ALERT_EVENTS = new Set(["FAULT", "ESTOP"]);

function q(params) {
  return Object.entries(params).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
}

// base: the device's API path. isStopped: whether the page has left the device (a paged fetch
// then asks for no more pages); the device view owns that flag, since it also ends the polling.
// The sections come back unplaced: the view lays out the page, then calls load() once they are
// in the document (a chart takes its width from where it sits).
export function makeDeviceHistory(shell, { base, isStopped }) {
  // The first chart with points ends the mg:first-chart measure, timed from the view's
  // mg:device-open mark (tests/dashboard/bench.py reads it).
  let firstChart = false;
  const win = { range: RANGES[1], to: null, zoom: null }; // to null: live, following now
  let raw = { t: [], temp: [], current: [], position: [], speed: [] };
  let hours = [];
  let lastAggregateLoad = 0;

  // --- charts -----------------------------------------------------------------------------
  const rangeButtons = RANGES.map((r) => el("button", { type: "button", "data-range": r.key, "aria-pressed": "false",
    onclick: () => { win.range = r; win.to = null; win.zoom = null; load(); } }, r.label));
  const liveButton = el("button", { type: "button", id: "live", onclick: () => { win.to = null; win.zoom = null; load(); } }, "Live");
  const panEarlier = el("button", { type: "button", onclick: () => pan(-0.5) }, "◀ Earlier");
  const panLater = el("button", { type: "button", onclick: () => pan(0.5) }, "Later ▶");
  const zoomIn = el("button", { type: "button", onclick: () => zoomBy(0.5) }, "Zoom in");
  const zoomOut = el("button", { type: "button", onclick: () => zoomBy(2) }, "Zoom out");
  const windowText = el("p", { class: "hint", id: "window-text" });
  const chartArea = el("div", { class: "charts" });
  const chartNote = el("p", { class: "hint" });
  const charts = {};
  const chartsSection = el("section", { "aria-labelledby": "charts-h" },
    el("h2", { id: "charts-h" }, "History"),
    el("div", { class: "toolbar", role: "group", "aria-label": "Time range" }, ...rangeButtons, liveButton),
    el("div", { class: "toolbar", role: "group", "aria-label": "Zoom and pan" }, panEarlier, panLater, zoomIn, zoomOut),
    windowText, chartNote, chartArea);

  function zoomed(min, max) {
    win.zoom = [min, max];
    for (const c of Object.values(charts)) c.setX(min, max);
    describeWindow();
  }

  const TEMP_LINES = [
    { value: LIMITS.combined_temp_c, label: `FAULT at ${LIMITS.combined_temp_c} °C with ≥ ${LIMITS.combined_current_a} A`, color: "#7c3aed", dash: [6, 4] },
    { value: LIMITS.hard_temp_c, label: `FAULT at ${LIMITS.hard_temp_c} °C alone`, color: "#b91c1c", dash: [2, 3] }];
  const CURRENT_LINES = [
    { value: LIMITS.combined_current_a, label: `FAULT at ${LIMITS.combined_current_a} A with ≥ ${LIMITS.combined_temp_c} °C`, color: "#7c3aed", dash: [6, 4] },
    { value: LIMITS.hard_current_a, label: `FAULT at ${LIMITS.hard_current_a} A alone`, color: "#b91c1c", dash: [2, 3] }];

  function rebuildCharts() {
    for (const c of Object.values(charts)) c.destroy();
    for (const k of Object.keys(charts)) delete charts[k];
    if (win.range.raw) {
      charts.temperature = makeChart(chartArea, { id: "chart-temperature", title: "Temperature", unit: "°C", onZoom: zoomed,
        thresholds: TEMP_LINES, series: [{ label: "temperature", stroke: "#b45309", digits: 1 }] });
      charts.current = makeChart(chartArea, { id: "chart-current", title: "Current", unit: "A", onZoom: zoomed,
        thresholds: CURRENT_LINES, series: [{ label: "current", stroke: "#1d4ed8" }] });
      charts.motion = makeChart(chartArea, { id: "chart-motion", title: "Position and speed", unit: "°", onZoom: zoomed,
        series: [{ label: "position", stroke: "#047857", unit: "°", digits: 1 },
          { label: "speed", stroke: "#374151", unit: "°/s", scale: "speed", digits: 0, dash: [4, 2] }],
        axes: [{}, { label: "position (°)", size: 60 }, { side: 1, scale: "speed", label: "speed (°/s)", size: 60, grid: { show: false } }] });
      setText(chartNote, "Raw samples as the device sent them. Drag across a chart to zoom.");
    } else {
      const band = (name, unit, color, digits) => [
        { label: `${name} max`, stroke: color, width: 1, digits, unit },
        { label: `${name} mean`, stroke: color, width: 2.5, digits, unit },
        { label: `${name} min`, stroke: color, width: 1, dash: [3, 3], digits, unit }];
      charts.temperature = makeChart(chartArea, { id: "chart-temperature", title: "Temperature, hourly", unit: "°C", onZoom: zoomed,
        thresholds: TEMP_LINES, series: band("temperature", "°C", "#b45309", 1) });
      charts.current = makeChart(chartArea, { id: "chart-current", title: "Current, hourly", unit: "A", onZoom: zoomed,
        thresholds: CURRENT_LINES, series: band("current", "A", "#1d4ed8", 2) });
      setText(chartNote, "Hourly minimum, mean and maximum (the hourly aggregates). Position and speed are kept as raw " +
        "samples only: choose a range of hours to see them.");
    }
  }

  function range() {
    const to = win.to ?? Date.now();
    return { from: to - win.range.ms, to };
  }

  function describeWindow() {
    const { from, to } = range();
    for (const b of rangeButtons) b.setAttribute("aria-pressed", String(b.dataset.range === win.range.key));
    const zoom = win.zoom ? ` (zoomed to ${fullTime(win.zoom[0] * 1000)} – ${fullTime(win.zoom[1] * 1000)})` : "";
    setText(windowText, `${win.to === null ? "Live: " : ""}${fullTime(from)} – ${fullTime(to)}${zoom}`);
    liveButton.disabled = win.to === null && !win.zoom;
  }

  function pan(fraction) {
    const to = (win.to ?? Date.now()) + fraction * win.range.ms;
    win.to = to >= Date.now() ? null : to;
    win.zoom = null;
    load();
  }

  function zoomBy(factor) {
    const c = charts.temperature;
    if (!c) return;
    const { from, to } = range();
    const [min, max] = win.zoom || [from / 1000, to / 1000];
    const mid = (min + max) / 2;
    const half = Math.min(((max - min) * factor) / 2, win.range.ms / 2000);
    if (half * 2 >= win.range.ms / 1000 - 1) {
      win.zoom = null;
      for (const ch of Object.values(charts)) ch.setX(from / 1000, to / 1000);
      describeWindow();
      return;
    }
    zoomed(mid - half, mid + half);
  }

  function drawRaw() {
    const { from, to } = range();
    const t = raw.t;
    const n = t.length;
    const last = n ? n - 1 : -1;
    charts.temperature.setData([t, raw.temp], !!win.zoom,
      last >= 0 ? `Latest temperature ${celsius(raw.temp[last])}; ${n} samples.` : "No samples in this range.");
    charts.current.setData([t, raw.current], !!win.zoom,
      last >= 0 ? `Latest current ${amperes(raw.current[last])}.` : "No samples in this range.");
    charts.motion.setData([t, raw.position, raw.speed], !!win.zoom,
      last >= 0 ? `Latest position ${degrees(raw.position[last])}, speed ${degreesPerSecond(raw.speed[last])}.` : "");
    if (!win.zoom) for (const c of Object.values(charts)) c.setX(from / 1000, to / 1000);
    else for (const c of Object.values(charts)) c.setX(win.zoom[0], win.zoom[1]);
    if (n && !firstChart) {
      firstChart = true;
      performance.measure("mg:first-chart", "mg:device-open");
    }
  }

  function drawHours() {
    const t = hours.map((h) => h.start_ms / 1000 + 1800);
    const pick = (key, stat) => hours.map((h) => (h[key] && typeof h[key][stat] === "number" ? h[key][stat] : null));
    charts.temperature.setData([t, pick("temperature_c", "max"), pick("temperature_c", "mean"), pick("temperature_c", "min")],
      !!win.zoom, `${hours.length} hours with samples.`);
    charts.current.setData([t, pick("current_a", "max"), pick("current_a", "mean"), pick("current_a", "min")], !!win.zoom, "");
    const { from, to } = range();
    if (!win.zoom) for (const c of Object.values(charts)) c.setX(from / 1000, to / 1000);
    if (hours.length && !firstChart) {
      firstChart = true;
      performance.measure("mg:first-chart", "mg:device-open");
    }
  }

  function addSamples(samples) {
    for (const s of samples) {
      expectShape(s && typeof s.time === "number", "a sample without a time");
      const ts = s.time / 1000;
      if (raw.t.length && ts <= raw.t[raw.t.length - 1]) continue; // already drawn
      raw.t.push(ts);
      raw.temp.push(typeof s.temperature_c === "number" ? s.temperature_c : null);
      raw.current.push(typeof s.current_a === "number" ? s.current_a : null);
      raw.position.push(typeof s.position === "number" ? s.position : null);
      raw.speed.push(typeof s.speed === "number" ? s.speed : null);
    }
  }

  async function fetchSamples(from, to) {
    let next = null;
    const out = [];
    do {
      const page = await api(`${base}/telemetry?${q({ from: Math.floor(from), to: Math.floor(to), limit: RAW_PAGE, next })}`);
      expectShape(Array.isArray(page.samples), "samples is not a list");
      out.push(...page.samples);
      next = typeof page.next === "string" ? page.next : null;
    } while (next && !isStopped());
    return out;
  }

  // A new window (or the first): new charts, and everything in the window asked for again.
  async function load() {
    rebuildCharts();
    describeWindow();
    raw = { t: [], temp: [], current: [], position: [], speed: [] };
    hours = [];
    lastAggregateLoad = 0;
    try {
      await loadData(true);
    } catch (e) {
      if (e.kind !== "auth") shell.fail(e.message);
    }
  }

  // full false (each poll): a live raw window asks only for samples after its last one.
  async function loadData(full) {
    const { from, to } = range();
    if (win.range.raw) {
      if (full || !raw.t.length) {
        const samples = await fetchSamples(from, to);
        raw = { t: [], temp: [], current: [], position: [], speed: [] };
        addSamples(samples);
      } else if (win.to === null) {
        addSamples(await fetchSamples(raw.t[raw.t.length - 1] * 1000 + 1, to));
        const cut = raw.t.findIndex((t) => t * 1000 >= from);
        if (cut > 0) for (const k of Object.keys(raw)) raw[k] = raw[k].slice(cut);
      }
      drawRaw();
    } else if (full || (win.to === null && Date.now() - lastAggregateLoad > 60000)) {
      const r = await api(`${base}/aggregates?${q({ from: Math.floor(from), to: Math.floor(to) })}`);
      expectShape(Array.isArray(r.hours), "hours is not a list");
      hours = r.hours;
      lastAggregateLoad = Date.now();
      drawHours();
    }
  }

  // --- events and alerts in the window -------------------------------------------------------
  const eventsList = el("ol", { class: "events", reversed: true }, el("li", {}, "Loading…"));
  const alertsList = el("ul", { class: "alerts" }, el("li", {}, "Loading…"));
  const eventsSection = el("section", { "aria-labelledby": "events-h" }, el("h2", { id: "events-h" }, "Events"), eventsList);
  const alertsSection = el("section", { "aria-labelledby": "alerts-h" }, el("h2", { id: "alerts-h" }, "Alerts"), alertsList);
  let eventsKey = "";

  function eventItem(e) {
    const parts = [el("time", { datetime: isTime(e.time) ? new Date(e.time).toISOString() : "" }, fullTime(e.time)), " ",
      el("span", { class: "icon", "aria-hidden": "true" }, EVENT_ICONS[e.event] || "•"), " ",
      el("strong", {}, String(e.event)), ` → ${String(e.state)}`];
    if (e.reason) parts.push(`, reason: ${String(e.reason)}`);
    if (e.detail) parts.push(`, ${String(e.detail)}`);
    if (typeof e.temperature_c === "number" || typeof e.current_a === "number" || e.event === "FAULT") {
      parts.push(` (${celsius(e.temperature_c)}, ${amperes(e.current_a)})`);
    }
    return el("li", { class: ALERT_EVENTS.has(e.event) ? "alerting" : "" }, ...parts);
  }

  function showEvents(events) {
    const key = events.map((e) => `${e.time}|${e.event}|${e.seq}`).join(",");
    if (key === eventsKey) return;
    eventsKey = key;
    const newest = [...events].reverse();
    eventsList.replaceChildren(...(newest.length ? newest.map(eventItem) : [el("li", {}, "No events in this range.")]));
    const alerts = newest.filter((e) => ALERT_EVENTS.has(e.event));
    alertsList.replaceChildren(...(alerts.length ? alerts.map(eventItem) : [el("li", {}, "No FAULT or emergency stop in this range.")]));
  }

  async function loadEvents() {
    const { from, to } = range();
    const events = [];
    let next = null;
    do {
      const page = await api(`${base}/events?${q({ from: Math.floor(from), to: Math.floor(to), limit: 1000, next })}`);
      expectShape(Array.isArray(page.events), "events is not a list");
      events.push(...page.events);
      next = typeof page.next === "string" ? page.next : null;
    } while (next && !isStopped());
    showEvents(events);
  }

  return {
    chartsSection,
    alertsSection,
    eventsSection,
    load,
    loadData,
    loadEvents,
    destroyCharts() {
      for (const c of Object.values(charts)) c.destroy();
    },
  };
}
