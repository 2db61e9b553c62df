// The page's building blocks: elements, formats, the per-minute chart, progress bars and timeline
// items. Loaded first; everything is set with textContent (never innerHTML).
"use strict";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (key === "text") node.textContent = value;
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const enc = encodeURIComponent;
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const fmtSeconds = (s) => (s === null || s === undefined ? "—" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`);
const fmtPercent = (r) => `${(r * 100).toFixed(1)}%`;
const fmtClock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const fmtBytes = (b) => (b > 1048576 ? `${(b / 1048576).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);
const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

// The smallest of 1, 2, 5, 10, 20, 50, ... at or above n: the top of a chart's scale.
function niceCeil(n) {
  let step = 1;
  while (true) {
    for (const m of [1, 2, 5]) if (m * step >= n) return m * step;
    step *= 10;
  }
}

// Completed (stacked under failed) jobs per minute, with a y axis in jobs/min and a time axis.
function chart(history, width = 360, height = 96) {
  const left = 40, right = 8, top = 8, bottom = 18;
  const plotW = width - left - right, plotH = height - top - bottom;
  const n = history.minutes.length;
  const totals = history.completed.map((c, i) => c + history.failed[i]);
  const ymax = niceCeil(Math.max(1, ...totals));
  const svg = svgEl("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  svg.append(svgEl("title", {}, `completed and failed jobs per minute, last ${n} minutes`));
  const yOf = (v) => top + plotH - (v / ymax) * plotH;
  for (const v of ymax >= 2 ? [0, ymax / 2, ymax] : [0, ymax]) {
    svg.append(svgEl("line", { class: "grid", x1: left, x2: left + plotW, y1: yOf(v), y2: yOf(v) }));
    svg.append(svgEl("text", { class: "axis", x: left - 4, y: yOf(v) + 3, "text-anchor": "end" }, v === ymax ? `${v}/min` : String(v)));
  }
  const bar = plotW / n;
  history.minutes.forEach((start, i) => {
    let y = top + plotH;
    for (const kind of ["completed", "failed"]) {
      const h = (history[kind][i] / ymax) * plotH;
      if (h <= 0) continue;
      y -= h;
      const rect = svgEl("rect", { class: kind, x: left + i * bar, y, width: Math.max(bar - 1, 1), height: h });
      rect.append(svgEl("title", {}, `${fmtClock(start)}: ${history.completed[i]} completed, ${history.failed[i]} failed`));
      svg.append(rect);
    }
  });
  svg.append(svgEl("line", { class: "axis-line", x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH }));
  const base = top + plotH + 13;
  svg.append(svgEl("text", { class: "axis", x: left, y: base }, fmtClock(history.minutes[0])));
  svg.append(svgEl("text", { class: "axis", x: left + plotW / 2, y: base, "text-anchor": "middle" }, fmtClock(history.minutes[Math.floor(n / 2)])));
  svg.append(svgEl("text", { class: "axis", x: left + plotW, y: base, "text-anchor": "end" }, "now"));
  return svg;
}

function legend() {
  return el("div", { class: "legend" }, el("span", { class: "key completed", text: "completed" }), el("span", { class: "key failed", text: "failed" }));
}

// A progress value as a bar: a number is a percent; an object may give "percent" (else "done" of
// "of" or "total"), a "step" name and "step_number" of "steps". Anything else is shown as its JSON.
function progressOf(value) {
  if (typeof value === "number") return { percent: value, label: `${Math.round(value)}%` };
  if (value === null || typeof value !== "object") return { percent: null, label: "" };
  const num = (v) => typeof v === "number" && Number.isFinite(v);
  const total = num(value.of) ? value.of : value.total;
  let percent = num(value.percent) ? value.percent : null;
  if (percent === null && num(value.done) && num(total) && total > 0) percent = (100 * value.done) / total;
  const parts = [];
  if (typeof value.step === "string") parts.push(value.step);
  if (num(value.step_number) && num(value.steps)) parts.push(`${value.step_number} of ${value.steps}`);
  else if (num(value.done) && num(total)) parts.push(`${value.done} of ${total}`);
  if (percent !== null) parts.push(`${Math.round(percent)}%`);
  return { percent, label: parts.length ? parts.join(" · ") : JSON.stringify(value) };
}

function fillProgress(box, value) {
  const { percent, label } = progressOf(value);
  const bar = el("progress", { max: "100", value: percent === null ? null : String(Math.min(Math.max(percent, 0), 100)), "aria-label": label });
  box.replaceChildren(...(value === null || value === undefined ? [el("span", { class: "muted", text: "—" })] : [bar, el("span", { class: "progress-label", text: label })]));
}

// A progress cell or field for a job; live progress events find it by data-progress.
function progressBox(jobId, value) {
  const box = el("span", { class: "progress", "data-progress": jobId });
  fillProgress(box, value);
  return box;
}

function showProgress(jobId, value) {
  for (const box of document.querySelectorAll("[data-progress]")) if (box.dataset.progress === jobId) fillProgress(box, value);
}

// One event of the timeline: its time, name and what it carries.
function timelineItem(event) {
  const data = { ...event.data };
  const attempt = data.attempt;
  delete data.attempt;
  let detail = "";
  if (event.name === "progress") detail = progressOf(data.progress).label;
  else if (Object.keys(data).length) detail = Object.entries(data).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
  return el(
    "li",
    { "data-event": event.name },
    el("time", { datetime: event.timestamp, text: new Date(event.timestamp).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false }) }),
    el("span", { class: `badge ${event.name}`, text: event.name }),
    attempt !== undefined ? el("span", { class: "muted", text: `attempt ${attempt}` }) : null,
    detail ? el("span", { class: "detail", text: detail }) : null,
  );
}
