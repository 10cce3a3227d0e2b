// The fleet page: every device with its state, connection, readings, alert and firmware; search,
// filters and sorting; the count of rejected messages with their reasons. The list comes a page
// at a time (GET /devices?limit=&next=) and is drawn as each page arrives; a refresh updates the
// rows in place (only the cells whose text changed), so 1,000 devices stay quick.
import { api, expectShape } from "./api.js";
import { el, routeHref, setText } from "./dom.js";
import { ago, amperes, celsius, clockTime, fullTime } from "./format.js";
import { STATES } from "./limits.js";

const PAGE = 250; // devices per request
const REFRESH_MS = 1000; // the page asks again this long after a whole pass (longer for a big fleet)

const SORTS = {
  name: (a, b) => a.device.localeCompare(b.device),
  state: (a, b) => rank(a) - rank(b) || a.device.localeCompare(b.device),
  temperature: (a, b) => reading(b, "temperature_c") - reading(a, "temperature_c") || a.device.localeCompare(b.device),
  current: (a, b) => reading(b, "current_a") - reading(a, "current_a") || a.device.localeCompare(b.device),
  seen: (a, b) => (b.last_seen_ms || 0) - (a.last_seen_ms || 0) || a.device.localeCompare(b.device),
};

function rank(d) {
  return (STATES[d.state_now] || { rank: 9 }).rank;
}

function reading(d, key) {
  const v = d.latest_sample && d.latest_sample[key];
  return typeof v === "number" ? v : -Infinity;
}

export function stateBadge(state) {
  const s = STATES[state] || { icon: "?", label: state ? String(state) : "no state yet" };
  return el("span", { class: `state state-${STATES[state] ? state.toLowerCase() : "unknown"}` },
    el("span", { class: "icon", "aria-hidden": "true" }, s.icon), " ", s.label);
}

export function connection(d) {
  if (d.online === true) return { icon: "●", text: "online", cls: "online" };
  if (d.online === false) return { icon: "○", text: "offline", cls: "offline" };
  return { icon: "?", text: "unknown", cls: "unknown" };
}

function checkDevice(d) {
  expectShape(d && typeof d === "object" && typeof d.device === "string", "a device without a name");
  return d;
}

export function fleetView(shell) {
  const devices = new Map(); // device name -> latest view from the API
  const rows = new Map(); // device name -> { tr, cells, key }
  const view = { q: "", state: "", online: "", sort: "state" };
  let stopped = false;
  let timer = null;
  let rejectsOpen = false;
  let order = [];

  const search = el("input", { id: "search", type: "search", placeholder: "name, firmware, reason" });
  const stateFilter = el("select", { id: "state-filter" },
    el("option", { value: "" }, "every state"),
    ...Object.keys(STATES).map((s) => el("option", { value: s }, s)));
  const onlineFilter = el("select", { id: "online-filter" },
    el("option", { value: "" }, "online and offline"),
    el("option", { value: "online" }, "online only"),
    el("option", { value: "offline" }, "offline only"));
  const sort = el("select", { id: "sort" },
    el("option", { value: "state" }, "state (FAULT first)"),
    el("option", { value: "name" }, "name"),
    el("option", { value: "temperature" }, "temperature, highest first"),
    el("option", { value: "current" }, "current, highest first"),
    el("option", { value: "seen" }, "last seen, newest first"));
  const count = el("p", { class: "count", "aria-live": "polite" });
  const alerts = el("p", { class: "alerts-summary" });
  const rejectCount = el("span", {}, "…");
  const rejectsToggle = el("button", { type: "button", class: "link", "aria-expanded": "false", "aria-controls": "rejects" },
    "why?");
  const rejectsList = el("div", { id: "rejects", hidden: true });
  const tbody = el("tbody", {});
  const table = el("table", { class: "fleet" },
    el("caption", { class: "visually-hidden" }, "Devices of the fleet"),
    el("thead", {}, el("tr", {},
      ...["Device", "State", "Connection", "Last seen", "Temperature", "Current", "Alert", "Firmware"]
        .map((h) => el("th", { scope: "col" }, h)))),
    tbody);

  for (const [input, key] of [[search, "q"], [stateFilter, "state"], [onlineFilter, "online"], [sort, "sort"]]) {
    input.addEventListener("input", () => {
      view[key] = key === "q" ? input.value.trim().toLowerCase() : input.value;
      render();
    });
  }
  rejectsToggle.addEventListener("click", () => {
    rejectsOpen = !rejectsOpen;
    rejectsToggle.setAttribute("aria-expanded", String(rejectsOpen));
    rejectsList.hidden = !rejectsOpen;
    if (rejectsOpen) loadRejectReasons();
  });

  shell.main.replaceChildren(
    el("h1", {}, "Fleet"),
    el("div", { class: "summary" },
      alerts,
      el("p", { class: "rejects" }, "Rejected messages: ", rejectCount, " ", rejectsToggle)),
    rejectsList,
    el("div", { class: "controls", role: "search" },
      el("label", { for: "search" }, "Search"), search,
      el("label", { for: "state-filter" }, "State"), stateFilter,
      el("label", { for: "online-filter" }, "Connection"), onlineFilter,
      el("label", { for: "sort" }, "Sort by"), sort),
    count,
    el("div", { class: "table-wrap" }, table));

  function matches(d) {
    if (view.state && d.state_now !== view.state) return false;
    if (view.online && connection(d).text !== view.online) return false;
    if (view.q) {
      const hay = [d.device, d.fw, d.reason, d.state_now].filter((x) => typeof x === "string").join(" ").toLowerCase();
      if (!hay.includes(view.q)) return false;
    }
    return true;
  }

  function makeRow(name) {
    const link = el("a", { href: routeHref("device", name) }, name);
    const cells = {
      state: el("td", { "data-label": "State" }),
      online: el("td", { "data-label": "Connection" }),
      seen: el("td", { "data-label": "Last seen" }),
      temp: el("td", { "data-label": "Temperature", class: "num" }),
      current: el("td", { "data-label": "Current", class: "num" }),
      alert: el("td", { "data-label": "Alert" }),
      fw: el("td", { "data-label": "Firmware" }),
    };
    const tr = el("tr", { "data-device": name }, el("th", { scope: "row", "data-label": "Device" }, link),
      cells.state, cells.online, cells.seen, cells.temp, cells.current, cells.alert, cells.fw);
    return { tr, cells, key: {} };
  }

  function fill(row, d, now) {
    const c = row.cells;
    // Each cell is rebuilt only when what it shows changed.
    const put = (name, key, make) => {
      if (row.key[name] === key) return;
      row.key[name] = key;
      c[name].replaceChildren(make());
    };
    put("state", d.state_now, () => stateBadge(d.state_now));
    const conn = connection(d);
    put("online", conn.text, () => el("span", { class: `conn conn-${conn.cls}` },
      el("span", { class: "icon", "aria-hidden": "true" }, conn.icon), " ", conn.text));
    setText(c.seen, ago(d.last_seen_ms, now));
    c.seen.title = fullTime(d.last_seen_ms);
    const s = d.latest_sample || {};
    setText(c.temp, d.latest_sample ? celsius(s.temperature_c) : "-");
    setText(c.current, d.latest_sample ? amperes(s.current_a) : "-");
    const alert = d.alert ? `FAULT: ${d.alert.reason || "no reason given"}` : "none";
    put("alert", alert, () => d.alert
      ? el("span", { class: "alert" }, el("span", { class: "icon", "aria-hidden": "true" }, "⚠"), " ", alert)
      : "none");
    setText(c.fw, typeof d.fw === "string" ? d.fw : "-");
  }

  function render() {
    const t0 = performance.now();
    const now = Date.now();
    const list = [...devices.values()].sort(SORTS[view.sort] || SORTS.state);
    let shown = 0;
    let faults = 0;
    for (const d of list) {
      let row = rows.get(d.device);
      if (!row) {
        row = makeRow(d.device);
        rows.set(d.device, row);
      }
      fill(row, d, now);
      const visible = matches(d);
      if (row.tr.hidden === visible) row.tr.hidden = !visible;
      if (visible) shown += 1;
      if (d.state_now === "FAULT") faults += 1;
    }
    for (const [name, row] of rows) {
      if (!devices.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    const names = list.map((d) => d.device);
    if (names.length !== order.length || names.some((n, i) => n !== order[i])) {
      tbody.append(...names.map((n) => rows.get(n).tr)); // moves rows into the new order
      order = names;
    }
    setText(count, `Showing ${shown} of ${devices.size} devices.`);
    setText(alerts, faults ? `⚠ ${faults} device${faults > 1 ? "s" : ""} in FAULT (latched until reset at the machine).`
      : "No active alerts.");
    alerts.className = faults ? "alerts-summary active" : "alerts-summary";
    performance.measure("mg:fleet-render", { start: t0, end: performance.now() });
  }

  async function loadRejectReasons() {
    rejectsList.replaceChildren(el("p", {}, "Reading the dead-letter queue…"));
    try {
      const r = await api("/rejects?limit=20");
      expectShape(Array.isArray(r.rejects), "rejects is not a list");
      const items = r.rejects.map((x) => el("li", {},
        el("strong", {}, String(x.code)), " ",
        x.thing ? `(${String(x.thing)}) ` : "",
        String(x.reason), x.time_ms ? ` — ${fullTime(x.time_ms)}` : ""));
      rejectsList.replaceChildren(
        el("h2", {}, "Why messages were rejected"),
        items.length ? el("ul", { class: "reasons" }, ...items) : el("p", {}, "The dead-letter queue is empty."),
        el("p", { class: "hint" }, "A sample of the dead-letter queue (docs/cloud.md, Rejects, explains each code)."));
    } catch (e) {
      rejectsList.replaceChildren(el("p", { class: "problem" }, e.message));
    }
  }

  async function refresh() {
    const t0 = performance.now();
    try {
      const seen = new Set();
      let next = null;
      do {
        const page = await api(`/devices?limit=${PAGE}${next ? `&next=${encodeURIComponent(next)}` : ""}`);
        expectShape(Array.isArray(page.devices), "devices is not a list");
        for (const d of page.devices) {
          checkDevice(d);
          devices.set(d.device, d);
          seen.add(d.device);
        }
        next = typeof page.next === "string" ? page.next : null;
        render();
      } while (next && !stopped);
      for (const name of [...devices.keys()]) if (!seen.has(name)) devices.delete(name);
      render();
      const r = await api("/rejects?limit=0");
      expectShape(typeof r.count === "number", "no count of rejects");
      setText(rejectCount, String(r.count));
      shell.ok(`Fleet updated at ${clockTime(Date.now())}.`);
    } catch (e) {
      if (e.kind !== "auth") shell.fail(e.message);
    }
    if (!stopped) timer = setTimeout(refresh, Math.max(REFRESH_MS, performance.now() - t0));
  }

  refresh();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
