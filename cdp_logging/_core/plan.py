"""The tracking plan: what each event may carry, checked where the message is written.

A plan is JSON (a file, or the same mapping in Python)::

    {"events": {"Order Completed": {"description": "...", "properties": {<JSON Schema>}}},
     "identify": {"traits": {<JSON Schema>}},
     "group": {"traits": {<JSON Schema>}}}

Every key is optional, and a part the plan leaves out is not checked: a plan without
``events`` says nothing about tracks, one with ``events`` makes every track whose name it
does not list a violation ("unplanned"), since a renamed event is the drift a plan
exists to catch.

This module is a leaf on purpose (no threads, no I/O beyond reading the plan file at
load, nothing from the sending side): the client calls ``TrackingPlan.check`` at the
logging call, and the collector, the CLI and the pytest plugin call the same function
on the wire messages they hold, so all of them give the same reasons.

The validator is jsonschema-rs (the ``plan`` extra): JSON Schema draft 2020-12, and fast
enough for the logging call (~0.3 µs for a typical event against ~47 µs for the
pure-Python ``jsonschema``; ``fastjsonschema`` knows drafts 4 to 7 only).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_DEPTH",
    "PLAN_EXTRA_HINT",
    "PlanError",
    "Problem",
    "TrackingPlan",
    "describe",
    "load_plan",
    "plan_digest",
    "too_deep",
]

PLAN_EXTRA_HINT: Final = "pip install 'cdp_logging[plan]'"
# A value quoted in a reason is cut here: a 30 kB string must not become a 30 kB line.
_MAX_TEXT: Final = 300
# Problems named in one reason: a message with 500 unplanned properties is one line.
_MAX_SHOWN: Final = 10
_TOP_KEYS: Final = frozenset({"$schema", "description", "events", "identify", "group"})
_EVENT_KEYS: Final = frozenset({"description", "properties"})
_TRAITS_KEYS: Final = frozenset({"description", "traits"})
# The deepest properties / traits the validator is given. Its walk is recursive in
# native code: with a recursive schema ($ref), a value nested tens of thousands deep
# overflows the thread's stack and kills the process, where it should raise. Deeper
# values are a violation ("too deep to check"); no analytics property is 256 deep.
MAX_DEPTH: Final = 256
# What the JSON rule (_json) writes in place of a value it cannot write as it is: a
# container inside itself ("[Circular]"), nesting past 64 levels ("[Too deep]"), an
# int of thousands of digits ("<int of N bits>"). Where one is, the raw values the
# application passed are not what is sent, and may be cyclic or arbitrarily deep: a
# schema that follows a $ref would follow them until the stack overflows. For such a
# schema the shortcut looks for these in the JSON text (a string starting so is rare)
# and leaves the message to ``check`` on its JSON, which is neither. A schema without
# $ref looks only as deep as it is written, so the search (most of the shortcut's
# cost) is skipped; the raw values then decide, except in a schema that reaches into
# a cycle or a 4,000-digit int, where the JSON holds the marker text instead.
_REPLACED: Final = (b'"[', b'"<int of ')
_REFERENCES: Final = ('"$ref"', '"$dynamicRef"', '"$recursiveRef"')
# The parts of a message a plan speaks about, by call type: (plan key, message member).
_TRAIT_CALLS: Final = {"identify": "traits", "group": "traits"}


class PlanError(ValueError):
    """The plan itself is unusable: not JSON, not the plan's shape, or a bad JSON Schema.

    ``problems`` lists each one, as ``pointer: sentence`` into the plan document.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{source}: {shown}{more}")


@dataclass(frozen=True)
class Problem:
    """One way a wire message breaks the plan.

    Attributes:
        event: The track's event name, or ``identify`` / ``group``.
        pointer: The JSON pointer (RFC 6901) of the offending value in the wire message,
            such as ``/properties/revenue``.
        text: What is wrong, in a sentence a person can act on.
        key: What makes two problems the same one, whatever the values (for reporting
            each distinct problem once).
    """

    event: str
    pointer: str
    text: str
    key: tuple[str, ...] = ()

    def __str__(self) -> str:
        pointer = self.pointer or "/"
        if len(pointer) > _MAX_TEXT:  # a value 64 levels deep: its start says where
            pointer = pointer[: _MAX_TEXT - 3] + "..."
        return f"{pointer}: {self.text}"


def describe(problems: list[Problem]) -> str:
    """One reason for a message's problems, naming its event and each JSON pointer."""
    if not problems:
        return ""
    event = problems[0].event
    what = "identify" if event == "identify" else "group" if event == "group" else f"{event!r}"
    subject = what if event in _TRAIT_CALLS else f"track {what}"
    shown = "; ".join(str(p) for p in problems[:_MAX_SHOWN])
    if len(problems) > _MAX_SHOWN:
        shown += f"; and {len(problems) - _MAX_SHOWN} more"
    return f"{subject} breaks the tracking plan: {shown}"


def plan_digest(data: Mapping[str, Any]) -> str:
    """The plan's fingerprint, blind to formatting and key order: what a generated module
    records, so that ``plan check`` can tell when the module is older than the plan."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _pointer(parts: list[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _jsonschema_rs() -> Any:
    try:
        import jsonschema_rs
    except ImportError:
        raise ImportError(
            f"a tracking plan needs its JSON Schema validator, an optional extra: {PLAN_EXTRA_HINT}"
        ) from None
    return jsonschema_rs


def _refuse_remote(uri: str) -> Any:
    # A plan is checked at every logging call: it must never wait on the network, and a
    # plan that means something else when a server is down is not a plan.
    raise ValueError(f"a tracking plan cannot $ref a remote schema ({uri}); put it in $defs")


@dataclass(frozen=True)
class _Part:
    """One schema of the plan, compiled: an event's properties or a call's traits."""

    name: str  # the event name, or identify / group
    member: str  # properties or traits
    validator: Any  # a jsonschema_rs validator, or None when anything goes
    follows_refs: bool = False  # it may recurse as deep as the value goes


class TrackingPlan:
    """A loaded, validated plan: check wire messages against it.

    Build one with ``load_plan``. ``check`` is pure (a message in, problems out) and
    thread-safe; ``quick_ok`` is the logging call's shortcut.

    Attributes:
        source: Where the plan came from (its path, or ``<mapping>``), for messages.
        data: The plan document, as loaded.
        digest: ``plan_digest(data)``.
        events: The planned track event names, or None when the plan has no ``events``.
    """

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        problems = _shape_problems(data)
        if problems:
            raise PlanError(source, problems)
        try:  # a mapping given in Python must be JSON too: it is the same document
            self.data: dict[str, Any] = json.loads(json.dumps(data, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise PlanError(source, [f"/: not JSON ({error})"]) from None
        library = _jsonschema_rs()
        self.source = source
        self.digest = plan_digest(self.data)
        compiled: dict[str, _Part] = {}
        for pointer, name, member, schema in _schemas(self.data):
            validator = None
            if schema is not None and schema is not True and schema != {}:
                try:
                    validator = library.Draft202012Validator(schema, retriever=_refuse_remote)
                except (library.ValidationError, ValueError) as error:
                    inner = list(getattr(error, "instance_path", None) or [])
                    problems.append(
                        f"{pointer}{_pointer(inner)}: not a valid JSON Schema: {_first_line(error)}"
                    )
                    continue
            text = json.dumps(schema)
            follows = any(word in text for word in _REFERENCES)
            compiled[name] = _Part(name.lstrip("\0"), member, validator, follows)
        if problems:
            raise PlanError(source, problems)
        events = self.data.get("events")
        self.events: frozenset[str] | None = None if events is None else frozenset(events)
        self._tracks = {n: p for n, p in compiled.items() if not n.startswith("\0")}
        self._traits = {call: compiled.get(f"\0{call}") for call in _TRAIT_CALLS}
        self._has_events = events is not None
        self._library = library

    def __repr__(self) -> str:
        count = "no events" if self.events is None else f"{len(self.events)} events"
        return f"<TrackingPlan {self.source} ({count})>"

    # -- the logging call's shortcut ---------------------------------------------------

    def quick_ok(self, call_type: object, fields: Mapping[str, Any], built: bytes) -> bool:
        """Whether the message built from *fields* (its JSON: *built*) keeps the plan.

        On the raw values the application passed, before they are turned into JSON:
        True only when they already validate (then their JSON does too). False means
        "look closer": ``check`` on the wire message decides, so a ``Decimal`` or a
        tuple that becomes valid JSON is not a violation.
        """
        if call_type == "track":
            if not self._has_events:
                return True
            event = fields.get("event")
            if event is None:
                event = fields.get("event_name")
            part = self._tracks.get(event) if type(event) is str else None
            if part is None or ("event_name" in fields and "event" in fields):
                return False
            bag = fields.get("properties")
        elif call_type == "identify" or call_type == "group":
            part = self._traits[call_type]
            if part is None:
                return True
            bag = fields.get("traits")
        else:
            return True
        validator = part.validator
        if validator is None:
            return True
        if part.follows_refs and (_REPLACED[0] in built or _REPLACED[1] in built):
            return False
        try:
            return bool(validator.is_valid({} if bag is None else bag))
        except Exception:  # noqa: BLE001 - a value it cannot read: let check() decide
            return False

    # -- the check everyone shares -------------------------------------------------------

    def check(self, message: Mapping[str, Any]) -> list[Problem]:
        """The problems of one wire message (a dict as sent); empty when it keeps the plan.

        Messages of types the plan does not speak about (page, screen, alias, and any
        part the plan leaves out) have none.
        """
        call_type = message.get("type")
        if call_type == "track":
            if not self._has_events:
                return []
            event = message.get("event")
            name = event if isinstance(event, str) else repr(event)
            part = self._tracks.get(name)
            if part is None:
                return [self._unplanned(name)]
        elif call_type in _TRAIT_CALLS:
            name = str(call_type)
            found = self._traits[name]
            if found is None:
                return []
            part = found
        else:
            return []
        if part.validator is None:
            return []
        bag = message.get(part.member)
        if bag is None:
            bag = {}
        if _too_deep(bag):
            return [too_deep(part.name, "/" + part.member)]
        return self._problems(part, bag)

    def _unplanned(self, event: str) -> Problem:
        import difflib  # only when a message already broke the plan

        near = difflib.get_close_matches(event, sorted(self._tracks), n=1, cutoff=0.75)
        hint = f' (did you mean "{near[0]}"?)' if near else ""
        return Problem(
            event,
            "/event",
            _short(
                f"{json.dumps(event, ensure_ascii=False)} is not a planned event{hint}; "
                "add it to the plan's events, or fix the name"
            ),
            (event, "/event", "unplanned"),
        )

    def _problems(self, part: _Part, bag: object) -> list[Problem]:
        base: list[str | int] = [part.member]
        problems: list[Problem] = []
        try:
            errors = list(part.validator.iter_errors(bag))
        except Exception as unreadable:  # noqa: BLE001 - not JSON at all: say so, never raise
            return [
                Problem(
                    part.name,
                    _pointer(base),
                    _short(f"cannot be read as JSON ({type(unreadable).__name__}: {unreadable})"),
                    (part.name, _pointer(base), "unreadable"),
                )
            ]
        for error in errors:
            path: list[str | int] = [*base, *error.instance_path]
            kind = error.kind
            kind_name = type(kind).__name__
            schema_path = "/".join(str(p) for p in error.schema_path)
            if kind_name == "Required":
                missing = str(kind.property)
                pointer = _pointer([*path, missing])
                text = "is required by the plan and missing"
                problems.append(
                    Problem(part.name, pointer, text, (part.name, pointer, schema_path))
                )
            elif kind_name == "AdditionalProperties":
                for extra in kind.unexpected:
                    pointer = _pointer([*path, str(extra)])
                    text = "is not in the plan for this event (it allows no other properties)"
                    if part.member == "traits":
                        text = "is not in the plan's traits (it allows no other traits)"
                    problems.append(
                        Problem(part.name, pointer, text, (part.name, pointer, schema_path))
                    )
            else:
                pointer = _pointer(path)
                # The key leaves array positions out: items[3] and items[4] are one problem.
                shape = _pointer([p for p in path if not isinstance(p, int)])
                problems.append(
                    Problem(
                        part.name,
                        pointer,
                        _short(str(error.message)),
                        (part.name, shape, schema_path),
                    )
                )
        return problems


def too_deep(event: str, pointer: str) -> Problem:
    """The problem of a value nested deeper than the plan is checked (``MAX_DEPTH``)."""
    return Problem(
        event,
        pointer,
        f"is nested deeper than {MAX_DEPTH} levels, too deep to check against the plan",
        (event, pointer, "depth"),
    )


def _too_deep(value: object) -> bool:
    """Whether *value* nests containers more than MAX_DEPTH deep (walked without recursion)."""
    if type(value) is not dict and not isinstance(value, (Mapping, list, tuple)):
        return False
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, Mapping) else item
        for child in children:  # type: ignore[attr-defined]
            if isinstance(child, (Mapping, list, tuple)):
                stack.append((child, depth + 1))
    return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return _short(text[0]) if text else type(error).__name__


def _schemas(data: Mapping[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(plan pointer, part name, message member, schema) of every schema in the plan.

    Trait parts are named ``\\0identify`` / ``\\0group``, a name no event can have
    (an event name is text a person typed, never a NUL).
    """
    found: list[tuple[str, str, str, Any]] = []
    for name, entry in (data.get("events") or {}).items():
        pointer = _pointer(["events", name, "properties"])
        found.append((pointer, name, "properties", entry.get("properties")))
    for call in _TRAIT_CALLS:
        entry = data.get(call)
        if entry is not None:
            found.append((f"/{call}/traits", f"\0{call}", "traits", entry.get("traits")))
    return found


def _shape_problems(data: object) -> list[str]:
    """What is wrong with the plan document's own shape (its schemas are checked later)."""
    if not isinstance(data, Mapping):
        return [f"/: a plan is a JSON object, got {type(data).__name__}"]
    problems = [
        f"/{key}: not a plan key; plan keys are {', '.join(sorted(_TOP_KEYS))}"
        for key in data
        if key not in _TOP_KEYS
    ]
    events = data.get("events")
    if events is not None and not isinstance(events, Mapping):
        problems.append(f"/events: must map event names to their plan, got {_kind(events)}")
    elif events is not None:
        for name, entry in events.items():
            where = _pointer(["events", name])
            if not isinstance(name, str) or not name.strip():
                problems.append(f"{where}: an event name must be non-empty text")
            if not isinstance(entry, Mapping):
                problems.append(
                    f'{where}: must be an object such as {{"properties": {{...}}}}, '
                    f"got {_kind(entry)}"
                )
                continue
            problems += [
                f"{where}/{key}: not an event key; event keys are description, properties"
                for key in entry
                if key not in _EVENT_KEYS
            ]
            problems += _schema_value(f"{where}/properties", entry.get("properties"))
    for call in _TRAIT_CALLS:
        entry = data.get(call)
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            problems.append(
                f'/{call}: must be an object such as {{"traits": {{...}}}}, got {_kind(entry)}'
            )
            continue
        problems += [
            f"/{call}/{key}: not a {call} key; {call} keys are description, traits"
            for key in entry
            if key not in _TRAITS_KEYS
        ]
        problems += _schema_value(f"/{call}/traits", entry.get("traits"))
    return problems


def _schema_value(where: str, schema: object) -> list[str]:
    if schema is None or isinstance(schema, (bool, Mapping)):
        return []
    return [f"{where}: a JSON Schema is an object (or true / false), got {_kind(schema)}"]


def _kind(value: object) -> str:
    names: dict[type, str] = {dict: "an object", list: "an array", str: "text"}
    return names.get(type(value), type(value).__name__)


def load_plan(source: str | os.PathLike[str] | Mapping[str, Any] | TrackingPlan) -> TrackingPlan:
    """A ``TrackingPlan`` from a JSON file's path, the same mapping, or a plan already loaded.

    Raises:
        PlanError: the file is not JSON, or the plan is not a valid plan (each problem
            named by its JSON pointer in the plan).
        ImportError: the ``plan`` extra (jsonschema-rs) is not installed.
    """
    if isinstance(source, TrackingPlan):
        return source
    if isinstance(source, Mapping):
        return TrackingPlan(source, "<mapping>")
    if not isinstance(source, (str, os.PathLike)):
        raise PlanError(
            repr(source)[:60], [f"a plan is a JSON file's path or a mapping, got {_kind(source)}"]
        )
    path = os.fspath(source)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        raise PlanError(path, [f"cannot be read ({error.strerror or error})"]) from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise PlanError(path, [f"not JSON ({error})"]) from None
    return TrackingPlan(data, path)
