"""The live viewer: one self-contained page, and the JSON it polls.

The page carries its CSS and JavaScript inline and loads nothing else, so it works
offline and behind any proxy; a Content-Security-Policy that allows exactly those two
inline blocks (by hash) and requests to the collector itself makes that a guarantee
rather than a habit. Every value from a message reaches the page through
``textContent``, never as markup: a message is whatever a client sent, and an event
name must not be able to run script in the viewer.

The page asks ``GET /api/events?last=N`` once, then ``?after=<last id>&limit=N``
every second; ids only grow (see ``StoredEvent``), so each row arrives exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs

from .._core.protocol import CALL_TYPES

__all__ = [
    "EVENTS_PATH",
    "FILTERS",
    "JSONL_PATH",
    "MAX_PAGE",
    "PAGE",
    "PAGE_HEADERS",
    "PLAN_PATH",
    "EventsQuery",
    "parse_events_query",
    "parse_filters",
]

EVENTS_PATH: Final = "/api/events"
# Every accepted message, one wire message per line: what a test of another
# language's app, or `cdp-logging plan infer`, reads.
JSONL_PATH: Final = "/api/events.jsonl"
# The tracking plan (see _plan): the rate chart and the schema view poll it.
PLAN_PATH: Final = "/api/plan"
# Rows per answer: enough to catch up quickly, small enough that one answer stays a
# fraction of a second to build and parse.
DEFAULT_PAGE: Final = 200
MAX_PAGE: Final = 1000

_STYLE: Final = """
:root { --line: #d9dde3; --muted: #5f6b7a; --bad: #b42318; --bad-bg: #fef3f2; --pick: #dbe7fd;
        --flag: #93370d; --flag-bg: #fffaeb; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
#events-view { flex: 1; min-height: 0; display: flex; flex-direction: column; }
body { margin: 0; height: 100vh; display: flex; flex-direction: column;
       font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2933; }
header { display: flex; flex-wrap: wrap; gap: 16px; align-items: center; padding: 10px 16px;
         border-bottom: 1px solid var(--line); background: #f7f8fa; }
h1 { font-size: 16px; margin: 0; }
label { color: var(--muted); }
select, input { font: inherit; padding: 3px 6px; margin-left: 4px; }
#status { color: var(--muted); }
#mode { margin-left: auto; font-size: 12px; padding: 2px 8px; border-radius: 10px;
        border: 1px solid var(--line); color: var(--muted); }
#status.down { color: var(--bad); font-weight: 600; }
main { flex: 1; min-height: 0; display: grid;
       grid-template-columns: minmax(0, 1fr) minmax(0, 38%); }
#list { overflow: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th, td.type, td.user, td.when { white-space: nowrap; }
td.what, td.problems { overflow-wrap: anywhere; }
th { position: sticky; top: 0; background: #fff; box-shadow: 0 1px 0 var(--line); }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f2f4f7; }
tbody tr.rejected { background: var(--bad-bg); }
tbody tr.flagged { background: var(--flag-bg); }
tbody tr.flagged td.problems { color: var(--flag); }
tbody tr.picked { background: var(--pick); }
td.problems { color: var(--bad); }
td.type { font-weight: 600; }
td.user, td.when { font-family: ui-monospace, monospace; font-size: 13px; }
#empty { padding: 24px 16px; color: var(--muted); }
aside { border-left: 1px solid var(--line); overflow: auto; padding: 12px 16px;
        background: #fbfbfc; }
aside h2 { font-size: 14px; margin: 0 0 8px; }
#detail-problems { color: var(--bad); padding-left: 18px; }
pre { margin: 0; font: 12px/1.45 ui-monospace, monospace; white-space: pre-wrap;
      overflow-wrap: anywhere; }
nav button { font: inherit; padding: 3px 12px; border: 1px solid var(--line);
             background: #fff; cursor: pointer; }
nav button:first-child { border-radius: 4px 0 0 4px; }
nav button:last-child { border-radius: 0 4px 4px 0; border-left: 0; }
nav button[aria-pressed="true"] { background: #1f2933; color: #fff; border-color: #1f2933; }
#chart { padding: 8px 16px 4px; border-bottom: 1px solid var(--line); }
#chart-head { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center;
              font-size: 12px; color: var(--muted); }
#chart-head strong { color: #1f2933; font-weight: 600; }
#filters { display: flex; flex-wrap: wrap; gap: 16px; }
#legend { display: flex; flex-wrap: wrap; gap: 4px 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 4px; vertical-align: -1px; }
#rate { display: block; width: 100%; height: 72px; margin-top: 4px; background: #fbfbfc;
        border: 1px solid var(--line); }
#chart-axis { display: flex; justify-content: space-between; font-size: 11px;
              color: var(--muted); }
#schema { flex: 1; min-height: 0; overflow: auto; padding: 12px 16px; }
#schema-summary { margin: 0 0 10px; }
#schema-summary.bad { color: var(--bad); font-weight: 600; }
#schema table { max-width: 960px; }
#schema tr.event th { position: static; background: #f7f8fa; font-weight: 600;
                      box-shadow: none; padding-top: 10px; }
#schema td.key, #schema td.types { font-family: ui-monospace, monospace; font-size: 13px; }
#schema .seen { text-align: right; }
#schema td.none { color: var(--muted); font-style: italic; }
#rate line { stroke: var(--line); stroke-width: 1; vector-effect: non-scaling-stroke; }
#schema tr.conflict { background: var(--bad-bg); }
#schema tr.conflict td.flag { color: var(--bad); font-weight: 600; }
#declared { margin: 0 0 18px; max-width: 960px; }
#declared h2 { font-size: 14px; margin: 0 0 6px; }
#declared h2.arrived { margin-top: 22px; }
#declared-summary.bad { color: var(--bad); font-weight: 600; }
#declared tr.never td.state { color: var(--muted); font-style: italic; }
#declared tr.unplanned { background: var(--flag-bg); }
#declared tr.unplanned td.state { color: var(--flag); font-weight: 600; }
#declared tr.violated { background: var(--bad-bg); }
#declared tr.violated td.state, #declared tr.violation td.seen { color: var(--bad); }
#declared td.key { font-family: ui-monospace, monospace; font-size: 13px; }
#declared td.text { color: var(--muted); overflow-wrap: anywhere; }
"""

_SCRIPT: Final = """
"use strict";
const CALL_TYPES = %CALL_TYPES%;
const PAGE = %PAGE%;      // rows asked for per request
const KEEP = 2000;        // rows kept on the page; the oldest go first
const POLL_MS = 1000;

const PLAN_MS = 2000;
// One colour per call type, the same in the chart and its legend.
const COLOURS = { identify: "#2563eb", track: "#16a34a", page: "#9333ea",
  screen: "#db2777", group: "#ea580c", alias: "#0891b2" };
const OTHER = "#6b7280";
// The SVG namespace, read from the page's own chart rather than written out as a URL.
const SVG = document.getElementById("rate").namespaceURI;

const rows = document.getElementById("rows");
const typeFilter = document.getElementById("type-filter");
const userFilter = document.getElementById("user-filter");
const markFilter = document.getElementById("mark-filter");
const statusLine = document.getElementById("status");
const events = new Map();  // id -> event, for the detail panel
let lastId = null;         // null until the first answer, which asks for the latest rows
let picked = null;

document.getElementById("endpoint").textContent = location.origin + "/v1/batch";
for (const type of [...CALL_TYPES, "request"]) typeFilter.append(new Option(type, type));

// Any JSON value as one line of text; a message may hold anything a client sent.
function text(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

// One form for the column, whoever wrote the time: a message's timestamp may carry any
// offset ("+00:00", "+02:00", "Z"), the collector's own times end in "Z". Shown in UTC
// with milliseconds; a timestamp that is not a date is shown as it came.
function instant(value) {
  const raw = text(value);
  const parsed = raw === "" ? NaN : Date.parse(raw);
  return Number.isNaN(parsed) ? raw : new Date(parsed).toISOString();
}

function summary(event) {
  const m = event.message;
  if (m === null) {
    // A request with no message to show: refused for its path, method, key or body.
    const answer = event.status === 0 ? "no answer" : `HTTP ${event.status}`;
    return { type: "request", user: "", what: `${event.method} ${event.path} \u2192 ${answer}`,
      when: instant(event.received_at) };
  }
  if (typeof m !== "object" || Array.isArray(m)) {
    return { type: "-", user: "", what: text(m), when: instant(event.received_at) };
  }
  const type = text(m.type) || "?";
  let what = "";
  if (type === "track") what = text(m.event);
  else if (type === "page" || type === "screen") {
    what = text(m.name) + (m.category == null ? "" : " (" + text(m.category) + ")");
  } else if (type === "group") what = text(m.groupId);
  else if (type === "alias") what = text(m.previousId) + " \\u2192 " + text(m.userId);
  else if (type === "identify" && m.traits && typeof m.traits === "object") {
    what = "traits: " + Object.keys(m.traits).join(", ");
  }
  const user = text(m.userId ?? m.anonymousId);
  return { type, user, what, when: instant(m.timestamp) || instant(event.received_at) };
}

function visible(row) {
  const type = typeFilter.value;
  const user = userFilter.value.trim().toLowerCase();
  const marks = markFilter.value;
  return (!type || row.dataset.type === type) &&
    (!user || row.dataset.user.toLowerCase().includes(user)) &&
    (!marks || row.dataset.marked === String(marks === "marked"));
}

function showCounts() {
  let shown = 0;
  for (const row of rows.rows) if (!row.hidden) shown += 1;
  const total = rows.rows.length;
  document.getElementById("empty").hidden = total > 0;
  statusLine.classList.remove("down");
  statusLine.textContent = shown === total
    ? `${total} events \\u00b7 live` : `${shown} of ${total} events shown \\u00b7 live`;
}

function applyFilters() {
  for (const row of rows.rows) row.hidden = !visible(row);
  showCounts();
}

function add(event) {
  const s = summary(event);
  const row = document.createElement("tr");
  row.dataset.id = String(event.id);
  row.dataset.type = s.type;
  row.dataset.user = s.user;
  row.dataset.marked = String(!event.accepted || event.problems.length > 0);
  // Accepted with marks: the real service would drop or flag it (the lenient mode).
  if (!event.accepted) row.classList.add("rejected");
  else if (event.problems.length > 0) row.classList.add("flagged");
  row.title = `${event.method} ${event.path} received ${event.received_at}, ` +
    `answered HTTP ${event.status}`;
  const cells = [["type", s.type], ["user", s.user], ["what", s.what], ["when", s.when],
    ["problems", event.problems.join("; ")]];
  for (const [name, value] of cells) {
    const cell = row.insertCell();
    cell.className = name;
    cell.textContent = value;
  }
  row.hidden = !visible(row);
  rows.prepend(row);  // newest first: a new event shows without scrolling
  events.set(event.id, event);
  while (rows.rows.length > KEEP) {
    const old = rows.lastElementChild;
    events.delete(Number(old.dataset.id));
    old.remove();
  }
}

function pick(row) {
  const event = events.get(Number(row.dataset.id));
  if (!event) return;
  if (picked) picked.classList.remove("picked");
  picked = row;
  row.classList.add("picked");
  const verdict = !event.accepted ? "rejected"
    : event.problems.length > 0 ? "accepted, the real service would drop or flag it" : "accepted";
  document.getElementById("detail-title").textContent =
    `Event ${event.id}: ${verdict} (HTTP ${event.status}) on ${event.method} ${event.path}, ` +
    `received ${event.received_at}`;
  document.getElementById("detail-problems").replaceChildren(...event.problems.map((problem) => {
    const item = document.createElement("li");
    item.textContent = problem;
    return item;
  }));
  // A request without a message is shown by what it was: its method, path and answer.
  const shownJson = event.message !== null ? event.message
    : { method: event.method, path: event.path, status: event.status };
  document.getElementById("detail-json").textContent = JSON.stringify(shownJson, null, 2);
}

async function poll() {
  let again = POLL_MS;
  try {
    const query = lastId === null ? `last=${PAGE}` : `after=${lastId}&limit=${PAGE}`;
    const answer = await fetch(`%EVENTS_PATH%?${query}`, { cache: "no-store" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const received = (await answer.json()).events;
    for (const event of received) add(event);
    if (received.length > 0) lastId = received[received.length - 1].id;
    else if (lastId === null) lastId = 0;
    if (received.length === PAGE && query.startsWith("after")) again = 0;  // catching up
    showCounts();
  } catch (error) {
    statusLine.classList.add("down");
    statusLine.textContent = `collector unreachable (${error.message}), retrying`;
  }
  setTimeout(poll, again);
}

// -- the tracking plan: the rate chart and the schema view ---------------------------

function drawRate(rate) {
  const svg = document.getElementById("rate");
  svg.setAttribute("viewBox", `0 0 ${rate.seconds} 100`);
  let peak = 0;
  const totals = {};
  for (const entry of rate.counts) {
    let sum = 0;
    for (const [type, n] of Object.entries(entry.by_type)) {
      sum += n;
      totals[type] = (totals[type] || 0) + n;
    }
    peak = Math.max(peak, sum);
  }
  const bars = [];
  for (const entry of rate.counts) {
    let y = 100;
    const x = entry.second - rate.start;
    // The call types in a fixed order, so each keeps its place in every stack.
    const others = Object.keys(entry.by_type).filter((type) => !CALL_TYPES.includes(type));
    for (const type of [...CALL_TYPES, ...others]) {
      const n = entry.by_type[type];
      if (!n) continue;
      const height = (n / peak) * 96;
      y -= height;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", String(x));
      bar.setAttribute("y", String(y));
      bar.setAttribute("width", "1");
      bar.setAttribute("height", String(height));
      bar.setAttribute("fill", COLOURS[type] || OTHER);
      bar.dataset.type = type;
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${n} ${type} at ${new Date(entry.second * 1000).toISOString()}`;
      bar.append(title);
      bars.push(bar);
    }
  }
  // A faint line each minute, so that an empty stretch still reads as time.
  const ticks = [];
  for (let x = rate.seconds - 60; x > 0; x -= 60) {
    const tick = document.createElementNS(SVG, "line");
    for (const [name, value] of [["x1", x], ["x2", x], ["y1", 0], ["y2", 100]]) {
      tick.setAttribute(name, String(value));
    }
    ticks.push(tick);
  }
  svg.replaceChildren(...ticks, ...bars);
  const legend = document.getElementById("legend");
  legend.replaceChildren(...Object.entries(totals).map(([type, n]) => {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.dataset.colour = COLOURS[type] || OTHER;
    item.append(swatch, `${type} ${n}`);
    return item;
  }));
  for (const swatch of legend.querySelectorAll(".swatch")) {
    swatch.style.background = swatch.dataset.colour;
  }
  const minutes = Math.round(rate.seconds / 60);
  document.getElementById("rate-title").textContent =
    `Accepted events per second, last ${minutes} minutes`;
  document.getElementById("rate-peak").textContent = `peak ${peak}/s`;
  document.getElementById("axis-start").textContent = `\u2212${minutes} min`;
}

function cell(row, name, value) {
  const td = row.insertCell();
  td.className = name;
  td.textContent = value;
  return td;
}

function drawSchema(schema) {
  const body = document.getElementById("schema-rows");
  const made = [];
  let conflicts = 0;
  for (const event of schema.events) {
    const head = document.createElement("tr");
    head.className = "event";
    const th = document.createElement("th");
    th.colSpan = 4;
    const title = event.type === "identify" || event.type === "group"
      ? `${event.type} traits` : `${event.type} \u00b7 ${event.name || "(no name)"}`;
    const noun = event.messages === 1 ? "message" : "messages";
    th.textContent = `${title} (${event.messages} ${noun})`;
    head.append(th);
    made.push(head);
    if (event.keys.length === 0) {
      const row = document.createElement("tr");
      cell(row, "none", `no ${event.bag}`).colSpan = 4;
      made.push(row);
    }
    for (const key of event.keys) {
      const row = document.createElement("tr");
      row.dataset.event = title;
      row.dataset.key = key.key;
      if (key.conflict) {
        row.classList.add("conflict");
        conflicts += 1;
      }
      cell(row, "key", `${event.bag}.${key.key}`);
      cell(row, "types", Object.entries(key.types).map(([t, n]) => `${t} \u00d7${n}`).join(", "));
      cell(row, "seen", String(key.count));
      const kinds = Object.keys(key.types).filter((t) => t !== "null").length;
      cell(row, "flag", key.conflict ? `\u26a0 ${kinds} types` : "");
      made.push(row);
    }
  }
  body.replaceChildren(...made);
  const summary = document.getElementById("schema-summary");
  summary.classList.toggle("bad", conflicts > 0);
  const names = schema.events.length;
  summary.textContent = names === 0 ? "No accepted events yet."
    : `${names} events and traits; ` + (conflicts === 0 ? "every key has one type."
      : `${conflicts} key${conflicts === 1 ? "" : "s"} seen with more than one type.`)
    + (schema.left_out ? ` (${schema.left_out} left out past the limits.)` : "");
}

function drawDeclared(declared) {
  const section = document.getElementById("declared");
  section.hidden = !declared;
  if (!declared) return;
  document.getElementById("declared-source").textContent = declared.source;
  const made = [];
  const pointers = {};
  for (const v of declared.violations) {
    const at = JSON.stringify([v.type, v.event]);
    (pointers[at] = pointers[at] || []).push(v);
  }
  function head(text) {
    const tr = document.createElement("tr");
    tr.className = "event";
    const th = document.createElement("th");
    th.colSpan = 4;
    th.textContent = text;
    tr.append(th);
    made.push(tr);
  }
  function violations(kind, name) {
    for (const v of pointers[JSON.stringify([kind, name])] || []) {
      const row = document.createElement("tr");
      row.className = "violation";
      row.dataset.event = name;
      row.dataset.pointer = v.pointer;
      cell(row, "key", `\u2003${v.pointer}`);
      cell(row, "text", v.text);
      cell(row, "seen", `\u00d7${v.count}`);
      cell(row, "state", "");
      made.push(row);
    }
  }
  let broken = 0;
  for (const event of declared.planned) {
    const row = document.createElement("tr");
    row.dataset.event = event.name;
    const label = event.type === "track" ? event.name : `${event.type} traits`;
    let state = "never seen";
    if (event.seen === 0) row.className = "never";
    else if (event.violations > 0) {
      row.className = "violated";
      state = `\u26a0 ${event.violations} broke the plan`;
      broken += event.violations;
    } else state = "\u2713 seen, keeps the plan";
    cell(row, "key", label);
    cell(row, "text", event.description || "");
    cell(row, "seen", String(event.seen));
    cell(row, "state", state);
    made.push(row);
    violations(event.type, event.name);
  }
  if (declared.unplanned.length) head("Seen, but not in the plan");
  for (const event of declared.unplanned) {
    const row = document.createElement("tr");
    row.className = "unplanned";
    row.dataset.event = event.name;
    cell(row, "key", event.name);
    cell(row, "text", "");
    cell(row, "seen", String(event.seen));
    cell(row, "state", "\u26a0 unplanned");
    made.push(row);
  }
  document.getElementById("declared-rows").replaceChildren(...made);
  const never = declared.never_seen.length;
  const summary = document.getElementById("declared-summary");
  const bad = broken > 0 || declared.unplanned.length > 0;
  summary.classList.toggle("bad", bad);
  summary.textContent = `${declared.planned.length - never} of ${declared.planned.length} `
    + `planned seen` + (never ? ` (never seen: ${declared.never_seen.join(", ")})` : "")
    + `; ${declared.unplanned.length} unplanned event${declared.unplanned.length === 1 ? "" : "s"}`
    + ` seen; ${broken} message${broken === 1 ? "" : "s"} broke the plan.`
    + (declared.left_out ? ` (${declared.left_out} left out past the limits.)` : "");
}

async function pollPlan() {
  try {
    const answer = await fetch("%PLAN_PATH%", { cache: "no-store" });
    if (answer.ok) {
      const plan = await answer.json();
      const mode = document.getElementById("mode");
      mode.textContent = plan.strict ? "strict mode" : "lenient mode";
      mode.title = plan.strict
        ? "A batch with any invalid message is rejected whole (HTTP 400)"
        : "Accepts what Segment and Customer.io accept; marks what they would drop or flag";
      drawRate(plan.rate);
      drawSchema(plan.schema);
      drawDeclared(plan.declared);
    }
  } catch (error) {
    // poll() already says the collector is unreachable.
  }
  setTimeout(pollPlan, PLAN_MS);
}

function show(view) {
  for (const button of document.querySelectorAll("nav button")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === view));
  }
  document.getElementById("events-view").hidden = view !== "events";
  document.getElementById("schema").hidden = view !== "schema";
  document.getElementById("filters").hidden = view !== "events";
}

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => show(button.dataset.view));
}

rows.addEventListener("click", (click) => {
  const row = click.target.closest("tr");
  if (row) pick(row);
});
typeFilter.addEventListener("change", applyFilters);
userFilter.addEventListener("input", applyFilters);
markFilter.addEventListener("change", applyFilters);
poll();
pollPlan();
"""

_SCRIPT_TEXT: Final = (
    _SCRIPT.replace("%CALL_TYPES%", json.dumps(list(CALL_TYPES)))
    .replace("%PAGE%", str(DEFAULT_PAGE))
    .replace("%EVENTS_PATH%", EVENTS_PATH)
    .replace("%PLAN_PATH%", PLAN_PATH)
)

_BODY: Final = """
<header>
  <h1>cdp-logging collector</h1>
  <nav><button type="button" data-view="events" aria-pressed="true">Events</button><button
    type="button" data-view="schema" aria-pressed="false">Schema</button></nav>
  <span id="filters">
    <label>Type <select id="type-filter"><option value="">all</option></select></label>
    <label>User <input id="user-filter" type="search" placeholder="userId or anonymousId">
    </label>
    <label>Show <select id="mark-filter"><option value="">all</option>
      <option value="marked">marked or rejected</option>
      <option value="unmarked">accepted unmarked</option></select></label>
  </span>
  <span id="mode"></span>
  <span id="status">connecting</span>
</header>
<div id="events-view">
<section id="chart">
  <div id="chart-head"><strong id="rate-title">Accepted events per second</strong>
    <span id="rate-peak"></span><span id="legend"></span></div>
  <svg id="rate" preserveAspectRatio="none"
    viewBox="0 0 300 100" role="img" aria-label="accepted events per second by type"></svg>
  <div id="chart-axis"><span id="axis-start"></span><span>now</span></div>
</section>
<main>
  <section id="list">
    <table>
      <thead><tr><th>Type</th><th>User</th><th>Event / name</th><th
        title="the message's timestamp; for a request with no message, when it arrived"
        >Timestamp (UTC)</th>
        <th>Problems</th></tr></thead>
      <tbody id="rows"></tbody>
    </table>
    <p id="empty">No events yet: send some to <code id="endpoint"></code>.</p>
  </section>
  <aside>
    <h2 id="detail-title">Click an event to see its JSON</h2>
    <ul id="detail-problems"></ul>
    <pre id="detail-json"></pre>
  </aside>
</main>
</div>
<section id="schema" hidden>
  <div id="declared" hidden>
    <h2>Tracking plan <code id="declared-source"></code></h2>
    <p id="declared-summary"></p>
    <table>
      <thead><tr><th>Planned event</th><th>Description / problem</th><th class="seen">Seen</th>
        <th></th></tr></thead>
      <tbody id="declared-rows"></tbody>
    </table>
    <h2 class="arrived">What arrived</h2>
  </div>
  <p id="schema-summary">No accepted events yet.</p>
  <table>
    <thead><tr><th>Key</th><th>JSON types seen</th><th class="seen">Seen</th><th></th></tr>
    </thead>
    <tbody id="schema-rows"></tbody>
  </table>
</section>
"""


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


PAGE: Final = (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    '<link rel="icon" href="data:,">\n'
    f"<title>cdp-logging collector</title>\n<style>{_STYLE}</style>\n</head>\n"
    f"<body>{_BODY}<script>{_SCRIPT_TEXT}</script>\n</body>\n</html>\n"
).encode()

PAGE_HEADERS: Final = (
    (
        "Content-Security-Policy",
        f"default-src 'none'; script-src {_hash(_SCRIPT_TEXT)}; style-src {_hash(_STYLE)}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
)


FILTERS: Final = ("type", "event", "user_id", "anonymous_id", "marked")


@dataclass(frozen=True)
class EventsQuery:
    """``GET /api/events``'s question: what came after *after*, or the latest rows.

    Attributes:
        after: Answer events with a greater id; None answers the latest *limit*.
        limit: At most this many events.
        filters: The keyword arguments of ``StoredEvent.matches`` given (``type``,
            ``event``, ``user_id``, ``anonymous_id``, ``marked``); empty keeps all.
    """

    after: int | None
    limit: int
    filters: dict[str, str | bool] = field(default_factory=dict)


def parse_filters(query: dict[str, list[str]]) -> dict[str, str | bool]:
    """The filters of a parsed query string, each given once; ``marked`` as a bool.

    Raises:
        ValueError: a filter given twice, or ``marked`` other than true or false.
    """
    filters: dict[str, str | bool] = {}
    for name in FILTERS:
        values = query.get(name)
        if values is None:
            continue
        if len(values) != 1:
            raise ValueError(f"{name} may be given once")
        filters[name] = values[0]
    if "marked" in filters:
        if filters["marked"] not in ("true", "false"):
            raise ValueError("marked must be true or false")
        filters["marked"] = filters["marked"] == "true"
    return filters


def _whole(query: dict[str, list[str]], name: str, low: int, high: int) -> int | None:
    values = query.get(name)
    if values is None:
        return None
    text = values[0] if len(values) == 1 else ""
    if not (text.isascii() and text.isdecimal()) or not low <= int(text) <= high:
        raise ValueError(f"{name} must be one whole number from {low} to {high}")
    return int(text)


def parse_events_query(query_string: str) -> EventsQuery:
    """Read ``after=ID&limit=N`` or ``last=N``, and the filters (see
    :func:`parse_filters`), bounded so one answer stays small.

    Raises:
        ValueError: an unknown parameter, a value that is not a whole number in
            range, ``last`` with ``after``, or a bad filter; the message says which.
    """
    query = parse_qs(query_string, keep_blank_values=True)
    unknown = sorted(set(query) - {"after", "limit", "last", *FILTERS})
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r}: use after and limit, or last, and the"
            f" filters {', '.join(FILTERS)}"
        )
    filters = parse_filters(query)
    last = _whole(query, "last", 1, MAX_PAGE)
    after = _whole(query, "after", 0, 2**63 - 1)
    limit = _whole(query, "limit", 1, MAX_PAGE)
    if last is not None:
        if after is not None or limit is not None:
            raise ValueError("last cannot be combined with after or limit")
        return EventsQuery(None, last, filters)
    return EventsQuery(after or 0, limit or DEFAULT_PAGE, filters)
