"""How a batch body reaches the CDP: the interface (``base``), requests, and a test double.

A transport is handed a body and a timeout and answers with a status; everything about
when to retry lives in the delivery layer, so a test swaps the transport instead of
patching the network stack (httpx's ``_transports/`` is the model).
"""

__all__: list[str] = []
