// Times in the viewer's time zone, readings with their units.
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const full = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  timeZoneName: "short",
});

export function isTime(ms) {
  return typeof ms === "number" && Number.isFinite(ms) && ms > 0;
}

export function clockTime(ms) {
  return isTime(ms) ? clock.format(new Date(ms)) : "-";
}

export function fullTime(ms) {
  return isTime(ms) ? full.format(new Date(ms)) : "never";
}

// "12 s ago", "4 min ago": a short age, with the full time beside it in the title.
export function ago(ms, now = Date.now()) {
  if (!isTime(ms)) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function celsius(v) {
  return typeof v === "number" ? `${v.toFixed(1)} °C` : "n/a (sensor fault)";
}

export function amperes(v) {
  return typeof v === "number" ? `${v.toFixed(2)} A` : "n/a (sensor fault)";
}

export function degrees(v) {
  return typeof v === "number" ? `${v.toFixed(1)}°` : "-";
}

export function degreesPerSecond(v) {
  return typeof v === "number" ? `${v} °/s` : "-";
}
