"""The buffers between the logging call and the sender, behind one interface (``base``).

``memory`` (the default), ``sqlite`` (a file that survives the process) and ``redis``
(a stream shared by a fleet) are chosen by the ``buffer`` option; the sender sees only
the interface. A buffer imports nothing from the delivery layer: what it cannot send
itself it hands back through the callbacks it was given.
"""

__all__: list[str] = []
