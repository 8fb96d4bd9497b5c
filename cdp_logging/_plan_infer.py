"""From observed traffic to a starting tracking plan (``cdp-logging plan infer``).

The plan it writes is one every observed message satisfies, and no looser than it has
to be: each property gets the JSON types it was seen with, the properties present in
every message of an event are required, and an event allows no property it was never
seen with (so a typo is caught once the plan is in force). Strings are never turned
into enums: a handful of observed values is not the list of allowed ones. A person
edits the result; it is a start, not the truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["infer_plan", "read_jsonl"]

# Order of "type" lists in the output, so the same traffic gives the same file.
_TYPE_ORDER: Final = ("string", "integer", "number", "boolean", "object", "array", "null")


def read_jsonl(path: str) -> list[tuple[int, dict[str, Any]]]:
    """The wire messages of a JSONL file with their line numbers; blank lines are skipped.

    Raises:
        ValueError: a line that is not a JSON object, naming its line number.
    """
    messages: list[tuple[int, dict[str, Any]]] = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error})") from None
            if not isinstance(message, dict):
                raise ValueError(f"{path}:{number}: a wire message is a JSON object")
            messages.append((number, message))
    return messages


class _Shape:
    """What was seen at one place in the messages: the types, and below them."""

    def __init__(self) -> None:
        self.types: set[str] = set()
        self.seen = 0  # objects seen here, for "required"
        self.keys: dict[str, _Shape] = {}
        self.key_counts: dict[str, int] = {}
        self.items: _Shape | None = None

    def add(self, value: object) -> None:
        kind = _json_type(value)
        self.types.add(kind)
        if kind == "object":
            assert isinstance(value, Mapping)
            self.seen += 1
            for key, inner in value.items():
                self.keys.setdefault(key, _Shape()).add(inner)
                self.key_counts[key] = self.key_counts.get(key, 0) + 1
        elif kind == "array":
            assert isinstance(value, list)
            if self.items is None:
                self.items = _Shape()
            for inner in value:
                self.items.add(inner)

    def schema(self, *, closed: bool) -> dict[str, Any]:
        types = set(self.types)
        if {"integer", "number"} <= types:
            types.discard("integer")  # 3 and 3.5 both fit "number"
        ordered = [t for t in _TYPE_ORDER if t in types]
        schema: dict[str, Any] = {}
        if ordered:
            schema["type"] = ordered[0] if len(ordered) == 1 else ordered
        if "object" in types:
            schema["properties"] = {
                key: shape.schema(closed=False) for key, shape in sorted(self.keys.items())
            }
            required = sorted(k for k, n in self.key_counts.items() if n == self.seen)
            if required:
                schema["required"] = required
            if closed:
                schema["additionalProperties"] = False
        if "array" in types and self.items is not None and self.items.types:
            schema["items"] = self.items.schema(closed=False)
        return schema


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        # 2.0 on the wire is an integer to JSON Schema too; keep it one if all are.
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array"


def infer_plan(messages: Iterable[Mapping[str, Any]], source: str = "") -> dict[str, Any]:
    """A plan that every one of *messages* satisfies (tracks, identify and group traits).

    Page, screen and alias messages say nothing a plan checks, and are skipped.
    """
    events: dict[str, _Shape] = {}
    counts: dict[str, int] = {}
    traits: dict[str, _Shape] = {}
    for message in messages:
        call_type = message.get("type")
        if call_type == "track" and isinstance(message.get("event"), str):
            name = message["event"]
            bag = message.get("properties")
            events.setdefault(name, _Shape()).add(bag if isinstance(bag, Mapping) else {})
            counts[name] = counts.get(name, 0) + 1
        elif call_type in ("identify", "group"):
            bag = message.get("traits")
            traits.setdefault(str(call_type), _Shape()).add(bag if isinstance(bag, Mapping) else {})
    origin = f" in {source}" if source else ""
    plan: dict[str, Any] = {}
    plan["events"] = {
        name: {
            "description": f"Seen {counts[name]} time(s){origin}: say when it is tracked.",
            "properties": {"type": "object", **_body(shape.schema(closed=True))},
        }
        for name, shape in sorted(events.items())
    }
    for call, shape in sorted(traits.items()):
        # identify and group send the traits that changed, not all of them: none is
        # required, and others may come.
        body = _body(shape.schema(closed=False))
        body.pop("required", None)
        plan[call] = {"traits": {"type": "object", **body}}
    return plan


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    # Every bag is an object (a missing one is checked as {}): its "type" is said once.
    return {key: value for key, value in schema.items() if key != "type"}
