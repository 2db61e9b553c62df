// The jobqueue dashboard: one page over the JSON API. Each view is re-read when the queues' event
// stream (/api/events, Server-Sent Events) says something moved, and every few seconds besides;
// without the stream (refused, or Redis away) it is re-read every POLL_MS.
// Everything shown is set with textContent (never innerHTML), so payloads and errors stay text.
"use strict";

const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const BASE = meta("jq-base");
const CSRF = meta("jq-csrf");
const POLL_MS = Number(meta("jq-poll")) || 2000;
const STATES = ["waiting", "active", "delayed", "paused", "completed", "failed"];
const CANCELLABLE = ["waiting", "active", "delayed", "paused"];
const PAGE_SIZE = 20;
// With the live stream open, views are re-read on events, and on a timer this much slower only
// for what has no event (heartbeats, the minute of the charts).
const LIVE_POLL_MS = POLL_MS * 5;
const LIVE_RETRY_MS = 10000; // a refused or closed stream is tried again this often
const LOG_TAIL = 200;

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

function showMessage(text) {
  const box = document.getElementById("message");
  box.textContent = text || "";
  box.hidden = !text;
}

async function api(path, options = {}) {
  const response = await fetch(BASE + "/api" + path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// Every action is confirmed, POSTed with the CSRF token, then the view is read again at once.
async function act(question, path, body = {}) {
  if (!window.confirm(question)) return;
  try {
    await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(body),
    });
    showMessage("");
  } catch (err) {
    showMessage(err.message);
  }
  await refresh();
}

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

// --- views: each builds its skeleton once and returns a refresh function ---------------------

function overviewView(root) {
  root.append(el("h1", { text: "Queues" }));
  const body = el("tbody");
  const heads = ["queue", "state", ...STATES, "workers", "done/h", "failure rate", "p50", "p95"];
  root.append(el("table", { id: "queues" }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { text: h })))), body));
  const charts = el("div", { id: "charts" });
  root.append(el("h2", { text: "Last hour: completed and failed jobs per minute" }), legend(), charts);
  const schedules = el("tbody");
  const scheduleHeads = ["kind", "id", "queue", "pattern", "zone", "next run", "fired", ""];
  root.append(
    el("h2", { text: "Schedules" }, el("span", { class: "muted", text: " (arq-cron: a cron job of a worker settings class)" })),
    el("table", { id: "schedules" }, el("thead", {}, el("tr", {}, scheduleHeads.map((h) => el("th", { text: h })))), schedules),
  );
  return async () => {
    const [data, listing] = await Promise.all([api("/queues"), api("/schedules")]);
    schedules.replaceChildren(...listing.schedules.map(scheduleRow));
    if (!listing.schedules.length) schedules.append(el("tr", {}, el("td", { colspan: scheduleHeads.length, class: "muted", text: "no schedules" })));
    document.getElementById("redis-memory").textContent = `Redis ${fmtBytes(data.redis_used_memory)}`;
    body.replaceChildren(
      ...data.queues.map((q) =>
        el(
          "tr",
          { "data-queue": q.name },
          el("td", {}, el("a", { href: `#/queue/${enc(q.name)}`, text: q.name })),
          el("td", {}, el("span", { class: q.paused ? "badge paused" : "badge", text: q.paused ? "paused" : "running" })),
          STATES.map((s) => el("td", { class: "num", "data-count": s, text: q.counts[s] })),
          el("td", { class: "num" }, el("a", { href: `#/workers/${enc(q.name)}`, text: q.workers })),
          el("td", { class: "num", "data-done": "", title: `${q.completed} completed in the last ${q.window_minutes} min (${q.throughput_per_minute} per minute)`, text: doneInWindow(q) }),
          el("td", { class: "num", text: fmtPercent(q.failure_rate) }),
          el("td", { class: "num", text: fmtSeconds(q.duration_p50) }),
          el("td", { class: "num", text: fmtSeconds(q.duration_p95) }),
        ),
      ),
    );
    charts.replaceChildren(...data.queues.map((q) => el("div", {}, el("div", { class: "muted", text: q.name }), chart(q.history))));
  };
}

// Completed jobs per hour: the window's count when the window is the hour (so 2 jobs read 2, never 0.0).
function doneInWindow(q) {
  const perHour = (q.completed * 60) / q.window_minutes;
  return Number.isInteger(perHour) ? String(perHour) : perHour.toFixed(1);
}

function scheduleRow(row) {
  const own = row.kind === "schedule";
  const fired = own ? `${row.fired}${row.limit === null ? "" : ` of ${row.limit}`}` : "—";
  const next = row.next_run ? fmtTime(row.next_run) : "finished";
  const until = own && row.end ? ` (until ${fmtTime(row.end)})` : "";
  return el(
    "tr",
    { "data-schedule": row.id, "data-kind": row.kind },
    el("td", {}, el("span", { class: own ? "badge" : "badge cron", text: row.kind })),
    el("td", { text: row.id, title: own ? JSON.stringify(row.payload) : row.settings }),
    el("td", {}, el("a", { href: `#/queue/${enc(row.queue)}`, text: row.queue })),
    el("td", { text: row.pattern }),
    el("td", { text: row.tz }),
    el("td", {}, next + until, own && row.error ? el("div", { class: "error", text: `last slot skipped: ${row.error}` }) : null),
    el("td", { class: "num", text: fired }),
    el("td", {}, own ? el("button", { class: "danger remove", onclick: () => act(`Remove schedule ${row.id}? Jobs it already enqueued stay.`, `/schedules/${enc(row.id)}/remove`) }, "Remove") : null),
  );
}

function queueView(root, name, state, page) {
  state = STATES.includes(state) ? state : "waiting";
  page = Math.max(1, Number(page) || 1);
  const q = enc(name);
  const title = el("h1", {}, `Queue ${name} `, el("span", { id: "queue-state", class: "badge" }));
  const pauseButton = el("button", { id: "pause" });
  const cleanStatus = el("select", { id: "clean-status" }, ["completed", "failed", "waiting", "delayed"].map((s) => el("option", { value: s, text: s })));
  const cleanGrace = el("input", { id: "clean-grace", type: "number", min: "0", value: "3600", title: "older than (seconds)", size: "7" });
  const lookup = el("input", { id: "lookup", placeholder: "job id", size: "30" });
  root.append(
    title,
    el(
      "div",
      { class: "toolbar" },
      pauseButton,
      el("button", { id: "retry-all", onclick: () => act(`Retry every failed job of ${name}?`, `/queues/${q}/retry-failed`) }, "Retry all failed"),
      el("button", { class: "danger", onclick: () => act(`Remove every waiting job of ${name}?`, `/queues/${q}/drain`) }, "Drain"),
      el("span", { class: "muted" }, "Clean"),
      cleanStatus,
      el("span", { class: "muted" }, "older than"),
      cleanGrace,
      el("span", { class: "muted" }, "s"),
      el("button", {
        class: "danger",
        onclick: () => act(`Remove ${cleanStatus.value} jobs of ${name} older than ${cleanGrace.value}s?`, `/queues/${q}/clean`, {
          status: cleanStatus.value,
          grace: Number(cleanGrace.value),
        }),
      }, "Clean"),
      el("a", { href: `#/workers/${q}` }, "Workers"),
      lookup,
      el("button", { onclick: () => lookup.value && (location.hash = `#/job/${enc(lookup.value.trim())}`) }, "Find"),
    ),
  );
  const tabs = el("nav", { class: "tabs" });
  const chartBox = el("div");
  const body = el("tbody");
  const pager = el("div", { class: "toolbar" });
  root.append(chartBox, tabs);
  const timeHead = { delayed: "due", active: "started", completed: "finished", failed: "finished" }[state] || "due";
  const heads = ["job", "priority", "attempts", "enqueued", timeHead, state === "active" ? "progress" : "error", ""];
  root.append(el("table", { id: "jobs" }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { text: h })))), body), pager);

  const refresh = async () => {
    const [detail, list] = await Promise.all([api(`/queues/${q}`), api(`/queues/${q}/jobs?state=${state}&page=${page}&size=${PAGE_SIZE}`)]);
    const badge = document.getElementById("queue-state");
    badge.textContent = detail.paused ? "paused" : "running";
    badge.className = detail.paused ? "badge paused" : "badge";
    pauseButton.textContent = detail.paused ? "Resume" : "Pause";
    pauseButton.onclick = () => act(`${detail.paused ? "Resume" : "Pause"} ${name}?`, `/queues/${q}/${detail.paused ? "resume" : "pause"}`);
    chartBox.replaceChildren(legend(), chart(detail.history, 720, 120));
    tabs.replaceChildren(
      ...STATES.map((s) => el("a", { href: `#/queue/${q}/${s}`, class: s === state ? "current" : null, "data-state": s }, `${s} (${detail.counts[s]})`)),
    );
    body.replaceChildren(
      ...list.jobs.map((job) => {
        const id = enc(job.job_id);
        const buttons = [];
        if (job.state === "failed") buttons.push(el("button", { class: "retry", onclick: () => act(`Retry ${job.job_id}?`, `/jobs/${id}/retry`) }, "Retry"));
        if (job.state === "delayed") buttons.push(el("button", { class: "promote", onclick: () => act(`Run ${job.job_id} now?`, `/jobs/${id}/promote`) }, "Promote"));
        if (CANCELLABLE.includes(job.state)) buttons.push(el("button", { class: "danger cancel", onclick: () => cancel(job) }, "Cancel"));
        if (job.state !== "active") buttons.push(el("button", { class: "danger remove", onclick: () => act(`Remove ${job.job_id}?`, `/jobs/${id}/remove`) }, "Remove"));
        const when = { delayed: job.due_at, active: job.started_at, completed: job.finished_at, failed: job.finished_at }[state] ?? job.due_at;
        return el(
          "tr",
          { "data-job": job.job_id },
          el("td", {}, el("a", { href: `#/job/${id}`, text: job.job_id })),
          el("td", { class: "num", text: job.priority ?? "—" }),
          el("td", { class: "num", text: job.attempts_made }),
          el("td", { text: fmtTime(job.enqueued_at) }),
          el("td", { text: fmtTime(when) }),
          state === "active" ? el("td", {}, progressBox(job.job_id, job.progress)) : el("td", { class: "error", title: job.error || "", text: job.error || "" }),
          el("td", {}, buttons),
        );
      }),
    );
    const pages = Math.max(1, Math.ceil(list.total / PAGE_SIZE));
    pager.replaceChildren(
      el("a", { href: page > 1 ? `#/queue/${q}/${state}/${page - 1}` : null }, "‹ previous"),
      el("span", { class: "muted", text: `page ${page} of ${pages} (${list.total} jobs)` }),
      el("a", { href: page < pages ? `#/queue/${q}/${state}/${page + 1}` : null }, "next ›"),
    );
  };
  refresh.live = `queue=${q}&compact=1`;
  refresh.gapMs = 500;
  return refresh;
}

// Cancel: a waiting, delayed or paused job ends failed at once; a running one within about a second.
function cancel(job) {
  const running = job.state === "active" ? " Its worker stops it within about a second." : "";
  return act(`Cancel ${job.job_id}? It ends failed (JobCancelled) and is not retried.${running}`, `/jobs/${enc(job.job_id)}/cancel`);
}

function jobView(root, jobId) {
  const box = el("div");
  const id = enc(jobId);
  // Kept across refreshes: the timeline grows from the last event read; the logs are re-read.
  const timeline = el("ol", { id: "job-timeline", class: "timeline" });
  const logs = el("pre", { id: "job-logs", class: "logs" });
  const logsHead = el("h2", { text: "Logs" });
  let lastEvent = null;
  root.append(el("h1", { text: `Job ${jobId}` }), box, logsHead, logs, el("h2", { text: "Timeline" }), timeline);
  const refresh = async () => {
    let job, lines, events;
    try {
      [job, lines, events] = await Promise.all([
        api(`/jobs/${id}`),
        api(`/jobs/${id}/logs?tail=${LOG_TAIL}`),
        api(`/jobs/${id}/events${lastEvent ? `?since=${enc(lastEvent)}` : ""}`),
      ]);
    } catch (err) {
      box.replaceChildren(el("p", { class: "muted", text: err.message }));
      return;
    }
    refresh.pollAlways = job.state === "active"; // log lines come without events
    const q = enc(job.queue_name);
    const buttons = [];
    if (job.state === "failed") buttons.push(el("button", { id: "job-retry", onclick: () => act(`Retry ${jobId}?`, `/jobs/${id}/retry`) }, "Retry"));
    if (job.state === "delayed") buttons.push(el("button", { id: "job-promote", onclick: () => act(`Run ${jobId} now?`, `/jobs/${id}/promote`) }, "Promote"));
    if (CANCELLABLE.includes(job.state)) buttons.push(el("button", { class: "danger", id: "job-cancel", onclick: () => cancel(job) }, "Cancel"));
    if (job.state !== "active") buttons.push(el("button", { class: "danger", id: "job-remove", onclick: () => act(`Remove ${jobId}?`, `/jobs/${id}/remove`) }, "Remove"));
    const field = (label, value) => [el("dt", { text: label }), el("dd", {}, value)];
    const parts = [
      el("div", { class: "toolbar" }, el("a", { href: `#/queue/${q}/${job.state}` }, `← ${job.queue_name}`), buttons),
      el(
        "dl",
        {},
        field("state", el("span", { id: "job-state", class: `badge ${job.state}`, text: job.state })),
        field("progress", progressBox(jobId, job.progress)),
        field("function", job.function),
        field("priority", job.priority ?? "—"),
        field("attempts", job.attempts_made),
        field("enqueued", fmtTime(job.enqueued_at)),
        job.due_at ? field("due", fmtTime(job.due_at)) : null, // only a delayed job has one
        field("started", fmtTime(job.started_at)),
        field("finished", fmtTime(job.finished_at)),
      ),
      el("h2", { text: "Payload" }),
      el("pre", { id: "job-payload", text: JSON.stringify(job.payload, null, 2) }),
      job.error ? [el("h2", { text: "Error" }), el("pre", { id: "job-error", class: "error", text: job.error })] : null,
      job.traceback ? [el("h2", { text: "Traceback" }), el("pre", { id: "job-traceback", class: "error", text: job.traceback })] : null,
      job.result !== null && job.result !== undefined ? [el("h2", { text: "Result" }), el("pre", { id: "job-result", text: JSON.stringify(job.result, null, 2) })] : null,
    ];
    box.replaceChildren(...parts.flat().filter((part) => part !== null));
    logsHead.textContent = lines.lines.length >= LOG_TAIL ? `Logs (the last ${LOG_TAIL} lines)` : "Logs";
    logs.textContent = lines.lines.length ? lines.lines.join("\n") : "no log lines";
    logs.classList.toggle("muted", !lines.lines.length);
    lastEvent = events.last_id;
    timeline.append(...events.events.map(timelineItem));
    if (!timeline.children.length) timeline.append(el("li", { class: "muted empty", text: "no events kept for this job" }));
    else timeline.querySelector(".empty")?.remove();
  };
  refresh.live = `job=${id}`;
  refresh.everyEvent = true; // each event of the job may add to its timeline
  refresh.gapMs = SOON_MS;
  return refresh;
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

function workersView(root, name) {
  const body = el("tbody");
  const heads = ["id", "host", "pid", "concurrency", "running", "started", "last heartbeat"];
  root.append(
    el("h1", {}, `Workers of `, el("a", { href: `#/queue/${enc(name)}`, text: name })),
    el("table", { id: "workers" }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { text: h })))), body),
  );
  const refresh = async () => {
    const data = await api(`/queues/${enc(name)}/workers`);
    body.replaceChildren(
      ...data.workers.map((w) =>
        el("tr", {}, [w.id, w.host, w.pid, w.concurrency, w.running].map((v) => el("td", { text: v })), [w.started_at, w.last_heartbeat].map((ms) => el("td", { text: new Date(ms).toLocaleString() }))),
      ),
    );
    if (!data.workers.length) body.append(el("tr", {}, el("td", { colspan: heads.length, class: "muted", text: "no live workers" })));
  };
  refresh.live = `queue=${enc(name)}&compact=1`;
  return refresh;
}

// --- routing, live events and polling ---------------------------------------------------------

let current = null;
let inFlight = null; // one refresh at a time, so a view's incremental reads never interleave
let again = false;
let lastRefresh = 0;

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const root = document.getElementById("view");
  root.replaceChildren();
  showMessage("");
  if (parts[0] === "queue" && parts[1]) current = queueView(root, parts[1], parts[2], parts[3]);
  else if (parts[0] === "job" && parts[1]) current = jobView(root, parts.slice(1).join("/"));
  else if (parts[0] === "workers" && parts[1]) current = workersView(root, parts[1]);
  else current = overviewView(root);
  connectLive(current.live || "compact=1");
  refresh();
}

async function refresh() {
  if (inFlight) {
    again = true;
    return inFlight;
  }
  inFlight = (async () => {
    do {
      again = false;
      const view = current;
      try {
        await view();
        lastRefresh = Date.now();
        document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (err) {
        if (view === current) showMessage(err.message);
      }
    } while (again);
  })();
  try {
    await inFlight;
  } finally {
    inFlight = null;
  }
}

// The stream of the current view's events (but in a job's view, each queue's last event and each
// job's last progress, at most four times a second): progress is shown as it comes; any other
// event (any event at all, in a job's view) re-reads the view, at most once per view.gapMs.
const live = { source: null, params: null, open: false, retry: null, soon: null };
const SOON_MS = 100;
const GAP_MS = 1000; // the overview reads every queue's summary: not more often than this

function setLive(open) {
  live.open = open;
  const badge = document.getElementById("live");
  badge.textContent = open ? "live" : `polling every ${POLL_MS / 1000} s`;
  badge.className = open ? "badge" : "badge off";
}

function connectLive(params) {
  if (live.source && live.params === params && live.source.readyState !== EventSource.CLOSED) return;
  if (live.source) live.source.close();
  clearTimeout(live.retry);
  live.params = params;
  const source = new EventSource(`${BASE}/api/events?${params}`);
  live.source = source;
  source.onopen = () => {
    setLive(true);
    refresh(); // what moved before the stream opened
  };
  source.onmessage = (message) => onEvents(JSON.parse(message.data));
  source.onerror = () => {
    // CONNECTING: the browser reconnects by itself, resuming after the last event. CLOSED: the
    // server refused (too many streams, Redis away): poll, and try again later.
    if (source.readyState !== EventSource.CLOSED || live.source !== source) return;
    setLive(false);
    live.retry = setTimeout(() => live.source === source && connectLive(params), LIVE_RETRY_MS);
  };
}

function onEvents(events) {
  let moved = false;
  for (const event of events) {
    if (event.name === "progress") showProgress(event.job_id, event.data.progress);
    if (event.name !== "progress" || current.everyEvent) moved = true;
  }
  if (moved && !live.soon) {
    const wait = Math.max(SOON_MS, lastRefresh + (current.gapMs || GAP_MS) - Date.now());
    live.soon = setTimeout(() => {
      live.soon = null;
      refresh();
    }, wait);
  }
}

window.addEventListener("hashchange", route);
setLive(false);
route();
setInterval(() => {
  const quiet = live.open && !current.pollAlways;
  if (!quiet || Date.now() - lastRefresh >= LIVE_POLL_MS) refresh();
}, POLL_MS);
