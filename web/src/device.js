// The device page: its state as the device reported it, the commands (Stop always there) and
// every command with who sent it and what the device answered, and the one poll that keeps the
// page current. The history (charts, events and alerts over a chosen time window) is drawn by
// device-history.js; this view places it on the page and asks it to refresh on each poll.
import { ApiError, api, expectShape } from "./api.js";
import { makeDeviceHistory } from "./device-history.js";
import { el, routeHref, setText } from "./dom.js";
import { connection, stateBadge } from "./fleet.js";
import { ago, amperes, celsius, clockTime, degrees, degreesPerSecond, fullTime, isTime } from "./format.js";
import { SPEED } from "./limits.js";

const POLL_MS = 1000;
const ACK_TIMEOUT_MS = 10000; // no ack by then: the page says so

function outcome(c, now) {
  if (c.ack) {
    const a = c.ack;
    const state = typeof a.state === "string" ? ` (device now ${a.state})` : "";
    return a.ok === true ? `done: ${String(a.result)}${state}` : `refused: ${String(a.result)}${state}`;
  }
  return now - c.issued_at > ACK_TIMEOUT_MS ? `no ack recorded after ${ACK_TIMEOUT_MS / 1000} s` : "waiting for the ack…";
}

export function deviceView(shell, thing) {
  performance.clearMarks("mg:device-open");
  performance.mark("mg:device-open");
  const base = `/devices/${encodeURIComponent(thing)}`;
  let stopped = false;
  let timer = null;
  let device = null;
  const pending = new Map(); // command id -> {cmd, sentAt} until its ack (or the timeout)

  // --- status -----------------------------------------------------------------------------
  const title = el("h1", {}, thing);
  const stateCell = el("dd", { id: "device-state" }, "…");
  const since = el("dd", {});
  const connCell = el("dd", {});
  const seenCell = el("dd", {});
  const tempCell = el("dd", {});
  const currentCell = el("dd", {});
  const posCell = el("dd", {});
  const speedCell = el("dd", {});
  const fwCell = el("dd", {});
  const alertBanner = el("p", { class: "alert-banner", hidden: true });
  const status = el("section", { "aria-labelledby": "status-h" },
    el("h2", { id: "status-h" }, "Now, as the device reported it"),
    alertBanner,
    el("dl", { class: "facts" },
      el("dt", {}, "State"), stateCell, el("dt", {}, "Since"), since,
      el("dt", {}, "Connection"), connCell, el("dt", {}, "Last seen"), seenCell,
      el("dt", {}, "Temperature"), tempCell, el("dt", {}, "Current"), currentCell,
      el("dt", {}, "Position"), posCell, el("dt", {}, "Speed"), speedCell,
      el("dt", {}, "Firmware"), fwCell));

  // --- commands -----------------------------------------------------------------------------
  const feedback = el("p", { class: "feedback", id: "command-feedback", role: "status", "aria-live": "polite" });
  const stopButton = el("button", { type: "button", class: "stop", id: "stop" },
    el("span", { "aria-hidden": "true" }, "■ "), "Stop motor");
  const startButton = el("button", { type: "button", id: "start", hidden: true },
    el("span", { "aria-hidden": "true" }, "▶ "), "Start motor…");
  const startNote = el("p", { class: "hint", id: "start-note" });
  const speedInput = el("input", { id: "speed", type: "number", min: SPEED.min, max: SPEED.max, step: 1, value: 60,
    inputmode: "numeric" });
  const speedButton = el("button", { type: "submit" }, "Set speed");
  const speedForm = el("form", { class: "speed" },
    el("label", { for: "speed" }, `Sweep speed (${SPEED.min}–${SPEED.max} °/s)`), speedInput, speedButton);
  const confirmYes = el("button", { type: "button", id: "confirm-start" }, "Start the motor");
  const confirmNo = el("button", { type: "button", class: "quiet", id: "cancel-start" }, "Cancel");
  const confirmText = el("p", {});
  const dialog = el("dialog", { id: "start-dialog", "aria-labelledby": "start-dialog-h" },
    el("h2", { id: "start-dialog-h" }, "Start the motor?"), confirmText,
    el("div", { class: "buttons" }, confirmYes, confirmNo));
  const commandsBody = el("tbody", {}, el("tr", {}, el("td", { colspan: 4 }, "Loading…")));
  const commandsPanel = el("section", { "aria-labelledby": "commands-h" },
    el("h2", { id: "commands-h" }, "Commands"),
    el("div", { class: "command-row" }, stopButton, startButton), startNote, speedForm, feedback, dialog,
    el("h3", {}, "Sent to this device"),
    el("div", { class: "table-wrap" }, el("table", { class: "commands" },
      el("thead", {}, el("tr", {}, ...["Sent", "Command", "Sent by", "Outcome"].map((h) => el("th", { scope: "col" }, h)))),
      commandsBody)));

  async function send(body, label) {
    const sentAt = Date.now();
    setText(feedback, `${label}: sending…`);
    try {
      const r = await api(`${base}/commands`, { method: "POST", body });
      expectShape(typeof r.id === "string", "no command id");
      pending.set(r.id, { label, sentAt });
      setText(feedback, `${label} sent at ${clockTime(sentAt)} (id ${r.id}); waiting for the device's ack…`);
    } catch (e) {
      setText(feedback, `${label} was not sent: ${e.message}`);
    }
  }

  stopButton.addEventListener("click", () => send({ cmd: "stop" }, "Stop"));
  startButton.addEventListener("click", () => {
    setText(confirmText, `${thing} will start its sweep at once. Make sure no one is at the machine.`);
    dialog.showModal();
    confirmNo.focus();
  });
  confirmNo.addEventListener("click", () => dialog.close());
  confirmYes.addEventListener("click", () => {
    dialog.close();
    send({ cmd: "start" }, "Start");
  });
  speedForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = Number(speedInput.value);
    if (!Number.isInteger(v) || v < SPEED.min || v > SPEED.max) {
      setText(feedback, `Speed must be a whole number from ${SPEED.min} to ${SPEED.max} °/s.`);
      return;
    }
    send({ cmd: "set_speed", speed: v }, `Set speed ${v} °/s`);
  });

  // --- history: charts, events and alerts over the chosen window ------------------------------
  const history = makeDeviceHistory(shell, { base, isStopped: () => stopped });

  // --- the commands sent, their acks, and the device's state ---------------------------------
  function showCommands(list) {
    const now = Date.now();
    commandsBody.replaceChildren(...(list.length ? list.map((c) => el("tr", { "data-command": String(c.id) },
      el("td", {}, fullTime(c.issued_at)),
      el("td", {}, String(c.cmd), c.speed !== undefined ? ` ${String(c.speed)} °/s` : ""),
      el("td", {}, String(c.sender), c.auth === "cognito" ? " (dashboard)" : c.auth === "sigv4" ? " (SigV4)" : ""),
      el("td", { class: c.ack ? (c.ack.ok ? "ok" : "refused") : "" }, outcome(c, now))))
      : [el("tr", {}, el("td", { colspan: 4 }, "No commands sent yet."))]));
    for (const [id, p] of pending) {
      const c = list.find((x) => x.id === id);
      if (c && c.ack) {
        setText(feedback, `${p.label} acknowledged at ${clockTime(Date.now())}: ${outcome(c, now)}.`);
        pending.delete(id);
      } else if (now - p.sentAt > ACK_TIMEOUT_MS) {
        setText(feedback, `${p.label}: no ack from the device after ${ACK_TIMEOUT_MS / 1000} s. It may be offline; ` +
          "the state above is what it last reported, not what was asked.");
        pending.delete(id);
      }
    }
  }

  async function loadCommands() {
    const r = await api(`${base}/commands?limit=20`);
    expectShape(Array.isArray(r.commands), "commands is not a list");
    showCommands(r.commands);
  }

  function showDevice(d) {
    device = d;
    stateCell.replaceChildren(stateBadge(d.state_now));
    setText(since, isTime(d.state_since_ms) ? `${fullTime(d.state_since_ms)} (${ago(d.state_since_ms)})` : "-");
    const conn = connection(d);
    const ground = d.online_from === "status" ? "its status message" : d.online_from === "telemetry" ? "how recent its telemetry is" : "";
    connCell.replaceChildren(el("span", { class: `conn conn-${conn.cls}` }, el("span", { class: "icon", "aria-hidden": "true" }, conn.icon),
      " ", conn.text), ground ? ` (from ${ground})` : "");
    setText(seenCell, isTime(d.last_seen_ms) ? `${ago(d.last_seen_ms)} (${fullTime(d.last_seen_ms)})` : "never");
    const s = d.latest_sample;
    setText(tempCell, s ? celsius(s.temperature_c) : "-");
    setText(currentCell, s ? amperes(s.current_a) : "-");
    setText(posCell, s ? degrees(s.position) : "-");
    setText(speedCell, s ? degreesPerSecond(s.speed) : "-");
    setText(fwCell, typeof d.fw === "string" ? d.fw : "-");
    if (d.alert) {
      setText(alertBanner, `⚠ FAULT latched: ${d.alert.reason || "no reason given"}, since ${fullTime(d.alert.since_ms)}. ` +
        "It resets only with the stop button at the machine, once the cause is gone.");
      alertBanner.hidden = false;
    } else alertBanner.hidden = true;
    const canStart = d.remote_start === true && d.state_now === "STOPPED";
    startButton.hidden = !canStart;
    setText(startNote, d.remote_start !== true
      ? "Remote start is not offered: this device was not provisioned to accept it (provision device --remote-start)."
      : canStart ? "" : `Start is offered when the motor is STOPPED (it is ${d.state_now || "unknown"}).`);
  }

  async function tick() {
    try {
      const d = await api(base);
      expectShape(typeof d.device === "string", "a device without a name");
      showDevice(d);
      await history.loadData(false);
      await history.loadEvents();
      await loadCommands();
      shell.ok(`${thing} updated at ${clockTime(Date.now())}.`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        shell.main.replaceChildren(el("h1", {}, thing), el("p", { class: "problem" }, e.message),
          el("p", {}, el("a", { href: routeHref() }, "Back to the fleet")));
        stopped = true;
        return;
      }
      if (e.kind !== "auth") shell.fail(e.message);
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  }

  shell.main.replaceChildren(
    el("p", {}, el("a", { href: routeHref() }, "← Fleet")),
    title,
    el("div", { class: "device-top" }, status, commandsPanel),
    history.chartsSection,
    el("div", { class: "two" }, history.alertsSection, history.eventsSection));

  history.load().then(() => { if (!stopped) tick(); });
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      history.destroyCharts();
    },
  };
}
