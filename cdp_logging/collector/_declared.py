"""The tracking plan a user declared (``collect --plan``), beside the one the collector sees.

``_plan`` learns what arrives; this module holds what should arrive: a plan file
checked with the client's own checker (``cdp_logging._core.plan``), so that the
collector's mark or 400 and the client's warning give a violation the same words. It
also keeps the comparison the viewer's Schema view shows: planned events never seen,
unplanned events seen, and violations per event and per JSON pointer.

The checker and its validator (jsonschema-rs, the ``plan`` extra) are imported only
when a plan is given, so that a collector without one still loads nothing but the
standard library.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ._plan import MAX_KEYS, MAX_SCHEMAS

if TYPE_CHECKING:
    from .._core.plan import Problem
    from .._core.plan import TrackingPlan as PlanChecker

__all__ = ["DeclaredPlan", "PlanSource", "load_declared"]

PlanSource = str | os.PathLike[str] | Mapping[str, Any]
# The calls a plan speaks about besides tracks: each is one "event" of the comparison.
_TRAIT_CALLS: Final = ("identify", "group")


def load_declared(source: PlanSource | DeclaredPlan) -> DeclaredPlan:
    """A :class:`DeclaredPlan` from a plan file's path or the same mapping.

    Raises:
        PlanError: (a ``ValueError``) the file cannot be read, is not JSON, or is not
            a valid plan; each problem is named by its JSON pointer in the plan.
        ImportError: the ``plan`` extra is missing; the message names
            ``cdp_logging[plan]``.
    """
    if isinstance(source, DeclaredPlan):
        return source
    from .._core.plan import load_plan  # only with a plan: see the module's docstring

    return DeclaredPlan(load_plan(source))


class DeclaredPlan:
    """A loaded plan: the reason a message breaks it, and what arrived against it.

    ``reason`` is pure and thread-safe. The comparison (``observe``, ``clear``,
    ``comparison``) is not locked: the store calls it with its Condition held, as it
    does the observed schema. Bounded as that schema is: at most ``MAX_SCHEMAS``
    unplanned names and ``MAX_KEYS`` JSON pointers per event are kept, and what is
    left out is counted.
    """

    def __init__(self, checker: PlanChecker) -> None:
        from .._core.plan import describe

        self._checker = checker
        self._describe = describe
        self.source: str = checker.source
        # (call type, event name or the call) -> messages; a track may be named "identify".
        self._seen: Counter[tuple[str, str]] = Counter()
        self._broken: Counter[tuple[str, str]] = Counter()  # messages that broke the plan
        self._unplanned: Counter[str] = Counter()
        self._pointers: dict[tuple[str, str], Counter[str]] = {}  # same keys as _seen
        self._examples: dict[tuple[str, str, str], str] = {}
        self._checked = 0
        self._left_out = 0

    def __repr__(self) -> str:
        return f"<DeclaredPlan {self.source}>"

    def problems(self, message: object) -> list[Problem]:
        """How *message* breaks the plan; empty when it keeps it or is not a message."""
        if not isinstance(message, Mapping):
            return []
        return self._checker.check(message)

    def reason(self, message: object) -> str | None:
        """The client's words for how *message* breaks the plan, or None when it keeps it."""
        problems = self.problems(message)
        return self._describe(problems) if problems else None

    # -- the comparison, fed by the store ---------------------------------------------

    def clear(self) -> None:
        for counter in (self._seen, self._broken, self._unplanned):
            counter.clear()
        self._pointers.clear()
        self._examples.clear()
        self._checked = 0
        self._left_out = 0

    def observe(self, message: object) -> None:
        """Count one message that arrived: its event seen, and each problem it has."""
        if not isinstance(message, Mapping):
            return
        kind = message.get("type")
        planned = self._checker.events
        if kind == "track" and planned is not None:
            event = message.get("event")
            name = event if isinstance(event, str) else repr(event)
            if name not in planned:
                # Its one problem is its name: counted here, not among the pointers, so
                # that the pointers stay bounded by the plan's own size.
                self._checked += 1
                if name in self._unplanned or len(self._unplanned) < MAX_SCHEMAS:
                    self._unplanned[name] += 1
                else:
                    self._left_out += 1
                return
            self._seen[("track", name)] += 1
        elif kind in _TRAIT_CALLS and self._checker.data.get(str(kind)) is not None:
            self._seen[(str(kind), str(kind))] += 1
        else:
            return  # a call the plan says nothing about
        self._checked += 1
        problems = self._checker.check(message)
        if not problems:
            return
        event = (str(kind), problems[0].event)
        self._broken[event] += 1
        pointers = self._pointers.setdefault(event, Counter())
        # Each pointer once per message: "/properties/items" counts messages, not items.
        for pointer, text in dict(_where(p) for p in problems).items():
            if pointer not in pointers and len(pointers) >= MAX_KEYS:
                self._left_out += 1
                continue
            pointers[pointer] += 1
            self._examples[(event[0], event[1], pointer)] = text

    def comparison(self) -> dict[str, Any]:
        """What ``GET /api/plan`` answers as ``declared``.

        ``planned``: each planned event (and identify / group, when the plan has their
        traits) with the messages ``seen`` and those that broke it (``violations``).
        ``never_seen``: the planned ones no message was seen for. ``unplanned``: the
        track names seen that the plan does not list, with their counts (each such
        message is a violation, of its name). ``violations``: per planned event (its
        ``type`` and name) and JSON pointer, how many messages broke the plan there,
        and the latest reason's text. ``checked``: messages the plan speaks about.
        ``left_out``: names and pointers not kept past the limits.
        """
        data = self._checker.data
        planned: list[dict[str, Any]] = []
        for name, entry in sorted((data.get("events") or {}).items()):
            description = entry.get("description") if isinstance(entry, Mapping) else None
            planned.append(self._planned("track", name, description))
        for call in _TRAIT_CALLS:
            entry = data.get(call)
            if entry is not None:
                planned.append(self._planned(call, call, entry.get("description")))
        violations = [
            {
                "type": kind,
                "event": event,
                "pointer": pointer,
                "count": count,
                "text": self._examples.get((kind, event, pointer), ""),
            }
            for (kind, event), pointers in sorted(self._pointers.items())
            for pointer, count in sorted(pointers.items())
        ]
        return {
            "source": self.source,
            "checked": self._checked,
            "planned": planned,
            "never_seen": [p["name"] for p in planned if not p["seen"]],
            "unplanned": [
                {"name": name, "seen": count} for name, count in sorted(self._unplanned.items())
            ],
            "violations": violations,
            "left_out": self._left_out,
        }

    def _planned(self, kind: str, name: str, description: object) -> dict[str, Any]:
        return {
            "type": kind,
            "name": name,
            "description": description if isinstance(description, str) else None,
            "seen": self._seen[(kind, name)],
            "violations": self._broken[(kind, name)],
        }


def _where(problem: Problem) -> tuple[str, str]:
    """(pointer, text): where a problem is, array positions left out as its key does."""
    shape = problem.key[1] if len(problem.key) > 1 else problem.pointer
    return shape or "/", problem.text
