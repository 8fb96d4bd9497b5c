"""Bound identity and context (issue #10): merged where every front door builds a message."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import structlog

import cdp_logging
from cdp_logging import __version__
from cdp_logging._core.calls import build
from cdp_logging.collector import Collector

LIBRARY = {"name": "cdp_logging", "version": __version__}


@pytest.fixture(autouse=True)
def _clean() -> None:
    cdp_logging.clear_context()


def built(call_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    data = build(call_type, fields, 1_700_000_000.0)
    assert isinstance(data, bytes), data
    message: dict[str, Any] = json.loads(data)
    return message


class TestBindContext:
    def test_bound_fields_reach_a_message_without_them(self) -> None:
        """A track with no ids gets the bound user_id, anonymous_id and context."""
        cdp_logging.bind_context(user_id=42, anonymous_id="a-1", context={"ip": "1.2.3.4"})

        message = built("track", {"event": "E"})

        assert "42" == message["userId"]
        assert "a-1" == message["anonymousId"]
        assert {"ip": "1.2.3.4", "library": LIBRARY} == message["context"]

    def test_call_fields_win_in_either_spelling(self) -> None:
        """The call's own userId (camelCase or snake_case) wins over the bound one."""
        cdp_logging.bind_context(user_id="bound")

        assert "mine" == built("track", {"userId": "mine", "event": "E"})["userId"]
        assert "mine" == built("track", {"user_id": "mine", "event": "E"})["userId"]

    def test_context_merges_key_by_key_and_library_stays_ours(self) -> None:
        """Bound and call context keys are merged, the call's winning; library is the library's."""
        cdp_logging.bind_context(
            user_id="u", context={"ip": "1.1.1.1", "locale": "de", "library": {"name": "x"}}
        )

        message = built("track", {"event": "E", "context": {"ip": "2.2.2.2"}})

        assert {"ip": "2.2.2.2", "locale": "de", "library": LIBRARY} == message["context"]

    def test_integrations_merge_key_by_key(self) -> None:
        """Bound integrations are kept unless the call names the same destination."""
        cdp_logging.bind_context(user_id="u", integrations={"All": False, "Mixpanel": True})

        message = built("track", {"event": "E", "integrations": {"Mixpanel": False}})

        assert {"All": False, "Mixpanel": False} == message["integrations"]

    def test_nothing_bound_leaves_the_message_as_it_was(self) -> None:
        """With nothing bound, the message is exactly the call's."""
        message = built("track", {"user_id": "u", "event": "E"})

        assert {"library": LIBRARY} == message["context"]
        assert "anonymousId" not in message

    def test_bound_user_id_satisfies_the_required_id(self) -> None:
        """A track that relies on the bound user id is valid."""
        cdp_logging.bind_context(user_id="u")

        assert "u" == built("page", {"name": "Docs"})["userId"]

    def test_an_empty_id_unbinds_and_a_bound_id_alone_makes_a_track_valid(self) -> None:
        """An empty id unbinds like None (no message may carry it); a bound anonymous id is the
        track's only id and the message is built, not refused for a missing one."""
        cdp_logging.bind_context(user_id="u", anonymous_id="a")
        cdp_logging.bind_context(user_id="")

        message = built("track", {"event": "E"})

        assert {"anonymous_id": "a"} == cdp_logging.get_context()
        assert "a" == message["anonymousId"]
        assert "userId" not in message

    def test_bound_context_is_a_copy(self) -> None:
        """Changing the dict after binding changes nothing bound."""
        context = {"ip": "1.2.3.4"}
        cdp_logging.bind_context(user_id="u", context=context)
        context["ip"] = "changed"

        assert "1.2.3.4" == cdp_logging.get_context()["context"]["ip"]

    def test_a_refused_message_reports_the_bound_context(self) -> None:
        """The error's message shows the bound context too, as it would have been sent."""
        cdp_logging.bind_context(context={"ip": "1.2.3.4"})

        refused = build("track", {"event": "E"}, 1.0)

        assert not isinstance(refused, bytes)
        assert {"ip": "1.2.3.4", "library": LIBRARY} == refused.messages[0]["context"]

    def test_get_context_and_clear(self) -> None:
        """get_context shows what is bound in snake_case; clear_context unbinds it."""
        cdp_logging.bind_context(user_id="u")
        cdp_logging.bind_context(anonymous_id="a")

        assert {"user_id": "u", "anonymous_id": "a"} == cdp_logging.get_context()
        cdp_logging.clear_context()
        assert {} == cdp_logging.get_context()

    def test_bound_context_as_block_and_decorator_restores(self) -> None:
        """bound_context binds for the block or the call and restores what was before."""
        cdp_logging.bind_context(user_id="outer")

        with cdp_logging.bound_context(user_id="inner") as seen:
            assert "inner" == seen["user_id"]

        @cdp_logging.bound_context(anonymous_id="deco")
        def inside() -> dict[str, Any]:
            return cdp_logging.get_context()

        assert {"user_id": "outer", "anonymous_id": "deco"} == inside()
        assert {"user_id": "outer"} == cdp_logging.get_context()

    @pytest.mark.parametrize(
        "fields",
        [{"userid": "u"}, {"user_id": ["u"]}, {"context": "ip"}, {"integrations": 1}],
    )
    def test_mistakes_raise_type_error_at_bind(self, fields: dict[str, Any]) -> None:
        """An unknown field or a wrong type fails where it is bound, not as a lost event."""
        with pytest.raises(TypeError):
            cdp_logging.bind_context(**fields)

    def test_threads_and_tasks_do_not_share(self) -> None:
        """Each thread and asyncio task has its own bound fields."""
        seen: dict[str, Any] = {}

        def thread() -> None:
            seen["thread"] = cdp_logging.get_context()

        async def task(user: str) -> str:
            cdp_logging.bind_context(user_id=user)
            await asyncio.sleep(0)
            return str(cdp_logging.get_context()["user_id"])

        async def main() -> list[str]:
            return list(await asyncio.gather(task("a"), task("b")))

        cdp_logging.bind_context(user_id="main")
        worker = threading.Thread(target=thread)
        worker.start()
        worker.join(timeout=10)

        assert {} == seen["thread"]
        assert ["a", "b"] == asyncio.run(main())


class TestFrontDoors:
    def test_handler_processor_and_client_all_carry_it(
        self,
        collector: Collector,
        make_client: Callable[..., cdp_logging.Analytics],
        app_logger: logging.Logger,
    ) -> None:
        """The stdlib handler, the structlog processor and a direct call all send bound fields."""
        client = make_client()
        app_logger.addHandler(cdp_logging.AnalyticsHandler(client=client))
        processor = cdp_logging.AnalyticsProcessor(client=client)

        with cdp_logging.bound_context(user_id="u1", context={"locale": "fr"}):
            app_logger.info("track", extra={"event": "Stdlib"})
            processor(None, "info", {"event": "track", "event_name": "Structlog"})
            client.track(event="Direct")
        assert client.flush(timeout=5)

        assert collector.wait_for_messages(3)
        got = {m["event"]: (m["userId"], m["context"]["locale"]) for m in collector.messages()}
        assert {name: ("u1", "fr") for name in ("Stdlib", "Structlog", "Direct")} == got

    def test_structlog_contextvars_route(
        self, collector: Collector, make_client: Callable[..., cdp_logging.Analytics]
    ) -> None:
        """structlog's own bind_contextvars reaches the message through merge_contextvars."""
        client = make_client()
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                cdp_logging.AnalyticsProcessor(client=client, after="drop"),
            ]
        )
        try:
            structlog.contextvars.bind_contextvars(user_id="sl-user")
            structlog.get_logger().info("track", event_name="Bound by structlog")
        finally:
            structlog.contextvars.clear_contextvars()
            structlog.reset_defaults()
        assert client.flush(timeout=5)

        assert collector.wait_for_messages(1)
        assert "sl-user" == collector.messages()[0]["userId"]
