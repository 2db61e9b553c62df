// The jobqueue dashboard: one page over the JSON API. This file holds its settings, the API calls
// and the views; widgets.js (loaded before) the building blocks, live.js (after) the routing and
// the updates: each view is re-read when the queues' event stream (/api/events, Server-Sent
// Events) says something moved, and every few seconds besides; without the stream (refused, or
// Redis away) it is re-read every POLL_MS.
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
          // Each count links to its list: the active count to the running jobs' progress bars.
          STATES.map((s) => el("td", { class: "num", "data-count": s }, el("a", { href: `#/queue/${enc(q.name)}/${s}`, text: q.counts[s] }))),
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
