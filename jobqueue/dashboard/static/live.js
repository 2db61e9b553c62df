// Routing (#/... deep links), the live event stream and polling. Loaded last: it starts the page.
"use strict";

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
