"""The ``cdp-logging`` command: ``collect`` and ``send``, run as real processes.

Every process is bounded by a timeout, every wait for output is a bounded queue read,
and all traffic goes to a collector on 127.0.0.1.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
import requests

import cdp_logging
from cdp_logging._core.protocol import CALL_TYPES
from cdp_logging.collector import Collector

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "cli-good-key-5ecret"
WRONG_KEY = "cli-wrong-key-5ecret"
LINE_SECONDS = 10.0
EXIT_SECONDS = 10.0
RUN_SECONDS = 60.0


def environment(**extra: str) -> dict[str, str]:
    """The test's environment without CDP settings, running this checkout's code."""
    env = {k: v for k, v in os.environ.items() if k not in ("CDP_WRITE_KEY", "CDP_HOST")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cdp_logging *args`` to its end, bounded."""
    return subprocess.run(
        [sys.executable, "-m", "cdp_logging", *args],
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        cwd=cwd,
        env=env if env is not None else environment(),
        check=False,
    )


class RunningCollector:
    """``python -m cdp_logging collect`` in the background, its stdout read line by line."""

    def __init__(self, *args: str, cwd: Path, strict: bool = True) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        mode = ["--strict"] if strict else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cdp_logging", "collect", *mode, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=environment(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.first_line = self.line()
        prefix = "collector listening on "
        assert self.first_line.startswith(prefix), self.first_line
        self.url = self.first_line.removeprefix(prefix).split()[0]

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for text in stdout:
            self._lines.put(text.rstrip("\n"))
        self._lines.put(None)

    def line(self) -> str:
        """The next line of stdout, waiting at most LINE_SECONDS."""
        text = self._lines.get(timeout=LINE_SECONDS)
        assert text is not None, "the collector's stdout ended"
        return text

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, list[str], str]:
        """Signal it, and return its exit status, the stdout lines left, and its stderr."""
        self.process.send_signal(signum)
        returncode = self.process.wait(timeout=EXIT_SECONDS)
        self._reader.join(EXIT_SECONDS)
        rest: list[str] = []
        while (text := self._lines.get(timeout=LINE_SECONDS)) is not None:
            rest.append(text)
        stderr = self.process.stderr
        assert stderr is not None
        return returncode, rest, stderr.read()

    def __enter__(self) -> RunningCollector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(EXIT_SECONDS)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def client(url: str, key: str = GOOD_KEY) -> cdp_logging.Analytics:
    return cdp_logging.Analytics(key, host=url, max_retries=0, shutdown_timeout=5)


def track(url: str, *, key: str = GOOD_KEY, timestamp: str | None = None) -> BaseException | None:
    """Send one track with the library; wait for the answer and return its error, if any."""
    with client(url, key) as analytics:
        future = analytics.track("ann", "Opened App", message_id="m-1", timestamp=timestamp)
        return future.exception(timeout=10)


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector(write_keys=(GOOD_KEY,), strict=True) as running:
        yield running


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TestCollect:
    def test_prints_url_then_events_and_exits_0_on_sigterm(self, tmp_path: Path) -> None:
        """collect prints its URL and viewer, a line per event, and exits 0 on SIGTERM."""
        with RunningCollector("--memory", cwd=tmp_path) as running:
            track(running.url, timestamp="2024-05-01T12:00:00Z")
            line = running.line()
            returncode, rest, stderr = running.stop()

        assert f"collector listening on {running.url} (viewer: {running.url}/, strict)" == (
            running.first_line
        )
        assert running.url.startswith("http://127.0.0.1:")
        assert line.startswith('track    userId="ann" event="Opened App" ')
        assert line.endswith(" timestamp=2024-05-01T12:00:00Z messageId=m-1")
        assert (0, [], "") == (returncode, rest, stderr)
        assert [] == list(tmp_path.iterdir())  # --memory writes no file

    @pytest.mark.parametrize(
        ("key", "warned"),
        [
            pytest.param((), True, id="no-key"),
            pytest.param(("--write-key", GOOD_KEY), False, id="key"),
        ],
    )
    def test_warns_when_listening_beyond_loopback_without_a_key(
        self, tmp_path: Path, key: tuple[str, ...], warned: bool
    ) -> None:
        """On 0.0.0.0 anyone reaching the port could post and read events: say so."""
        with RunningCollector("--memory", "--host", "0.0.0.0", *key, cwd=tmp_path) as running:
            returncode, _, stderr = running.stop()

        assert 0 == returncode
        warning = "warning: listening on 0.0.0.0 without --write-key"
        assert (warned, 1 if warned else 0) == (warning in stderr, len(stderr.splitlines()))

    def test_lenient_by_default_with_marks_on_the_line(self, tmp_path: Path) -> None:
        """Without --strict it takes what the services take, and says what they would flag."""
        with RunningCollector("--memory", cwd=tmp_path, strict=False) as running:
            response = requests.post(
                f"{running.url}/v1/batch",
                json={"batch": [{"type": "track", "event": "Tapped", "messageId": "m-9"}]},
                auth=(GOOD_KEY, ""),
                timeout=5,
            )
            line = running.line()
            returncode, _, stderr = running.stop()

        assert running.first_line.endswith(", lenient)")
        assert 200 == response.status_code
        assert (
            'track    event="Tapped" messageId=m-9'
            "  [the real service would flag: track needs a userId or an anonymousId]"
        ) == line
        assert (0, "") == (returncode, stderr)

    def test_sigint_exits_0(self, tmp_path: Path) -> None:
        """Ctrl-C (SIGINT) is a normal way to stop it: exit status 0, no traceback."""
        with RunningCollector("--memory", cwd=tmp_path) as running:
            returncode, _, stderr = running.stop(signal.SIGINT)

        assert (0, "") == (returncode, stderr)

    def test_rejected_request_gets_a_line_with_its_reason(self, tmp_path: Path) -> None:
        """A request with a refused key is printed with its status and reason, never the key."""
        with RunningCollector("--memory", "--write-key", GOOD_KEY, cwd=tmp_path) as running:
            error = track(running.url, key=WRONG_KEY)
            line = running.line()
            returncode, _, stderr = running.stop()

        assert isinstance(error, cdp_logging.DeliveryError)
        assert 401 == error.status
        assert "rejected HTTP 401 POST /v1/batch (1 message): unknown write key" == line
        assert (0, "") == (returncode, stderr)
        assert WRONG_KEY not in running.first_line + line

    def test_quiet_prints_no_events(self, tmp_path: Path) -> None:
        """--quiet keeps the first line and nothing per event."""
        with RunningCollector("--memory", "--quiet", cwd=tmp_path) as running:
            # The line would be written before the answer, so none can follow this.
            track(running.url)
            requests.post(f"{running.url}/v1/batch", data=b"nope", timeout=5)
            returncode, rest, stderr = running.stop()

        assert (0, [], "") == (returncode, rest, stderr)

    def test_keeps_events_in_sqlite_across_restarts(self, tmp_path: Path) -> None:
        """By default events go to ./cdp-events.sqlite3, and a restart finds them there."""
        database = tmp_path / "cdp-events.sqlite3"
        with RunningCollector(cwd=tmp_path) as first:
            stored = first.line()
            track(first.url)
            first.line()
            first_exit = first.stop()[0]
        with RunningCollector(cwd=tmp_path) as second:
            restored = second.line()
            messages = requests.get(f"{second.url}/messages", timeout=5).json()
            events = requests.get(f"{second.url}/api/events", timeout=5).json()["events"]
            second_exit = second.stop()[0]

        assert f"storing events in {database} (0 from earlier runs)" == stored
        assert f"storing events in {database} (1 from earlier runs)" == restored
        assert ["m-1"] == [message["messageId"] for message in messages]
        assert [(1, True, "m-1")] == [
            (event["id"], event["accepted"], event["message"]["messageId"]) for event in events
        ]
        assert (0, 0) == (first_exit, second_exit)

    def test_db_option_names_the_file(self, tmp_path: Path) -> None:
        """--db PATH keeps events in that file, readable with the sqlite3 module."""
        database = tmp_path / "elsewhere.db"
        with RunningCollector("--db", str(database), cwd=tmp_path) as running:
            running.line()
            track(running.url)
            running.line()
            running.stop()

        with sqlite3.connect(database) as connection:
            rows = connection.execute("SELECT type, message_id FROM events").fetchall()
        connection.close()
        assert [("track", "m-1")] == rows

    def test_port_in_use_exits_1(self, tmp_path: Path) -> None:
        """A port another process holds is a clear error and exit status 1."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            result = cli("collect", "--memory", "--port", str(port), cwd=tmp_path)

        assert 1 == result.returncode
        assert f"cdp-logging collect: cannot listen on 127.0.0.1:{port}: " in result.stderr
        assert "--port 0" in result.stderr
        assert "Traceback" not in result.stderr

    def test_unreadable_database_exits_1(self, tmp_path: Path) -> None:
        """A --db file that is not a database is a clear error and exit status 1."""
        not_a_database = tmp_path / "notes.txt"
        not_a_database.write_text("just some text, long enough to have a header page\n" * 20)

        result = cli("collect", "--port", "0", "--db", str(not_a_database), cwd=tmp_path)

        assert 1 == result.returncode
        assert f"cannot open the database {not_a_database}" in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            ["collect", "--port", "nope"],
            ["collect", "--port", "70000"],
            ["collect", "--db", "x.sqlite3", "--memory"],
            ["collect", "--write-key", ""],
            ["collect", "--verbose"],
            ["nonsense"],
            [],
        ],
    )
    def test_bad_arguments_exit_2(self, tmp_path: Path, args: list[str]) -> None:
        """Bad arguments are a usage message and exit status 2, before anything listens."""
        result = cli(*args, cwd=tmp_path)

        assert 2 == result.returncode
        assert "usage: cdp-logging" in result.stderr
        assert [] == list(tmp_path.iterdir())

    def test_old_module_entry_point_still_works(self, tmp_path: Path) -> None:
        """python -m cdp_logging.collector runs the same command, in memory by default."""
        result = subprocess.run(
            [sys.executable, "-m", "cdp_logging.collector", "--help"],
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            cwd=tmp_path,
            env=environment(),
            check=False,
        )

        assert 0 == result.returncode
        assert "--db PATH" in result.stdout
        assert "in memory" in result.stdout


class TestHelp:
    def test_top_level_help_lists_the_commands(self) -> None:
        """--help names both commands and the exit statuses."""
        result = cli("--help")

        assert 0 == result.returncode
        for text in ("collect", "send", "relay", "python -m cdp_logging", "exit status"):
            assert text in result.stdout

    @pytest.mark.parametrize(
        ("command", "options"),
        [
            ("collect", ["--host", "--port", "--write-key", "--db", "--memory", "--quiet"]),
            (
                "send",
                ["--host", "--write-key", "--type", "--user-id", "--event", "--timeout"],
            ),
            (
                "relay",
                [
                    "--buffer",
                    "--host",
                    "--write-key",
                    "--group",
                    "--takeover",
                    "--shutdown-timeout",
                ],
            ),
        ],
    )
    def test_command_help_lists_every_option(self, command: str, options: list[str]) -> None:
        """Each command's --help describes all of its options."""
        result = cli(command, "--help")

        assert 0 == result.returncode
        assert [] == [option for option in options if option not in result.stdout]

    def test_version(self) -> None:
        """--version prints the library's version."""
        result = cli("--version")

        assert (0, f"cdp-logging {cdp_logging.__version__}\n") == (
            result.returncode,
            result.stdout,
        )

    def test_console_script_is_installed(self) -> None:
        """The cdp-logging script next to this Python runs the same command."""
        script = Path(sys.executable).parent / "cdp-logging"
        if not script.exists():
            pytest.skip(f"no console script at {script}: the project is not installed")

        result = subprocess.run(
            [str(script), "--version"],
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            env=environment(),
            check=False,
        )

        assert (0, f"cdp-logging {cdp_logging.__version__}\n") == (
            result.returncode,
            result.stdout,
        )


class TestSend:
    def test_success_prints_the_message_and_exits_0(self, collector: Collector) -> None:
        """send delivers one track and prints it and the host's acceptance."""
        result = cli("send", "--host", collector.url, "--write-key", GOOD_KEY)

        [message] = collector.messages()
        assert 0 == result.returncode, result.stderr
        assert ("track", "cli-test", "cdp-logging test") == (
            message["type"],
            message["userId"],
            message["event"],
        )
        assert (
            f"OK: {collector.url} accepted the track (messageId {message['messageId']})"
            == result.stdout.splitlines()[-1]
        )
        assert f'"messageId": "{message["messageId"]}"' in result.stdout
        assert GOOD_KEY not in result.stdout + result.stderr

    @pytest.mark.parametrize("kind", CALL_TYPES)
    def test_every_call_type_is_valid(self, collector: Collector, kind: str) -> None:
        """Each --type sends one message the strict collector accepts."""
        options = ["--type", kind, "--user-id", "u-7", "--event", "Checked"]

        result = cli("send", "--host", collector.url, "--write-key", GOOD_KEY, *options)

        assert 0 == result.returncode, result.stderr
        assert [(kind, "u-7")] == [(m["type"], m["userId"]) for m in collector.messages()]

    def test_key_and_host_from_the_environment(self, collector: Collector) -> None:
        """CDP_WRITE_KEY and CDP_HOST are used when the options are not given."""
        env = environment(CDP_WRITE_KEY=GOOD_KEY, CDP_HOST=collector.url)

        result = cli("send", env=env)

        assert 0 == result.returncode, result.stderr
        assert 1 == len(collector.messages())
        assert GOOD_KEY not in result.stdout + result.stderr

    def test_wrong_key_exits_1_naming_the_401(self, collector: Collector) -> None:
        """A refused key is FAILED with the 401 and the server's reason, never the key."""
        result = cli("send", "--host", collector.url, "--write-key", WRONG_KEY)

        assert 1 == result.returncode
        assert "FAILED (http_status 401): " in result.stderr
        assert "unknown write key" in result.stderr
        assert 1 == result.stderr.count("unknown write key"), result.stderr  # said once
        assert "OK:" not in result.stdout
        assert WRONG_KEY not in result.stdout + result.stderr
        assert [] == collector.messages()

    def test_no_key_exits_2_naming_the_variable(self, collector: Collector) -> None:
        """Without --write-key or CDP_WRITE_KEY it is a usage error naming the variable."""
        result = cli("send", "--host", collector.url)

        assert 2 == result.returncode
        assert "CDP_WRITE_KEY" in result.stderr
        assert 0 == collector.counts()["requests"]

    def test_unreachable_host_exits_1(self) -> None:
        """A host nothing listens on is a network failure, exit status 1."""
        url = f"http://127.0.0.1:{free_port()}"

        result = cli("send", "--host", url, "--write-key", GOOD_KEY, "--timeout", "5")

        assert 1 == result.returncode
        assert "FAILED (network): " in result.stderr
        assert "cdp_logging:" not in result.stderr  # the library's own line is not repeated
        assert GOOD_KEY not in result.stdout + result.stderr

    def test_slow_host_exits_1_within_the_timeout(self, collector: Collector) -> None:
        """A host slower than --timeout is a failure, not a hang."""
        collector.faults.latency(30)

        result = cli("send", "--host", collector.url, "--write-key", GOOD_KEY, "--timeout", "1")

        assert 1 == result.returncode
        assert "FAILED (" in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            ["--host", "ftp://127.0.0.1", "--write-key", GOOD_KEY],
            ["--host", "http://127.0.0.1:9", "--write-key", GOOD_KEY, "--type", "bogus"],
            ["--host", "http://127.0.0.1:9", "--write-key", GOOD_KEY, "--timeout", "0"],
        ],
    )
    def test_bad_arguments_exit_2(self, args: list[str]) -> None:
        """A bad host, type or timeout is a usage error (exit 2) and sends nothing."""
        result = cli("send", *args)

        assert 2 == result.returncode
        assert "usage: cdp-logging send" in result.stderr
        assert GOOD_KEY not in result.stdout + result.stderr


class TestRelayUsage:
    """The relay's own runs are in test_fleet.py; here, what it refuses before starting."""

    @pytest.mark.parametrize(
        "args",
        [
            ["--buffer", "memory", "--write-key", GOOD_KEY],
            [
                "--buffer",
                "redis://:pw-5ecret@127.0.0.1:9/0",
                "--write-key",
                GOOD_KEY,
                "--takeover",
                "0",
            ],
            ["--buffer", "redis://:pw-5ecret@127.0.0.1:9/0?max_len=x", "--write-key", GOOD_KEY],
            ["--buffer", "redis://:pw-5ecret@127.0.0.1:9/0"],  # no write key anywhere
        ],
    )
    def test_bad_arguments_exit_2(self, args: list[str]) -> None:
        result = cli("relay", *args)

        assert 2 == result.returncode, result.stderr
        assert "usage: cdp-logging relay" in result.stderr
        assert "pw-5ecret" not in result.stdout + result.stderr
