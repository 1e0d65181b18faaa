"""Is a parameter dict valid for an API's RapidAPI-style schema?

RapidAPI documents parameters as {name, type, description, default} with loose types
(STRING, NUMBER, BOOLEAN, ENUM, DATE (YYYY-MM-DD), ...; sometimes lower case). The released
benchmark passes numbers as numeric strings and ids as numbers in STRING slots, so scalars
are accepted across string-like types; what is refused is what a caller could not send:
a missing required parameter, a name the API does not have, a non-numeric NUMBER, a
non-boolean BOOLEAN, a list or object where the schema wants a scalar.
"""

from __future__ import annotations

from typing import Any

_NUMBER = {"number", "integer", "int", "float", "double"}
_BOOLEAN = {"boolean", "bool"}
_ARRAY = {"array", "list"}
_OBJECT = {"object", "dict", "json"}


def _type_problem(name: str, type_: str, value: Any) -> str | None:
    kind = str(type_ or "").strip().lower()
    if kind in _ARRAY:
        return None if isinstance(value, (list, str)) else f"{name!r} should be an array"
    if kind in _OBJECT:
        return None if isinstance(value, (dict, str)) else f"{name!r} should be an object"
    if isinstance(value, (list, dict)):
        return f"{name!r} is a {type(value).__name__} but the schema type is {type_}"
    if value is None:
        return f"{name!r} is null"
    if kind in _NUMBER:
        if isinstance(value, bool):
            return f"{name!r} should be a number, got a boolean"
        if isinstance(value, (int, float)):
            return None
        try:
            float(str(value))
            return None
        except ValueError:
            return f"{name!r} should be a number, got {value!r}"
    if kind in _BOOLEAN:
        if isinstance(value, bool) or value in (0, 1):
            return None
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "0", "1"):
            return None
        return f"{name!r} should be a boolean, got {value!r}"
    return None  # STRING, ENUM, DATE, GEOPOINT, ...: any scalar


def parameter_problems(params: Any, required: list[dict], optional: list[dict]) -> list[str]:
    """Reasons `params` is not a valid call; [] when it is."""
    if not isinstance(params, dict):
        return [f"parameters must be an object, got {type(params).__name__}"]
    spec = {p["name"]: p for p in list(required) + list(optional)}
    required_names = {p["name"] for p in required}
    problems = [f"missing required parameter {p['name']!r}" for p in required if p["name"] not in params]
    for name, value in params.items():
        if name not in spec:
            problems.append(f"unknown parameter {name!r}")
            continue
        if value == "" and name not in required_names:
            continue
        problem = _type_problem(name, spec[name].get("type", ""), value)
        if problem:
            problems.append(problem)
    return problems
