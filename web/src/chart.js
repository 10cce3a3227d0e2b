// Time-series charts with uPlot: one per quantity, the same x range and cursor on all of them.
// Drag across a chart to zoom (all charts follow); the view's buttons zoom and pan by keyboard.
import uPlot from "uplot";
import { el } from "./dom.js";

const SYNC_KEY = "mg-device";

// series: [{label, stroke, dash, scale, width}], the x values are Unix seconds (uPlot's time scale,
// drawn in the viewer's time zone). thresholds: [{value, label, color, dash}], drawn as labelled
// horizontal lines across the whole plot, and always inside the y range.
export function makeChart(container, { id, title, unit, series, axes, onZoom, thresholds = [] }) {
  const figure = el("figure", { class: "chart", id });
  const caption = el("figcaption", {}, title);
  const plot = el("div", { class: "plot", role: "img", "aria-label": `${title} chart` });
  const summary = el("p", { class: "visually-hidden chart-summary" });
  const key = thresholds.length
    ? el("p", { class: "hint" }, "Dashed lines: ", thresholds.map((t) => t.label).join("; "), ".") : null;
  figure.append(caption, plot, ...(key ? [key] : []), summary);
  const top = Math.max(0, ...thresholds.map((t) => t.value));
  container.append(figure);
  const opts = {
    width: Math.max(280, plot.clientWidth || container.clientWidth || 600),
    height: 200,
    cursor: { sync: { key: SYNC_KEY, setSeries: false }, drag: { x: true, y: false, setScale: true } },
    scales: {
      x: { time: true },
      y: { range: (u, min, max) => [Math.min(min ?? 0, 0), Math.max(max ?? 1, top * 1.08, 1)] },
    },
    legend: { live: true },
    series: [{ label: "time" }, ...series.map((s) => ({
      label: s.label, stroke: s.stroke, dash: s.dash, width: s.width || 1.5, scale: s.scale || "y",
      value: (u, v) => (v === null || v === undefined ? "-" : `${Number(v).toFixed(s.digits ?? 2)} ${s.unit || unit}`),
      points: { show: false },
    }))],
    axes: axes || [{}, { label: unit, size: 60 }],
    hooks: {
      draw: [(u) => drawThresholds(u, thresholds)],
      setSelect: [(u) => {
        if (u.select.width > 0 && onZoom) {
          onZoom(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
        }
      }],
    },
  };
  const chart = new uPlot(opts, [[], ...series.map(() => [])], plot);
  // Tests and the benchmark read the points from the element (no global).
  figure.mgChart = chart;
  const resize = new ResizeObserver(() => {
    const w = Math.max(280, plot.clientWidth);
    if (Math.abs(w - chart.width) > 2) chart.setSize({ width: w, height: 200 });
  });
  resize.observe(plot);
  return {
    chart,
    figure,
    setData(data, keepZoom, text) {
      chart.setData(data, !keepZoom);
      summary.textContent = text || "";
    },
    setX(min, max) {
      chart.setScale("x", { min, max });
    },
    destroy() {
      resize.disconnect();
      chart.destroy();
      figure.remove();
    },
  };
}

function drawThresholds(u, thresholds) {
  const { ctx } = u;
  const dpr = window.devicePixelRatio || 1;
  for (const t of thresholds) {
    const y = Math.round(u.valToPos(t.value, "y", true));
    ctx.save();
    ctx.strokeStyle = t.color;
    ctx.fillStyle = t.color;
    ctx.lineWidth = 1.5 * dpr;
    ctx.setLineDash(t.dash.map((d) => d * dpr));
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.font = `${12 * dpr}px system-ui, sans-serif`;
    ctx.textAlign = "left"; // uPlot leaves the axes' alignment behind
    ctx.textBaseline = "bottom";
    ctx.fillText(t.label, u.bbox.left + 6 * dpr, y - 5 * dpr);
    ctx.restore();
  }
}
