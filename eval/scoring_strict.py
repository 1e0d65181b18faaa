"""The `strict` scorer: what the answer actually says, checked against the candidates.

Fixes the paper scorer's blind spots: finds the call with a real JSON decoder from any
`{` (so nested braces, multi-line JSON, code fences and extra text are fine; key order
never matters), accepts `parameters` given as a JSON string (the prompt literally asks for
"input parameters in JSON string format"), requires the tool to be one of the candidates,
checks the parameters against that tool's schema (required present, no unknown names) and
compares values after JSON-type normalisation ("5" == 5 == 5.0, "true" == true).
When a response holds several calls, the first one is the answer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")


@dataclass(frozen=True)
class ParsedCall:
    tool_name: str
    parameters: dict
    n_calls: int  # how many calls the response held


def extract_call(response: str | None) -> ParsedCall | None:
    """The first JSON object with a string "tool_name" and object-like "parameters"."""
    if not response:
        return None
    decoder = json.JSONDecoder()
    calls = []
    position = response.find("{")
    while position >= 0:
        try:
            value, end = decoder.raw_decode(response, position)
        except json.JSONDecodeError:
            value, end = None, position + 1
        call = _as_call(value)
        if call is not None:
            calls.append(call)
            position = response.find("{", end)  # a call's own nested objects are not calls
        else:
            position = response.find("{", position + 1)
    if not calls:
        return None
    tool_name, parameters = calls[0]
    return ParsedCall(tool_name, parameters, len(calls))


def _as_call(value) -> tuple[str, dict] | None:
    if not isinstance(value, dict) or not isinstance(value.get("tool_name"), str):
        return None
    parameters = value.get("parameters")
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters)
        except json.JSONDecodeError:
            return None
    if not isinstance(parameters, dict):
        return None
    return value["tool_name"], parameters


def normalize(value):
    """A comparable form that ignores JSON type spelling but keeps bool, number, text apart."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        number = float(value)
        return ("num", number) if math.isfinite(number) else ("str", str(value))
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return ("num", float(text))
        if text.lower() in ("true", "false"):
            return ("bool", text.lower() == "true")
        return ("str", text)
    if value is None:
        return ("null", None)
    if isinstance(value, list):
        return ("list", tuple(normalize(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), normalize(v)) for k, v in value.items())))
    return ("str", str(value))


def schema_problems(parameters: dict, tool: dict) -> list[str]:
    """Required parameters missing and names the tool does not have."""
    required = [p["name"] for p in tool.get("required_parameters") or [] if isinstance(p, dict)]
    optional = [p["name"] for p in tool.get("optional_parameters") or [] if isinstance(p, dict)]
    known = set(required) | set(optional)
    problems = [f"missing required parameter {name!r}" for name in required if name not in parameters]
    problems += [f"unknown parameter {name!r}" for name in parameters if name not in known]
    return problems


@dataclass(frozen=True)
class StrictResult:
    tool_ok: bool
    param_ok: bool
    call: ParsedCall | None
    in_candidates: bool = False
    names_match: bool = False  # the same parameter names as the truth
    values_match: bool = False  # names and normalised values equal the truth
    problems: tuple[str, ...] = field(default_factory=tuple)


def score_strict(response: str | None, truth: dict, candidates: list[dict]) -> StrictResult:
    call = extract_call(response)
    if call is None:
        return StrictResult(False, False, None, problems=("no tool call found",))
    by_name = {c["tool_name"]: c for c in candidates}
    tool = by_name.get(call.tool_name)
    in_candidates = tool is not None
    problems = [] if in_candidates else [f"tool {call.tool_name!r} is not a candidate"]
    if tool is not None:
        problems += schema_problems(call.parameters, tool)
    names_match = set(call.parameters) == set(truth["parameters"])
    values_match = normalize(call.parameters) == normalize(truth["parameters"])
    tool_ok = call.tool_name == truth["tool_name"]
    # Param correctness is judged on its own (as in the paper), but only for a real
    # candidate whose schema the parameters satisfy.
    param_ok = in_candidates and not problems and values_match
    return StrictResult(tool_ok, param_ok, call, in_candidates, names_match, values_match, tuple(problems))
