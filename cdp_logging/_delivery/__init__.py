"""The delivery layer: the sender thread and what it needs to end every batch once.

It gets its buffer, transport and clock from the client that makes it, so each of
them can be replaced in a test; it batches (``batch``), sends, retries, and settles
each batch in one place (``settle``), resolving the calls' Futures (``future``).
"""

__all__: list[str] = []
