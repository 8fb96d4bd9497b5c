"""The SQLite store: what ``cdp-logging collect`` receives outlives the process.

One connection, shared by every handler thread under the store's Condition (which
serialises all access anyway), rather than one per thread: the collector's threads
are short-lived, one per client connection, and a connection per thread would leave a
trail of open handles. WAL mode lets another process (the ``sqlite3`` shell, a
notebook) read the file while the collector writes to it.

Each row keeps the message's full JSON, so nothing a client sent is lost to a schema;
the few columns beside it are what the counts and the viewer ask about.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Final

from ._declared import DeclaredPlan
from ._store import RequestRecord, Row, Store, StoredEvent

__all__ = ["SQLiteStore"]

# Bumped when the tables change; a file with another version is refused rather than
# misread.
_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER NOT NULL REFERENCES requests (id),
    received_at TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    status INTEGER NOT NULL,
    type TEXT,
    message_id TEXT,
    problems TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX events_by_acceptance ON events (accepted, id);
"""
# AUTOINCREMENT (not plain rowid reuse) so that ids stay increasing after reset():
# a viewer polling "after id N" must not miss rows whose ids were handed out again.
# Each event with its request's method and path (records of earlier versions have
# none: they were all POST /v1/batch).
_EVENT_COLUMNS: Final = (
    "events.id, events.received_at, events.accepted, events.status, events.problems,"
    " events.message, coalesce(json_extract(requests.record, '$.method'), 'POST'),"
    " coalesce(json_extract(requests.record, '$.path'), '/v1/batch')"
    " FROM events JOIN requests ON requests.id = events.request_id"
)
# An accepted event that is a message: the lenient mode also accepts (and marks) any
# other JSON value standing in a batch, which is shown but is no message. The JSON
# text of an object, and only of an object, starts with "{".
_ACCEPTED_MESSAGE: Final = "accepted AND substr(message, 1, 1) = '{'"
# Another process reading the file may hold a lock for a moment; wait for it.
_BUSY_TIMEOUT_MS: Final = 5000


def _dumps(value: object) -> str:
    # ASCII escapes keep a lone surrogate (which a client can send as "\ud800", and
    # which UTF-8 cannot encode) storable; the JSON means the same either way.
    return json.dumps(value, separators=(",", ":"))


def _field(message: object, key: str) -> str | None:
    value = message.get(key) if isinstance(message, dict) else None
    return value if isinstance(value, str) else None


def _event(row: tuple[Any, ...]) -> StoredEvent:
    event_id, received_at, accepted, status, problems, message, method, path = row
    problem_list = tuple(json.loads(problems))
    return StoredEvent(
        event_id,
        received_at,
        bool(accepted),
        status,
        problem_list,
        json.loads(message),
        method,
        path,
    )


def _record(text: str) -> RequestRecord:
    fields = json.loads(text)
    fields["message_ids"] = tuple(fields["message_ids"])
    return RequestRecord(**fields)


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """BEGIN ... COMMIT, or ROLLBACK when the body raises.

    The connection runs in autocommit mode (``isolation_level=None``) so that reads
    never leave a transaction open; writes group their statements explicitly here.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _open(path: str) -> sqlite3.Connection:
    """Open *path*, creating the tables in a new file, refusing a foreign one.

    Raises:
        ValueError: the file is an SQLite database, but not one the collector wrote.
        sqlite3.Error: the file cannot be opened or is not a database at all.
    """
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version == 0 and tables == 0:
            connection.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;"
            )
        elif version != _SCHEMA_VERSION:
            raise ValueError(
                f"{path} is not a cdp-logging collector database (schema version {version}, "
                f"expected {_SCHEMA_VERSION}); give another path"
            )
        # WAL is a property of the file, set here (outside any transaction, as it must be)
        # for a new file and again in case another tool changed it. NORMAL survives a
        # crash of this process, which is all a development tool needs.
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection


class SQLiteStore(Store):
    """Requests and messages in an SQLite file; reopening it keeps what it held.

    Args:
        path: The database file, created (with its tables) when missing.
        declared: The plan to compare what arrives with (the accepted messages the
            file holds are compared again).

    Raises:
        ValueError: *path* is an SQLite database the collector did not write.
        sqlite3.Error: *path* cannot be opened or is not a database.
    """

    def __init__(self, path: str | os.PathLike[str], declared: DeclaredPlan | None = None) -> None:
        super().__init__(declared)
        self.path = os.fspath(path)
        self._connection: sqlite3.Connection | None = _open(self.path)
        # The tracking plan lives in memory: relearn it from what the file holds.
        query = f"SELECT received_at, message FROM events WHERE {_ACCEPTED_MESSAGE} ORDER BY id"  # noqa: S608
        for received_at, message in self._connection.execute(query):
            at = dt.datetime.fromisoformat(received_at.replace("Z", "+00:00")).timestamp()
            loaded = json.loads(message)
            self._plan.add(at, [loaded])
            self._observe([(loaded, ())])

    @property
    def _db(self) -> sqlite3.Connection:
        # Reopened on demand after close(), so a stopped collector can still be read.
        if self._connection is None:
            self._connection = _open(self.path)
        return self._connection

    def _insert(
        self, record: RequestRecord, accepted: bool, received_at: str, rows: Sequence[Row]
    ) -> None:
        db = self._db
        with _transaction(db):
            cursor = db.execute(
                "INSERT INTO requests (received_at, accepted, record) VALUES (?, ?, ?)",
                (received_at, accepted, _dumps(dataclasses.asdict(record))),
            )
            request_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO events (request_id, received_at, accepted, status, type,"
                " message_id, problems, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        request_id,
                        received_at,
                        accepted,
                        record.status,
                        _field(message, "type"),
                        _field(message, "messageId"),
                        _dumps(list(problems)),
                        _dumps(message),
                    )
                    for message, problems in rows
                ],
            )

    def _messages(self) -> list[dict[str, Any]]:
        query = f"SELECT message FROM events WHERE {_ACCEPTED_MESSAGE} ORDER BY id"  # noqa: S608
        return [json.loads(text) for (text,) in self._db.execute(query)]

    def _records(self) -> list[RequestRecord]:
        return [_record(text) for (text,) in self._db.execute("SELECT record FROM requests")]

    def _counts(self) -> dict[str, Any]:
        db = self._db
        requests, accepted = db.execute(
            "SELECT count(*), coalesce(sum(accepted), 0) FROM requests"
        ).fetchone()
        distinct = "count(*), count(message_id) - count(DISTINCT message_id)"
        query = f"SELECT {distinct} FROM events WHERE {_ACCEPTED_MESSAGE}"  # noqa: S608
        messages, duplicates = db.execute(query).fetchone()
        by_type = {
            str(kind): count
            for kind, count in db.execute(
                f"SELECT type, count(*) FROM events WHERE {_ACCEPTED_MESSAGE}"  # noqa: S608
                " GROUP BY type ORDER BY min(id)"
            )
        }
        routes = db.execute(
            "SELECT coalesce(json_extract(record, '$.method'), 'POST'),"
            " coalesce(json_extract(record, '$.path'), '/v1/batch'),"
            " json_extract(record, '$.status'), count(*) FROM requests"
            " GROUP BY 1, 2, 3 ORDER BY min(id)"
        )
        return {
            "requests": requests,
            "accepted_requests": accepted,
            "rejected_requests": requests - accepted,
            "messages": messages,
            "by_type": by_type,
            "duplicate_message_ids": duplicates,
            "by_request": [
                {"method": method, "path": path, "status": status, "count": count}
                for method, path, status, count in routes
            ],
        }

    def _events(self, after: int, limit: int | None) -> list[StoredEvent]:
        rows = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} WHERE events.id > ? ORDER BY events.id LIMIT ?",
            (after, -1 if limit is None else limit),
        )
        return [_event(row) for row in rows]

    def _latest(self, limit: int) -> list[StoredEvent]:
        rows = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} ORDER BY events.id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_event(row) for row in reversed(rows)]

    def _scan(self, after: int, newest: bool) -> Iterator[StoredEvent]:
        order = "DESC" if newest else "ASC"
        query = f"SELECT {_EVENT_COLUMNS} WHERE events.id > ? ORDER BY events.id {order}"
        # fetchmany, so that a reader stopping at its limit does not load the whole file.
        cursor = self._db.execute(query, (after,))
        while rows := cursor.fetchmany(256):
            yield from (_event(row) for row in rows)

    def _message_count(self) -> int:
        query = f"SELECT count(*) FROM events WHERE {_ACCEPTED_MESSAGE}"  # noqa: S608
        count: int = self._db.execute(query).fetchone()[0]
        return count

    def _request_count(self) -> int:
        count: int = self._db.execute("SELECT count(*) FROM requests").fetchone()[0]
        return count

    def _clear(self) -> None:
        db = self._db
        with _transaction(db):
            db.execute("DELETE FROM events")
            db.execute("DELETE FROM requests")

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
