"""Exit and reconfiguration, in real interpreters: nothing queued is lost, nothing hangs."""

from __future__ import annotations

import time

from cdp_logging.collector import Collector

from .conftest import WRITE_KEY, run_python

CONFIG = """
import logging, logging.config, sys, time
URL, KEY = sys.argv[1], sys.argv[2]
def config(**options):
    handler = {"class": "cdp_logging.AnalyticsHandler", "write_key": KEY, "host": URL,
               "flush_interval": 60, "max_events_in_batch": 1000}
    handler.update(options)
    return handler
"""


def script(body: str) -> str:
    return CONFIG + body


# Appended to a child's script: when its body ended, on the system-wide monotonic clock.
MARK_END = 'print("body ended at", time.monotonic(), file=sys.stderr)\n'


def exit_seconds(output: str) -> float:
    """Seconds from the end of a child's script (``MARK_END``) to now, just after it exited.

    Only the exit: timing the whole child also counts the interpreter's start and its
    imports, seconds on a loaded machine. ``time.monotonic`` is one clock for every
    process on Linux, so the child's stamp and ours compare.
    """
    ended = float(output.split("body ended at")[1].split()[0])
    return time.monotonic() - ended


def run(collector: Collector, body: str, timeout: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    done = run_python(
        script(body).replace("sys.argv[1], sys.argv[2]", f"{collector.url!r}, {WRITE_KEY!r}"),
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


class TestExit:
    def test_script_that_just_ends_delivers_everything(self, collector: Collector) -> None:
        """Events logged by a script that ends without flush() are all delivered at exit."""
        code, output, _ = run(
            collector,
            """
logging.config.dictConfig({"version": 1, "handlers": {"cdp": config()},
                           "root": {"handlers": ["cdp"], "level": "INFO"}})
log = logging.getLogger("app")
for i in range(500):
    log.info("track", extra={"cdp": {"user_id": str(i), "event": "Ended"}})
""",
        )

        assert (0, "") == (code, output)
        assert 500 == len(collector.messages())
        assert 500 == len({m["messageId"] for m in collector.messages()})

    def test_handler_replaced_by_second_dictconfig(self, collector: Collector) -> None:
        """A handler a later dictConfig replaced still delivers, before and after, by exit."""
        code, output, _ = run(
            collector,
            """
logging.config.dictConfig({"version": 1, "handlers": {"cdp": config()},
                           "loggers": {"app": {"handlers": ["cdp"], "level": "INFO"}}})
log = logging.getLogger("app")
for i in range(100):
    log.info("track", extra={"cdp": {"user_id": str(i), "event": "before"}})
started = time.monotonic()
logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                           "handlers": {"console": {"class": "logging.NullHandler"}},
                           "root": {"handlers": ["console"], "level": "INFO"}})
print("dictConfig took", round(time.monotonic() - started, 3), file=sys.stderr)
# "app" was not mentioned: the closed handler is still attached to it.
for i in range(100):
    log.info("track", extra={"cdp": {"user_id": str(i), "event": "after"}})
""",
        )

        assert 0 == code, output
        took = float(output.split("dictConfig took")[1].split()[0])
        assert took < 2.0
        events = [m["event"] for m in collector.messages()]
        assert (100, 100) == (events.count("before"), events.count("after"))

    def test_dictconfig_rerun_with_debug_http_logs(self, collector: Collector) -> None:
        """Re-running dictConfig while requests are in flight and urllib3 logs at DEBUG
        neither deadlocks nor loses events."""
        collector.faults.latency(0.2)
        code, output, elapsed = run(
            collector,
            """
def full_config():
    return {"version": 1, "disable_existing_loggers": False,
            "handlers": {"cdp": config(max_events_in_batch=10, shutdown_timeout=5),
                         "null": {"class": "logging.NullHandler"}},
            "root": {"handlers": ["cdp", "null"], "level": "DEBUG"}}
log = logging.getLogger("app")
worst = 0.0
for round_ in range(5):
    logging.config.dictConfig(full_config())
    for i in range(40):
        log.info("track", extra={"cdp": {"user_id": f"{round_}-{i}", "event": "E"}})
    started = time.monotonic()
    logging.config.dictConfig(full_config())
    worst = max(worst, time.monotonic() - started)
print("worst", round(worst, 3), file=sys.stderr)
""",
            timeout=90,
        )

        assert 0 == code, output
        assert float(output.split("worst")[1].split()[0]) < 5.0
        assert elapsed < 60
        assert 200 == len({m["userId"] for m in collector.messages()})
        assert 0 == collector.counts()["duplicate_message_ids"]

    def test_exit_is_bounded_when_the_host_is_down(self, collector: Collector) -> None:
        """With the host unreachable, exit waits about shutdown_timeout and says what was lost."""
        collector.stop()
        code, output, _ = run(
            collector,
            """
logging.config.dictConfig({"version": 1, "handlers": {"cdp": config(shutdown_timeout=1)},
                           "root": {"handlers": ["cdp"], "level": "INFO"}})
for i in range(20):
    logging.getLogger("app").info("track", extra={"user_id": str(i), "event": "E"})
"""
            + MARK_END,
        )

        assert 0 == code
        assert exit_seconds(output) < 10, output
        assert "shutdown_timeout" in output
        assert WRITE_KEY not in output

    def test_direct_client_delivers_at_exit(self, collector: Collector) -> None:
        """An Analytics client nobody closes still delivers its queue when the script ends."""
        code, output, _ = run(
            collector,
            """
import cdp_logging
client = cdp_logging.Analytics(KEY, host=URL, flush_interval=60, max_events_in_batch=1000)
for i in range(50):
    client.track(str(i), "direct")
""",
        )

        assert (0, "") == (code, output)
        assert 50 == len(collector.messages())


class TestAfterLoggingShutdown:
    def test_record_logged_after_logging_shutdown_is_delivered(self, collector: Collector) -> None:
        """An atexit hook registered before logging was imported runs after
        logging.shutdown(): a record it logs reopens the handler, and is sent then, since
        no exit hook is left to close that new client."""
        done = run_python(
            f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n"
            + """
import atexit
def late():  # registered first, so it runs last
    logging.getLogger("app").info("track", extra={"user_id": "u", "event": "very late"})
atexit.register(late)
import logging, logging.config
logging.config.dictConfig({"version": 1, "handlers": {"cdp": {
    "class": "cdp_logging.AnalyticsHandler", "write_key": KEY, "host": URL}},
    "root": {"handlers": ["cdp"], "level": "INFO"}})
logging.getLogger("app").info("track", extra={"user_id": "u", "event": "in time"})
"""
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert ["in time", "very late"] == sorted(m["event"] for m in collector.messages())

    def test_an_app_hook_registered_after_import_runs_before_ours(
        self, collector: Collector
    ) -> None:
        """Importing cdp_logging registers the exit hook, whatever is loaded later, so
        an application hook registered after the import runs first, with every client
        still open: its events go with the rest, not one late sender each."""
        done = run_python(
            f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n"
            + """
import atexit, cdp_logging
from cdp_logging._core import process as _lifecycle
def app_hook():
    print("exit hook ran first:", _lifecycle.exit_hook_ran())
    for i in range(5):
        client.track("u", f"at exit {i}")
atexit.register(app_hook)
client = cdp_logging.Analytics(KEY, URL, flush_interval=60, max_events_in_batch=1000)
client.track("u", "in time")
"""
        )

        assert (0, "", "exit hook ran first: False\n") == (
            done.returncode,
            done.stderr,
            done.stdout,
        )
        assert 6 == len(collector.messages())

    def test_calls_after_the_exit_hook_share_one_shutdown_timeout(
        self, collector: Collector
    ) -> None:
        """Direct calls from a hook that runs after ours reopen the client and deliver at
        once; with the host down, twenty of them together take about one timeout."""
        collector.stop()
        done = run_python(
            f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n"
            + """
import atexit, time
def late():  # registered before cdp_logging's hook, so it runs after it
    started = time.monotonic()
    for i in range(20):
        client.track("u", f"late {i}")
    print(f"late calls took {time.monotonic() - started:.2f}")
    print("errors", client.stats()["errors"])
atexit.register(late)
import cdp_logging
client = cdp_logging.Analytics(KEY, URL, shutdown_timeout=0.5, max_retries=100)
"""
        )

        assert 0 == done.returncode, done.stderr
        took = float(done.stdout.split("late calls took ")[1].split()[0])
        assert took < 5.0, done.stdout  # not 20 x 0.5 s = 10 s
        assert "'shutdown_timeout': 20" in done.stdout, done.stdout
        assert WRITE_KEY not in done.stdout + done.stderr


class TestBoundedExit:
    def test_exit_with_a_hanging_server_takes_about_shutdown_timeout(
        self, collector: Collector
    ) -> None:
        """A request in flight at exit cannot hold the process past shutdown_timeout."""
        collector.faults.latency(30.0)  # held that long, the exit would be ~30 s
        code, output, _ = run(
            collector,
            """
handler = config(shutdown_timeout=1, timeout=30)
logging.config.dictConfig({"version": 1, "handlers": {"cdp": handler},
                           "root": {"handlers": ["cdp"], "level": "INFO"}})
for i in range(20):
    logging.getLogger("app").info("track", extra={"user_id": str(i), "event": "E"})
"""
            + MARK_END,
        )

        assert 0 == code, output
        # shutdown_timeout (1 s) plus the interpreter's teardown: about 1.7 s on a heavily
        # loaded machine, once 6.4 s. Waiting for the held request would take 30 s.
        assert exit_seconds(output) < 10.0, output
        assert "outcome is unknown" in output or "shutdown_timeout" in output

    def test_dictconfig_during_an_outage_hands_the_batch_on(self, collector: Collector) -> None:
        """Replacing the handler while the server fails: one attempt under the logging lock,
        then the sender thread retries with backoff and delivers once the server is back."""
        collector.faults.status(503, seconds=1.0)
        code, output, _ = run(
            collector,
            """
logging.config.dictConfig({"version": 1, "handlers": {"cdp": config(shutdown_timeout=8)},
                           "root": {"handlers": ["cdp"], "level": "INFO"}})
for i in range(30):
    logging.getLogger("app").info("track", extra={"user_id": str(i), "event": "E"})
started = time.monotonic()
logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
print("dictConfig took", round(time.monotonic() - started, 3), file=sys.stderr)
""",
        )

        assert 0 == code, output
        assert float(output.split("dictConfig took")[1].split()[0]) < 2.0
        assert 30 == len({m["userId"] for m in collector.messages()})
        assert 0 == collector.counts()["duplicate_message_ids"]
