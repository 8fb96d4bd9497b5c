"""Typed Python from a tracking plan (``cdp-logging plan codegen``).

One function per planned track event, named by the event in snake_case ("Order
Completed" -> ``order_completed``), whose keyword arguments are the event's properties
with their JSON Schema types as Python types (required ones without defaults). So mypy
sees a misspelt property or a ``revenue`` passed as text in the application's code,
before any test runs. Each function only builds the mapping to pass as ``extra=`` to a
logging call; nothing is sent until it is logged.

The module records the plan's digest (``PLAN_SHA256``), and ``module_digest`` reads it
back, so ``plan check --module`` can say when the module is older than the plan.
"""

from __future__ import annotations

import builtins
import json
import keyword
import re
import textwrap
from collections.abc import Mapping
from typing import Any, Final

from ._core.plan import TrackingPlan

__all__ = ["generate_module", "module_digest", "python_name"]

_DIGEST_LINE: Final = re.compile(r'^PLAN_SHA256: Final = "([0-9a-f]{64})"$', re.MULTILINE)
# Names every function has, or the module binds: a property or event with one of these
# names gets a trailing underscore instead.
_CALL_PARAMETERS: Final = ("user_id", "anonymous_id", "context", "timestamp")
_MODULE_NAMES: Final = frozenset(
    {"annotations", "datetime", "str", "int", "float", "bool", "dict", "list", "object", "type"}
)
# The line length formatters default to (ruff, black's 88 is within it).
_WIDTH: Final = 100
_SIMPLE: Final = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
    "object": "Mapping[str, Any]",
}


def python_name(name: str) -> str:
    """*name* (an event or property name as people write it) as a snake_case identifier."""
    # camelCase and HTTPServer split into words; "3D" stays one.
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    text = re.sub(r"[^0-9a-zA-Z]+", "_", spaced).strip("_").lower()
    if not text:
        text = "unnamed"
    if text[0].isdigit():
        text = "n_" + text
    if keyword.iskeyword(text) or keyword.issoftkeyword(text) or text in _MODULE_NAMES:
        text += "_"
    return text


def _global_name(name: str) -> str:
    return name + "_" if hasattr(builtins, name) else name


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate = f"{name}_{number}"
        number += 1
    taken.add(candidate)
    return candidate


def _union(parts: list[str]) -> str:
    seen: list[str] = []
    for part in parts:
        for piece in part.split(" | "):
            if piece not in seen:
                seen.append(piece)
    if "Any" in seen:
        return "Any"
    # None last, as people write it.
    ordered = [p for p in seen if p != "None"] + (["None"] if "None" in seen else [])
    return " | ".join(ordered)


def _literal(values: list[Any]) -> str | None:
    """Literal[...] of *values*, when each is text, a whole number or a flag."""
    pieces: list[str] = []
    has_none = False
    for value in values:
        if value is None:
            has_none = True
        elif isinstance(value, (str, bool, int)):
            pieces.append(_text(value) if isinstance(value, str) else repr(value))
        else:
            return None
    parts = [f"Literal[{', '.join(pieces)}]"] if pieces else []
    return _union([*parts, *(["None"] if has_none else [])]) or None


def annotation(schema: object) -> str:
    """A Python type for values a JSON Schema accepts (Any where it cannot say)."""
    if not isinstance(schema, Mapping):
        return "Any"
    if "const" in schema:
        return _literal([schema["const"]]) or "Any"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return _literal(schema["enum"]) or "Any"
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return _union([annotation(option) for option in options])
    kinds = schema.get("type")
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list) or not kinds:
        return "Any"
    parts: list[str] = []
    for kind in kinds:
        if kind == "array":
            parts.append(f"Sequence[{annotation(schema.get('items', True))}]")
        else:
            parts.append(_SIMPLE.get(str(kind), "Any"))
    return _union(parts)


def _text(value: str) -> str:
    """A Python string literal of *value*, in double quotes as formatters write them."""
    return json.dumps(value)


def _docstring(text: str) -> str:
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    return body or "(no description in the plan)"


def _event_function(event: str, entry: Mapping[str, Any], name: str) -> list[str]:
    schema = entry.get("properties")
    listed: Mapping[str, Any] | None = None
    required: set[str] = set()
    if isinstance(schema, Mapping):
        required = {str(name) for name in schema.get("required") or []}
        named = schema.get("properties")
        if isinstance(named, Mapping) or required or schema.get("additionalProperties") is False:
            # Names the plan requires without describing them are arguments too (of
            # any type); with additionalProperties false and no names, there are none.
            listed = {**{name: True for name in required}, **(named or {})}
    lines = [f"def {name}(", "    *,"]
    body: list[str] = []
    taken = set(_CALL_PARAMETERS)
    if isinstance(listed, Mapping):
        ordered = sorted(listed, key=lambda key: (key not in required, key))
        body.append("    bag: dict[str, Any] = {}")
        for key in ordered:
            parameter = python_name(key)
            if parameter in taken or parameter == "bag":
                parameter += "_"
            parameter = _unique(parameter, taken)
            kind = annotation(listed[key])
            if key in required:
                lines.append(f"    {parameter}: {kind},")
                body.append(f"    bag[{_text(key)}] = {parameter}")
            else:
                lines.append(f"    {parameter}: {_union([kind, 'None'])} = None,")
                body.append(f"    if {parameter} is not None:")
                body.append(f"        bag[{_text(key)}] = {parameter}")
        properties = "bag"
    else:
        properties = "properties"  # the plan lists no names: any keyword goes
    lines += [
        "    user_id: str | int | None = None,",
        "    anonymous_id: str | int | None = None,",
        "    context: Mapping[str, Any] | None = None,",
        "    timestamp: datetime.datetime | None = None,",
    ]
    if properties == "properties":
        lines.append("    **properties: Any,")
    description = entry.get("description")
    doc = _docstring(f"{event}: {description}" if isinstance(description, str) else event)
    wrapped = textwrap.wrap(doc, 88, initial_indent='    """', subsequent_indent="    ")
    call = f"_extra({_text(event)}, {properties}, user_id, anonymous_id, context, timestamp)"
    if len(call) + 11 > _WIDTH:  # "    return " and the line's end, as formatters wrap it
        arguments = [_text(event), properties, *_CALL_PARAMETERS]
        ret = ["    return _extra(", *(f"        {a}," for a in arguments), "    )"]
    else:
        ret = [f"    return {call}"]
    lines += [
        ") -> dict[str, Any]:",
        *(wrapped or ['    """']),
        "",
        "    Returns the ``extra=`` mapping of a logging call; it sends nothing itself.",
        '    """',
        *body,
        *ret,
    ]
    return lines


def generate_module(plan: TrackingPlan, source: str) -> str:
    """The text of the typed module for *plan* (read from *source*, which it names)."""
    events: Mapping[str, Any] = plan.data.get("events") or {}
    taken: set[str] = set()
    # A function is a module global: it must not hide a builtin (open, print, id) from
    # code that star-imports the module. An argument may: it is local to its function.
    names = {event: _unique(_global_name(python_name(event)), taken) for event in sorted(events)}
    functions: list[str] = []
    for event in sorted(events):
        functions += ["", "", *_event_function(event, events[event], names[event])]
    text = "\n".join(functions)
    abcs = ["Mapping", *(["Sequence"] if "Sequence[" in text else [])]
    typing_names = ["Any", "Final", *(["Literal"] if "Literal[" in text else [])]
    exported_names = [f'"{n}"' for n in sorted(["PLAN_SHA256", *names.values()])]
    exported = f"__all__ = [{', '.join(exported_names)}]"
    if len(exported) > _WIDTH:
        exported = "\n".join(["__all__ = [", *(f"    {n}," for n in exported_names), "]"])
    example = next(iter(sorted(names.values())), "order_completed")
    header = [
        f'"""Typed tracking for the plan {_docstring(source)}, generated by cdp-logging.',
        "",
        "Each function returns the mapping to pass as ``extra=`` to a logging call, and",
        "sends nothing itself::",
        "",
        f'    log.info("track", extra={example}(user_id="u1", ...))',
        "",
        "Do not edit: change the plan and run ``cdp-logging plan codegen`` again;",
        "``cdp-logging plan check PLAN --module THIS_FILE`` tells when this file is stale.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import datetime",
        f"from collections.abc import {', '.join(abcs)}",
        f"from typing import {', '.join(typing_names)}",
        "",
        exported,
        "",
        "# The digest of the plan this module was generated from (cdp_logging's plan_digest).",
        f'PLAN_SHA256: Final = "{plan.digest}"',
        "",
        "",
        "def _extra(",
        "    event: str,",
        "    properties: dict[str, Any],",
        "    user_id: str | int | None,",
        "    anonymous_id: str | int | None,",
        "    context: Mapping[str, Any] | None,",
        "    timestamp: datetime.datetime | None,",
        ") -> dict[str, Any]:",
        '    cdp: dict[str, Any] = {"type": "track", "event": event, "properties": properties}',
        "    for key, value in (",
        '        ("user_id", user_id),',
        '        ("anonymous_id", anonymous_id),',
        '        ("context", context),',
        '        ("timestamp", timestamp),',
        "    ):",
        "        if value is not None:",
        "            cdp[key] = value",
        '    return {"cdp": cdp}',
    ]
    return "\n".join(header + functions) + "\n"


def module_digest(text: str) -> str | None:
    """The plan digest a generated module records, or None if it records none."""
    found = _DIGEST_LINE.search(text)
    return found.group(1) if found else None
