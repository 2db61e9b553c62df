// The jobqueue dashboard: one page over the JSON API, re-read every few seconds.
// Everything shown is set with textContent (never innerHTML), so payloads and errors stay text.
"use strict";

const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const BASE = meta("jq-base");
const CSRF = meta("jq-csrf");
const POLL_MS = Number(meta("jq-poll")) || 2000;
const STATES = ["waiting", "active", "delayed", "paused", "completed", "failed"];
const PAGE_SIZE = 20;

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

function chart(history, width = 360, height = 60) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const n = history.minutes.length;
  const top = Math.max(1, ...history.completed.map((c, i) => c + history.failed[i]));
  const bar = width / n;
  history.minutes.forEach((start, i) => {
    let y = height;
    for (const kind of ["completed", "failed"]) {
      const h = (history[kind][i] / top) * (height - 4);
      if (h <= 0) continue;
      y -= h;
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("class", kind);
      rect.setAttribute("x", i * bar);
      rect.setAttribute("y", y);
      rect.setAttribute("width", Math.max(bar - 1, 1));
      rect.setAttribute("height", h);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${new Date(start).toLocaleTimeString()}: ${history.completed[i]} completed, ${history.failed[i]} failed`;
      rect.append(title);
      svg.append(rect);
    }
  });
  return svg;
}

// --- views: each builds its skeleton once and returns a refresh function ---------------------

function overviewView(root) {
  root.append(el("h1", { text: "Queues" }));
  const body = el("tbody");
  const heads = ["queue", "state", ...STATES, "workers", "done/min", "failure rate", "p50", "p95"];
  root.append(el("table", { id: "queues" }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { text: h })))), body));
  const charts = el("div", { id: "charts" });
  root.append(el("h2", { text: "Last hour: completed and failed per minute" }), charts);
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
          el("td", { class: "num", text: q.throughput_per_minute.toFixed(1) }),
          el("td", { class: "num", text: fmtPercent(q.failure_rate) }),
          el("td", { class: "num", text: fmtSeconds(q.duration_p50) }),
          el("td", { class: "num", text: fmtSeconds(q.duration_p95) }),
        ),
      ),
    );
    charts.replaceChildren(...data.queues.map((q) => el("div", {}, el("div", { class: "muted", text: q.name }), chart(q.history))));
  };
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
  const heads = ["job", "priority", "attempts", "enqueued", state === "delayed" ? "due" : "finished", "error", ""];
  root.append(el("table", { id: "jobs" }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { text: h })))), body), pager);

  return async () => {
    const [detail, list] = await Promise.all([api(`/queues/${q}`), api(`/queues/${q}/jobs?state=${state}&page=${page}&size=${PAGE_SIZE}`)]);
    const badge = document.getElementById("queue-state");
    badge.textContent = detail.paused ? "paused" : "running";
    badge.className = detail.paused ? "badge paused" : "badge";
    pauseButton.textContent = detail.paused ? "Resume" : "Pause";
    pauseButton.onclick = () => act(`${detail.paused ? "Resume" : "Pause"} ${name}?`, `/queues/${q}/${detail.paused ? "resume" : "pause"}`);
    chartBox.replaceChildren(chart(detail.history, 720, 80));
    tabs.replaceChildren(
      ...STATES.map((s) => el("a", { href: `#/queue/${q}/${s}`, class: s === state ? "current" : null, "data-state": s }, `${s} (${detail.counts[s]})`)),
    );
    body.replaceChildren(
      ...list.jobs.map((job) => {
        const id = enc(job.job_id);
        const buttons = [];
        if (job.state === "failed") buttons.push(el("button", { class: "retry", onclick: () => act(`Retry ${job.job_id}?`, `/jobs/${id}/retry`) }, "Retry"));
        if (job.state === "delayed") buttons.push(el("button", { class: "promote", onclick: () => act(`Run ${job.job_id} now?`, `/jobs/${id}/promote`) }, "Promote"));
        if (job.state !== "active") buttons.push(el("button", { class: "danger remove", onclick: () => act(`Remove ${job.job_id}?`, `/jobs/${id}/remove`) }, "Remove"));
        return el(
          "tr",
          { "data-job": job.job_id },
          el("td", {}, el("a", { href: `#/job/${id}`, text: job.job_id })),
          el("td", { class: "num", text: job.priority ?? "—" }),
          el("td", { class: "num", text: job.attempts_made }),
          el("td", { text: fmtTime(job.enqueued_at) }),
          el("td", { text: fmtTime(state === "delayed" ? job.due_at : job.finished_at) }),
          el("td", { class: "error", title: job.error || "", text: job.error || "" }),
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
}

function jobView(root, jobId) {
  const box = el("div");
  root.append(el("h1", { text: `Job ${jobId}` }), box);
  const id = enc(jobId);
  return async () => {
    let job;
    try {
      job = await api(`/jobs/${id}`);
    } catch (err) {
      box.replaceChildren(el("p", { class: "muted", text: err.message }));
      return;
    }
    const q = enc(job.queue_name);
    const buttons = [];
    if (job.state === "failed") buttons.push(el("button", { id: "job-retry", onclick: () => act(`Retry ${jobId}?`, `/jobs/${id}/retry`) }, "Retry"));
    if (job.state === "delayed") buttons.push(el("button", { id: "job-promote", onclick: () => act(`Run ${jobId} now?`, `/jobs/${id}/promote`) }, "Promote"));
    if (job.state !== "active") buttons.push(el("button", { class: "danger", id: "job-remove", onclick: () => act(`Remove ${jobId}?`, `/jobs/${id}/remove`) }, "Remove"));
    const field = (label, value) => [el("dt", { text: label }), el("dd", {}, value)];
    const parts = [
      el("div", { class: "toolbar" }, el("a", { href: `#/queue/${q}/${job.state}` }, `← ${job.queue_name}`), buttons),
      el(
        "dl",
        {},
        field("state", el("span", { id: "job-state", class: `badge ${job.state}`, text: job.state })),
        field("function", job.function),
        field("priority", job.priority ?? "—"),
        field("attempts", job.attempts_made),
        field("enqueued", fmtTime(job.enqueued_at)),
        field("due", fmtTime(job.due_at)),
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
  };
}

function workersView(root, name) {
  const body = el("tbody");
  const heads = ["id", "host", "pid", "concurrency", "running", "started", "last heartbeat"];
  root.append(
    el("h1", {}, `Workers of `, el("a", { href: `#/queue/${enc(name)}`, text: name })),
    el("table", { id: "workers" }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { text: h })))), body),
  );
  return async () => {
    const data = await api(`/queues/${enc(name)}/workers`);
    body.replaceChildren(
      ...data.workers.map((w) =>
        el("tr", {}, [w.id, w.host, w.pid, w.concurrency, w.running].map((v) => el("td", { text: v })), [w.started_at, w.last_heartbeat].map((ms) => el("td", { text: new Date(ms).toLocaleString() }))),
      ),
    );
    if (!data.workers.length) body.append(el("tr", {}, el("td", { colspan: heads.length, class: "muted", text: "no live workers" })));
  };
}

// --- routing and polling ------------------------------------------------------------------

let current = null;

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const root = document.getElementById("view");
  root.replaceChildren();
  showMessage("");
  if (parts[0] === "queue" && parts[1]) current = queueView(root, parts[1], parts[2], parts[3]);
  else if (parts[0] === "job" && parts[1]) current = jobView(root, parts.slice(1).join("/"));
  else if (parts[0] === "workers" && parts[1]) current = workersView(root, parts[1]);
  else current = overviewView(root);
  refresh();
}

async function refresh() {
  const view = current;
  try {
    await view();
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (view === current) showMessage(err.message);
  }
}

window.addEventListener("hashchange", route);
route();
setInterval(refresh, POLL_MS);
