"""The file: its rows, its byte bound, and what SQLite's errors mean.

Why a module of its own: what fits in the file is a number the caller's ``put`` reads on
every call and the writer changes after every commit, and getting it wrong either grows
the file past ``max_buffer_bytes`` or accepts messages that then cannot be written (and
so live only in memory). ``Bound`` is that number, with no SQLite in it, so its rules
are tested without a file.

The rules of the file itself:

* **WAL with synchronous=NORMAL.** A commit reaches the OS without an fsync; the fsync
  happens at checkpoints. A killed process loses nothing it committed, and the database
  stays consistent through a power loss, but the commits since the last checkpoint may
  roll back then (https://www.sqlite.org/pragma.html#pragma_synchronous).
* **The bound is the file's real size.** ``PRAGMA max_page_count`` makes it hard: SQLite
  refuses to grow the file past it (https://www.sqlite.org/pragma.html#pragma_max_page_count).
  A quarter of the bound is set aside for the WAL, kept inside it by
  ``wal_autocheckpoint`` and ``journal_size_limit``
  (https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files).
* **BEGIN IMMEDIATE.** The write lock is taken (and waited for, ``busy_timeout``) at the
  start of a transaction, not at its first write, where WAL answers SQLITE_BUSY at once
  (https://www.sqlite.org/lang_transaction.html).
"""

from __future__ import annotations

import contextlib
import sqlite3
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate, repeat
from itertools import count as numbered
from operator import itemgetter
from typing import Final

from ..base import Entry, Tracked, entry_data

__all__ = [
    "ADVICE",
    "APPLICATION_ID",
    "BUSY_TIMEOUT_MS",
    "DATA",
    "ROW_OVERHEAD",
    "SOFT_FILL",
    "Bound",
    "all_bytes",
    "close_quietly",
    "delete_ranges",
    "first_rows",
    "fit",
    "insert_rows",
    "kind",
    "open_file",
    "prefix",
    "rollback",
    "used_bytes",
    "weight",
]

# How long one statement waits for another process's write lock before it counts as
# "locked" (https://www.sqlite.org/c3ref/busy_timeout.html). Only the writer and sender
# threads ever wait; the caller never touches the file.
BUSY_TIMEOUT_MS: Final = 2_000
# Bytes a row costs beyond its payload in the table and its index (rowid, owner, seq,
# cell pointers), used only to estimate what memory will need once written.
ROW_OVERHEAD: Final = 48
# The part of the database's share of the bound that accepted messages may fill; the
# rest absorbs an estimate that was short, so a write never meets max_page_count.
SOFT_FILL: Final = 0.9
APPLICATION_ID: Final = 0x63647042  # "cdpB": a file of ours, not some other database
DATA: Final = itemgetter(1)

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " data BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS messages_by_owner ON messages (owner, seq)",
    # until: the wall-clock lease of versions before 0.2, still written for them;
    # beat: the counter this version reads (see lease.py).
    "CREATE TABLE IF NOT EXISTS owners ("
    " token INTEGER PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,"
    " until REAL NOT NULL, beat INTEGER NOT NULL DEFAULT 0)",
)


class Bound:
    """What the database may still take, in bytes of SQLite pages; no I/O.

    ``used`` is measured from the file after each commit (pages in use). ``reserved`` is
    the estimate, in payload bytes, of every accepted message not yet counted in
    ``used``: those waiting in memory *and* those inside a transaction not yet
    measured. Leaving the latter out (they were no longer in memory, not yet in the
    measure) let ``put`` accept a whole chunk too many, which then could not be
    written. ``factor`` turns payload bytes into page bytes, learned from writes.
    """

    def __init__(self, db_limit: int) -> None:
        self.budget = float(db_limit) * SOFT_FILL
        self.used = 0
        self.reserved = 0
        self.factor = 1.5  # pessimistic until the first write teaches it
        self.full = False  # the file refused a write for our bound: refuse until room

    def fits(self, size: int) -> bool:
        """Whether a message of *size* bytes may be accepted now."""
        if self.full:
            return False
        return self.used + (self.reserved + size + ROW_OVERHEAD) * self.factor <= self.budget

    def reserve(self, size: int) -> None:
        self.reserved += size + ROW_OVERHEAD

    def release(self, size: int) -> None:
        """*size* bytes (as ``weight``) left memory without being written (settled)."""
        self.reserved -= size

    def written(self, size: int, used: int) -> None:
        """A commit moved *size* estimated bytes into the file, now *used* bytes."""
        grown = used - self.used
        if size >= 16 * 1024 and grown > 0:  # 0 when the rows went into free pages
            self.factor = max(1.0, 0.5 * self.factor + 0.5 * grown / size)
        self.reserved -= size
        self.measured(used)

    def measured(self, used: int) -> None:
        self.used = used
        if self.full and used + self.reserved * self.factor < self.budget * 0.8:
            self.full = False  # deletes made room

    def refused(self) -> None:
        """SQLite said SQLITE_FULL at our own bound: the estimate was short."""
        self.factor *= 1.1
        self.full = True

    def unbounded(self) -> None:
        """The file is unusable for good: memory's own bound (a count) is the only one."""
        self.budget = float("inf")
        self.full = False


def weight(entries: Iterable[Entry]) -> int:
    """The estimate ``Bound.reserve`` added for *entries*."""
    return sum(len(entry) + ROW_OVERHEAD for entry in entries)


def open_file(path: str, db_limit: int, wal_limit: int) -> tuple[sqlite3.Connection, int]:
    """A connection with our pragmas and schema, and the page size; raises on trouble."""
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves.
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL mode here (journal_mode={mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count={max(16, db_limit // page)}")
        conn.execute(f"PRAGMA wal_autocheckpoint={max(4, wal_limit // page // 2)}")
        conn.execute(f"PRAGMA journal_size_limit={wal_limit}")
        conn.execute("BEGIN IMMEDIATE")
        app = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app != APPLICATION_ID and tables:
            raise sqlite3.DatabaseError("not a cdp_logging buffer (another program's database)")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        for statement in _SCHEMA:
            conn.execute(statement)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(owners)")}
        if "beat" not in columns:  # a file an earlier version made
            conn.execute("ALTER TABLE owners ADD COLUMN beat INTEGER NOT NULL DEFAULT 0")
        conn.execute("COMMIT")
    except BaseException:
        close_quietly(conn)
        raise
    return conn, page


def rollback(conn: sqlite3.Connection) -> None:
    """End a transaction a failed statement left open."""
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def close_quietly(conn: sqlite3.Connection) -> None:
    rollback(conn)
    with contextlib.suppress(sqlite3.Error):
        conn.close()


def used_bytes(conn: sqlite3.Connection, page: int) -> int:
    """Bytes of the pages in use (free pages are reused before the file grows)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (int(pages) - int(free)) * page


def all_bytes(entries: list[Entry]) -> bool:
    """Whether no entry is Tracked (the logging case), checked in C."""
    return Tracked not in map(type, entries)


# Rows per INSERT statement: one statement binds all its parameters with the
# interpreter lock held once, and runs (the lock released) in one step. executemany
# would take the lock back for every row, and a caller logging in a tight loop (as at
# the buffer's bound, where its calls are refused as fast as it can make them) holds
# it for up to the switch interval (5 ms) each time: 1,149 rows took over 1.5 s to
# reach the file that way, past the 0.5 s the contract promises. 300 rows are 900
# parameters, far inside SQLite's limit (32,766 since 3.32; 999 before).
ROWS_PER_INSERT: Final = 300


def insert_rows(
    conn: sqlite3.Connection, token: int, start: int, entries: list[Entry], skip: list[range]
) -> None:
    """Insert *entries* as seq start, start+1, ...; leave out the seqs in *skip*."""
    rows: list[tuple[int, int, bytes]]
    if not skip and all_bytes(entries):
        rows = list(zip(repeat(token), numbered(start), entries))  # type: ignore[arg-type]
    else:
        rows = [
            (token, start + i, entry_data(entry))
            for i, entry in enumerate(entries)
            if not any(start + i in gap for gap in skip)
        ]
    for low in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[low : low + ROWS_PER_INSERT]
        values = ",".join(["(?, ?, ?)"] * len(chunk))
        conn.execute(
            f"INSERT INTO messages (owner, seq, data) VALUES {values}",  # noqa: S608 - placeholders only
            [value for row in chunk for value in row],
        )


def delete_ranges(conn: sqlite3.Connection, token: int, ranges: list[tuple[int, int]]) -> None:
    for low, high in ranges:
        conn.execute(
            "DELETE FROM messages WHERE owner = ? AND seq >= ? AND seq < ?", (token, low, high)
        )


def first_rows(
    ranges: list[tuple[int, int]], rows: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The first *rows* sequence numbers of *ranges* (each [low, high)), and the rest."""
    taken: list[tuple[int, int]] = []
    for index, (low, high) in enumerate(ranges):
        if rows <= 0:
            return taken, ranges[index:]
        cut = min(high, low + rows)
        taken.append((low, cut))
        rows -= cut - low
        if cut < high:
            return taken, [(cut, high), *ranges[index + 1 :]]
    return taken, []


def prefix(entries: list[Entry], max_bytes: int) -> int:
    """How many entries from the front fit one write of *max_bytes* (at least one)."""
    if not entries:
        return 0
    ends = list(accumulate(len(e) + ROW_OVERHEAD for e in entries))
    return max(1, bisect_right(ends, max_bytes))


def fit(entries: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix whose comma-joined size fits *max_bytes* (at least one)."""
    ends = list(accumulate(map(len, entries)))
    if ends[-1] + len(entries) <= max_bytes:
        return entries
    fits = bisect_right(range(len(entries)), max_bytes, key=lambda i: ends[i] + i + 1)
    return entries[: max(fits, 1)]


def kind(error: BaseException) -> str:
    """locked, full, corrupt, unwritable or other: what the stderr line says and whether
    to retry. 3.11+ names the result code; 3.10 only has the message."""
    name = str(getattr(error, "sqlite_errorname", "") or "")
    text = str(error).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return "locked"
    if name.startswith("SQLITE_FULL") or "full" in text:
        return "full"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text:
        return "corrupt"
    if "not a database" in text or "not a cdp_logging buffer" in text:
        return "corrupt"
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
        return "unwritable"
    if isinstance(error, OSError) or "unable to open" in text or "readonly" in text:
        return "unwritable"
    return "other"


ADVICE: Final = {
    "locked": (
        "another program holds a lock on it; messages wait in memory (max_queue_size) "
        "and are sent from there, and the file is tried again every few seconds"
    ),
    "full": (
        "the disk (or max_buffer_bytes) is full; messages wait in memory (max_queue_size) "
        "and are sent from there until the file has room again"
    ),
    "corrupt": (
        "it is not a readable cdp_logging buffer; move it aside (or delete it) so a new "
        "one is created; until then messages are kept in memory"
    ),
    "unwritable": (
        "check that its directory exists and that this user may write there; until "
        "then messages are kept in memory"
    ),
    "other": "messages are kept in memory meanwhile",
}
