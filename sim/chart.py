"""The benchmark's chart, written as SVG by hand (no plotting library): one row per fleet size, three
panels a row: devices connected, messages acknowledged per second, and CPU cores of the simulator and
of the broker with its gateway, each against seconds since the run started.

Input: the runs as make bench-fleet keeps them, [{"devices": N, "timeline": [...], "usage": [...]}],
"timeline" being the Locust side's counters every 2 s and "usage" the CPU samples of sim/local.py.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

PANEL_W, PANEL_H, PAD_L, PAD_B, PAD_T, GAP = 300, 170, 52, 34, 26, 24
COLOURS = {"connected": "#1f6feb", "messages": "#2da44e", "simulator": "#8250df", "broker": "#cf222e"}


def rates(timeline: list) -> list:
    """(t, messages acknowledged per second) between consecutive timeline lines."""
    out = []
    for a, b in zip(timeline, timeline[1:]):
        done = sum(b[k] - a[k] for k in ("telemetry_acked", "events_acked", "acks_acked"))
        out.append((b["t"], done / max(1e-3, b["t"] - a["t"])))
    return out


def _nice_max(v: float) -> float:
    """A round axis top at or above v (1, 2 or 5 times a power of ten)."""
    if v <= 0:
        return 1.0
    p = 1.0
    while p * 10 <= v:
        p *= 10
    while p > v:
        p /= 10
    for m in (1, 2, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


def _panel(x0, y0, title, series, x_max, y_label) -> list:
    """One panel's SVG elements: frame, ticks, and a polyline per (name, [(x, y)]) series."""
    y_top = _nice_max(max([y for _n, pts in series for _x, y in pts] + [0]))
    w, h = PANEL_W - PAD_L - 8, PANEL_H - PAD_B - PAD_T
    left, top = x0 + PAD_L, y0 + PAD_T
    out = ['<text x="%d" y="%d" font-size="12" font-weight="bold">%s</text>' % (left, y0 + 14, escape(title)),
           '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>' % (left, top, w, h)]
    for i in range(5):
        value = y_top * i / 4
        y = top + h - h * i / 4
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>' % (left, y, left + w, y))
        out.append('<text x="%d" y="%.1f" font-size="10" text-anchor="end">%s</text>' % (left - 4, y + 3, _fmt(value)))
    for i in range(5):
        value = x_max * i / 4
        x = left + w * i / 4
        out.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%d</text>' % (x, top + h + 13, value))
    out.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">s since the first connect</text>' % (
        left + w / 2, top + h + 27))
    out.append('<text x="%d" y="%d" font-size="10" transform="rotate(-90 %d %d)" text-anchor="middle">%s</text>' % (
        x0 + 10, top + h // 2, x0 + 10, top + h // 2, escape(y_label)))
    for k, (name, pts) in enumerate(series):
        if not pts:
            continue
        coords = " ".join("%.1f,%.1f" % (left + w * min(x, x_max) / max(x_max, 1e-9), top + h - h * y / y_top)
                          for x, y in pts)
        out.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (COLOURS[name], coords))
        if len(series) > 1:
            out.append('<text x="%d" y="%d" font-size="10" fill="%s">%s</text>' % (
                left + 6, top + 12 + 12 * k, COLOURS[name], escape(name)))
    return out


def _fmt(v: float) -> str:
    return "%d" % v if v >= 10 or v == int(v) else "%.2g" % v


def svg(runs: list) -> str:
    """The whole chart for the runs, one row each."""
    width = 3 * PANEL_W + 2 * GAP
    row_h = PANEL_H + 30
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">' % (
        width, row_h * len(runs) + 10), '<rect width="100%" height="100%" fill="white"/>']
    for r, run in enumerate(runs):
        tl, usage = run["timeline"], run.get("usage", [])
        if not tl:
            continue
        t0 = tl[0]["t"]
        y0 = 10 + r * row_h
        parts.append('<text x="4" y="%d" font-size="13" font-weight="bold">%s devices</text>' % (
            y0 + 2, "{:,}".format(run["devices"])))
        x_max = max([p["t"] - t0 for p in tl] + [1])
        connected = [(p["t"] - t0, p["connected"]) for p in tl]
        msgs = [(t - t0, v) for t, v in rates(tl)]
        cpu = [("simulator", [(u["t"] - t0, u["simulator_cores"]) for u in usage if u["t"] >= t0]),
               ("broker", [(u["t"] - t0, u["broker_cores"]) for u in usage if u["t"] >= t0])]
        parts += _panel(0, y0 + 6, "devices connected", [("connected", connected)], x_max, "devices")
        parts += _panel(PANEL_W + GAP, y0 + 6, "messages acknowledged / s", [("messages", msgs)], x_max, "msg/s")
        parts += _panel(2 * (PANEL_W + GAP), y0 + 6, "CPU (broker = Mosquitto + gateway)", cpu, x_max, "cores")
        if not usage:
            parts.append('<text x="%d" y="%d" font-size="11" fill="#666">%s</text>' % (
                2 * (PANEL_W + GAP) + PAD_L + 10, y0 + 6 + PANEL_H // 2, escape(run.get("usage_note", "not recorded"))))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
