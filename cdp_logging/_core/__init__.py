"""The leaf layer: the rules, with no threads and no I/O of their own.

What a message is and how it is checked (``protocol``), built from a record or a call
(``calls``), turned into JSON bytes (``serialise``), and what is bound around it
(``context``); the options, error codes, retry policy and report text every other layer
shares; and the process-wide state (``process``). Everything above imports from here;
nothing here imports from above (``tests/test_architecture.py`` holds the rule).
"""

__all__: list[str] = []
