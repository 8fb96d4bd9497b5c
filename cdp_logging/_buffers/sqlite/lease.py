"""Who owns which rows, and when a dead owner's rows become ours.

Ownership is per process, not per row: every row names its owner (a random token per
client and process), and each owner has a row in ``owners`` that its writer renews
every ``HEARTBEAT_INTERVAL``. A live process never takes another live owner's rows, so
two live processes never both send one row. An owner is dead, and its rows are taken
over by the next process that looks (every ``ADOPT_INTERVAL``), when it handed its lease
back at close, when it ran on this host and its pid is gone (``kill(pid, 0)``, so a
restart does not wait), or when its lease was not renewed for ``LEASE_SECONDS``.

Why a counter and not a time: the lease used to be a wall-clock deadline written into
the file, and a clock stepped forward by more than the lease made every live owner look
dead (duplicates); stepped back, a dead one looked alive for as long. A renewal now
adds one to the owner's ``beat``, and an observer notes, on its *own* monotonic clock,
when it last saw each owner's beat change. Processes never compare their clocks, so no
clock step, and no disagreement between them, moves a lease. The price: an owner first
seen by a process that just started is given a full lease from that moment, except when
its pid is gone. Files of earlier versions keep ``until`` (their wall-clock lease),
written here for them and read as a second beat: an old process renewing it is alive.

``Watch`` holds that memory and decides; it takes "now" as an argument and does no I/O,
so the rules are tested without processes or sleeping.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from typing import Final, NamedTuple

__all__ = [
    "ADOPT_INTERVAL",
    "HEARTBEAT_INTERVAL",
    "HOST",
    "LEASE_SECONDS",
    "Owner",
    "Watch",
    "read_owners",
    "renew",
]

HEARTBEAT_INTERVAL: Final = 1.0
LEASE_SECONDS: Final = 5.0
ADOPT_INTERVAL: Final = 1.0
HOST: Final = socket.gethostname()
RELEASED: Final = -1  # the beat of an owner that handed its lease back


class Owner(NamedTuple):
    token: int
    host: str
    pid: int
    until: float
    beat: int


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # EPERM: alive, another user's
    return False


class Watch:
    """The beats seen of other owners, and when each last changed (our monotonic clock)."""

    def __init__(self, lease: float = LEASE_SECONDS) -> None:
        self._lease = lease
        self._seen: dict[int, tuple[tuple[int, float], float]] = {}

    def dead(self, owners: list[Owner], now: float, *, here: str = HOST) -> list[int]:
        """Tokens of *owners* that are gone, as seen at *now*; remembers what it saw.

        *owners* must not include our own token. An owner on *here* whose pid is gone is
        dead at once; ``pid_gone`` is only asked about owners on this host.
        """
        seen: dict[int, tuple[tuple[int, float], float]] = {}
        dead = []
        for owner in owners:
            value = (owner.beat, owner.until)
            before = self._seen.get(owner.token)
            since = before[1] if before is not None and before[0] == value else now
            seen[owner.token] = (value, since)
            if (
                owner.beat == RELEASED
                or owner.until == 0.0  # handed back by an earlier version
                or now - since >= self._lease
                or (owner.host == here and owner.pid != os.getpid() and pid_gone(owner.pid))
            ):
                dead.append(owner.token)
        self._seen = seen  # owners gone from the table are forgotten
        return dead


def read_owners(conn: sqlite3.Connection, token: int) -> list[Owner]:
    """Every owner but *token*."""
    return [
        Owner(*row)
        for row in conn.execute(
            "SELECT token, host, pid, until, beat FROM owners WHERE token != ?", (token,)
        )
    ]


def renew(conn: sqlite3.Connection, token: int, *, released: bool) -> None:
    """Our beat, one up (or handed back); inside the caller's transaction.

    When our row is gone, someone took us for dead (we were stopped past the lease)
    and took our rows; we are alive again, so the row comes back.
    """
    until = 0.0 if released else time.time() + LEASE_SECONDS
    if released:
        renewed = conn.execute(
            "UPDATE owners SET until = 0, beat = ? WHERE token = ?", (RELEASED, token)
        ).rowcount
    else:
        renewed = conn.execute(
            "UPDATE owners SET until = ?, beat = beat + 1 WHERE token = ?", (until, token)
        ).rowcount
    if not renewed and not released:
        conn.execute(
            "INSERT INTO owners (token, host, pid, until, beat) VALUES (?, ?, ?, ?, 1)",
            (token, HOST, os.getpid(), until),
        )
