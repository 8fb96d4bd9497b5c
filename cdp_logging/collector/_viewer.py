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
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

from .._protocol import CALL_TYPES

__all__ = ["EVENTS_PATH", "MAX_PAGE", "PAGE", "PAGE_HEADERS", "EventsQuery", "parse_events_query"]

EVENTS_PATH: Final = "/api/events"
# Rows per answer: enough to catch up quickly, small enough that one answer stays a
# fraction of a second to build and parse.
DEFAULT_PAGE: Final = 200
MAX_PAGE: Final = 1000

_STYLE: Final = """
:root { --line: #d9dde3; --muted: #5f6b7a; --bad: #b42318; --bad-bg: #fef3f2; --pick: #dbe7fd;
        --flag: #93370d; --flag-bg: #fffaeb; }
* { box-sizing: border-box; }
body { margin: 0; height: 100vh; display: flex; flex-direction: column;
       font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2933; }
header { display: flex; flex-wrap: wrap; gap: 16px; align-items: center; padding: 10px 16px;
         border-bottom: 1px solid var(--line); background: #f7f8fa; }
h1 { font-size: 16px; margin: 0; }
label { color: var(--muted); }
select, input { font: inherit; padding: 3px 6px; margin-left: 4px; }
#status { margin-left: auto; color: var(--muted); }
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
"""

_SCRIPT: Final = """
"use strict";
const CALL_TYPES = %CALL_TYPES%;
const PAGE = %PAGE%;      // rows asked for per request
const KEEP = 2000;        // rows kept on the page; the oldest go first
const POLL_MS = 1000;

const rows = document.getElementById("rows");
const typeFilter = document.getElementById("type-filter");
const userFilter = document.getElementById("user-filter");
const statusLine = document.getElementById("status");
const events = new Map();  // id -> event, for the detail panel
let lastId = null;         // null until the first answer, which asks for the latest rows
let picked = null;

document.getElementById("endpoint").textContent = location.origin + "/v1/batch";
for (const type of CALL_TYPES) typeFilter.append(new Option(type, type));

// Any JSON value as one line of text; a message may hold anything a client sent.
function text(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function summary(event) {
  const m = event.message;
  if (m === null || typeof m !== "object" || Array.isArray(m)) {
    return { type: "-", user: "", what: text(m), when: event.received_at };
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
  return { type, user, what, when: text(m.timestamp) || event.received_at };
}

function visible(row) {
  const type = typeFilter.value;
  const user = userFilter.value.trim().toLowerCase();
  return (!type || row.dataset.type === type) &&
    (!user || row.dataset.user.toLowerCase().includes(user));
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
  // Accepted with marks: the real service would drop or flag it (the lenient mode).
  if (!event.accepted) row.classList.add("rejected");
  else if (event.problems.length > 0) row.classList.add("flagged");
  row.title = `received ${event.received_at}, answered HTTP ${event.status}`;
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
    `Event ${event.id}: ${verdict} (HTTP ${event.status}), received ${event.received_at}`;
  document.getElementById("detail-problems").replaceChildren(...event.problems.map((problem) => {
    const item = document.createElement("li");
    item.textContent = problem;
    return item;
  }));
  document.getElementById("detail-json").textContent = JSON.stringify(event.message, null, 2);
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

rows.addEventListener("click", (click) => {
  const row = click.target.closest("tr");
  if (row) pick(row);
});
typeFilter.addEventListener("change", applyFilters);
userFilter.addEventListener("input", applyFilters);
poll();
"""

_SCRIPT_TEXT: Final = (
    _SCRIPT.replace("%CALL_TYPES%", json.dumps(list(CALL_TYPES)))
    .replace("%PAGE%", str(DEFAULT_PAGE))
    .replace("%EVENTS_PATH%", EVENTS_PATH)
)

_BODY: Final = """
<header>
  <h1>cdp-logging collector</h1>
  <label>Type <select id="type-filter"><option value="">all</option></select></label>
  <label>User <input id="user-filter" type="search" placeholder="userId or anonymousId"></label>
  <span id="status">connecting</span>
</header>
<main>
  <section id="list">
    <table>
      <thead><tr><th>Type</th><th>User</th><th>Event / name</th><th>Timestamp</th>
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


@dataclass(frozen=True)
class EventsQuery:
    """``GET /api/events``'s question: what came after *after*, or the latest rows.

    Attributes:
        after: Answer events with a greater id; None answers the latest *limit*.
        limit: At most this many events.
    """

    after: int | None
    limit: int


def _whole(query: dict[str, list[str]], name: str, low: int, high: int) -> int | None:
    values = query.get(name)
    if values is None:
        return None
    text = values[0] if len(values) == 1 else ""
    if not (text.isascii() and text.isdecimal()) or not low <= int(text) <= high:
        raise ValueError(f"{name} must be one whole number from {low} to {high}")
    return int(text)


def parse_events_query(query_string: str) -> EventsQuery:
    """Read ``after=ID&limit=N`` or ``last=N``, bounded so one answer stays small.

    Raises:
        ValueError: an unknown parameter, a value that is not a whole number in
            range, or ``last`` with ``after``; the message says which.
    """
    query = parse_qs(query_string, keep_blank_values=True)
    unknown = sorted(set(query) - {"after", "limit", "last"})
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}: use after and limit, or last")
    last = _whole(query, "last", 1, MAX_PAGE)
    after = _whole(query, "after", 0, 2**63 - 1)
    limit = _whole(query, "limit", 1, MAX_PAGE)
    if last is not None:
        if after is not None or limit is not None:
            raise ValueError("last cannot be combined with after or limit")
        return EventsQuery(None, last)
    return EventsQuery(after or 0, limit or DEFAULT_PAGE)
