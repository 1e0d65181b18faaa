"""The `paper` scorer: bit-compatible with the authors' run_experiment.py calculate_scores.

Their rules, kept on purpose (the `strict` scorer fixes them):
- the regex below, searched WITHOUT re.DOTALL, so a call spread over lines is not found;
- `json.loads` of the match, so nested braces inside parameters usually break it;
- exact (Python ==) equality of tool_name, and of the parameters dict on its own,
  independent of whether the tool was right;
- an empty response, no match or invalid JSON is wrong on both; every entry of the
  setting is in the denominator (that is done by the caller, eval.scoring).
Where their script would crash (a match whose JSON lacks a key) we count it wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

PAPER_PATTERN = re.compile(r'\{.*"tool_name":\s*".*?",\s*"parameters":\s*\{.*?\}\}')


@dataclass(frozen=True)
class PaperResult:
    tool_ok: bool
    param_ok: bool
    parsed: bool  # the regex matched and its text was valid JSON


def score_paper(response: str | None, truth: dict) -> PaperResult:
    if not response:
        return PaperResult(False, False, False)
    match = PAPER_PATTERN.search(response)
    if not match:
        return PaperResult(False, False, False)
    try:
        call = json.loads(match.group(0))
    except json.JSONDecodeError:
        return PaperResult(False, False, False)
    if not isinstance(call, dict):
        return PaperResult(False, False, False)
    tool_ok = "tool_name" in call and truth["tool_name"] == call["tool_name"]
    param_ok = "parameters" in call and truth["parameters"] == call["parameters"]
    return PaperResult(bool(tool_ok), bool(param_ok), True)
