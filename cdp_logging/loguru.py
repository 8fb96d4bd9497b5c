"""``AnalyticsSink``: the loguru front door, beside the stdlib handler and structlog's
processor.

``logger.add(AnalyticsSink())``: a record is an analytics record in the same two forms
as for the handler, in loguru's spelling: a ``cdp`` mapping bound to it
(``logger.bind(cdp={"user_id": "u1", "event": "Signed Up"}).info("track")``), or a
message that is exactly a call type with the payload's flat keys among its ``extra``
(``logger.info("track", user_id="u1", event="Signed Up")``: loguru puts keyword
arguments in ``extra``). Every other record is ignored here.

The sink is an object with ``write`` and ``stop``, not a function: for such an object
loguru calls ``stop()`` when the sink is removed (``logger.remove()``, also run by
loguru's own exit hook), which closes the client: it takes nothing more and delivers
what it holds within ``shutdown_timeout``. ``stop`` does not wait for that delivery:
loguru calls it holding the sink's lock, and the sender thread may need that very lock
(the standard library's records routed into loguru, the usual ``InterceptHandler``:
urllib3 logs each connection the sender opens), so waiting there held the sender up
until the timeout and delivered nothing. A thread of its own closes the client instead;
the exit hook waits for it, as for every client, and so does ``sink.client.flush()``.
The sink has no ``flush`` of its own: loguru would call it after every record.

This module is ``cdp_logging.loguru``; ``import loguru`` below is the real package
(absolute imports), as ``structlog.twisted`` imports Twisted.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from ._client import Analytics, client_or_new
from ._core.calls import FLAT_KEYS, fields_from_source
from ._core.options import ClientOptions
from ._core.report import warn

try:
    import loguru as _loguru  # noqa: F401 - only to say early that it is missing
except ImportError as error:
    raise ImportError(
        "cdp_logging.loguru needs loguru, an optional extra: pip install 'cdp_logging[loguru]'"
    ) from error

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["AnalyticsSink"]


def _fields(record: Record) -> tuple[object, Mapping[str, Any], bool] | None:
    """The loguru twin of ``_core.calls.fields_from_record``: same forms, same keys.

    ``name`` stays out of the flat keys, as for the handler, so a ``name`` bound for
    another purpose is never sent as a page name (the ``cdp`` form carries it).
    """
    return fields_from_source(record["message"], record["extra"], FLAT_KEYS)


class AnalyticsSink:
    """A loguru sink that sends analytics records to a CDP and ignores the rest.

    Args:
        write_key, host, options: The same keywords as ``Analytics`` (``CDP_WRITE_KEY`` and
            ``CDP_HOST`` when not given), for a client of the sink's own.
        client: Share an existing ``Analytics`` instead; the sink then leaves closing
            it to its owner (``stop`` flushes it).

    Add it with ``logger.add(sink)``; loguru's ``level`` and ``filter`` apply as for any
    sink. It never raises into loguru: a refused message is reported through
    ``on_error``, ``stats()`` and stderr like everywhere else.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        *,
        client: Analytics | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self._client, self._owns_client = client_or_new(client, write_key, host, options)
        # loguru names a sink by its ``name`` attribute (in its errors and repr).
        self.name = repr(self)

    def __repr__(self) -> str:
        return f"<AnalyticsSink {self._client!r}>"

    @property
    def client(self) -> Analytics:
        """The ``Analytics`` this sink sends through."""
        return self._client

    def write(self, message: Message) -> None:
        """Called by loguru for each record that passed the sink's level and filter."""
        try:
            record = message.record
            found = _fields(record)
            if found is None:
                return
            call_type, fields, strict = found
            self._client.submit(call_type, fields, record["time"].timestamp(), strict=strict)
        except Exception as error:  # noqa: BLE001 - a logging call never raises into the app
            warn(f"AnalyticsSink failed: {type(error).__name__}")

    def stop(self) -> None:
        """Called by loguru's ``logger.remove()``: close, delivering within ``shutdown_timeout``.

        Returns at once; the delivery goes on in a thread of its own (the module's
        docstring says why), which ``sink.client.flush()`` waits for. The sink's own
        client is closed so that a record reaching it again, should the sink be added
        again, opens a new sender (as a closed handler reopens); a shared one is only
        flushed.
        """
        finish: Callable[[], object] = (
            functools.partial(self._client.close, reopen=True)
            if self._owns_client
            else self._client.flush
        )
        thread = threading.Thread(target=finish, name="cdp_logging-loguru-stop", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            # No new thread at interpreter shutdown (3.12.0-3.12.2): loguru's exit hook
            # is running, and so does ours, which delivers for every client.
            return
