"""Contract 18: re-running dictConfig any number of times leaves no socket or thread behind."""

from __future__ import annotations

from .conftest import run_python

RECONFIGURE = """
import logging, logging.config, os, threading, time
from cdp_logging.collector import Collector

def sockets():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count

with Collector() as collector:
    config = {"version": 1, "disable_existing_loggers": False,
              "root": {"handlers": ["cdp"], "level": "INFO"},
              "handlers": {"cdp": {"class": "cdp_logging.AnalyticsHandler",
                                   "write_key": "k", "host": collector.url}}}
    def ours():  # the library's own threads (the collector's are not counted)
        return sum(t.name.startswith("cdp_logging-") for t in threading.enumerate())

    base_sockets = sockets()
    for i in range(30):
        logging.config.dictConfig(config)
        logging.getLogger("app").info("track", extra={"user_id": str(i), "event": "E"})
        assert logging.getLogger().handlers[0].flush(5)
    # The replaced senders' threads end once idle; bounded wait for that, not a sleep.
    deadline = time.monotonic() + 10
    while ours() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    print(sockets() - base_sockets, ours(), len(collector.messages()))
    os._exit(0)
"""


def test_thirty_dictconfigs_leave_one_connection_and_one_sender() -> None:
    """The last handler's keep-alive connection (its two ends, both in this process: the
    collector runs here too) and its sender thread; nothing of the 29 replaced ones."""
    done = run_python(RECONFIGURE, timeout=90)
    assert 0 == done.returncode, done.stderr
    sockets, threads, delivered = map(int, done.stdout.split())
    assert sockets <= 2, sockets
    assert 1 == threads
    assert 30 == delivered
