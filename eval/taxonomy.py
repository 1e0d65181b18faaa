"""Why a prediction is wrong: one category per wrong answer, read from the strict scorer.

Checked in this order, so each wrong answer gets the first that applies:
  no_response              no prediction, or the API request failed for good
  invalid_format           no JSON tool call could be read from the response
  tool_hallucination       the tool is not among the candidates
  preference_mismatch      a functionally equivalent tool the user does not prefer
                           (in `apis_same_func`, not the truth): the personalisation error
  functionality_mismatch   a candidate that does something else
  parameter_name_mismatch  right tool; parameter names differ from the truth or break the schema
  parameter_value_mismatch right tool and names; some value differs
"""

from __future__ import annotations

from eval.scoring_strict import StrictResult

ERROR_TYPES = (
    "no_response",
    "invalid_format",
    "tool_hallucination",
    "preference_mismatch",
    "functionality_mismatch",
    "parameter_name_mismatch",
    "parameter_value_mismatch",
)


def classify(result: StrictResult | None, truth_tool: str, same_func: set[str]) -> str | None:
    """The error type of a strict result, or None when it is right.

    `result` None means there was no usable response (missing or failed request).
    """
    if result is None:
        return "no_response"
    if result.tool_ok and result.param_ok:
        return None
    if result.call is None:
        return "invalid_format"
    if not result.in_candidates:
        return "tool_hallucination"
    if not result.tool_ok:
        if result.call.tool_name in same_func:
            return "preference_mismatch"
        return "functionality_mismatch"
    if not result.names_match or result.problems:
        return "parameter_name_mismatch"
    return "parameter_value_mismatch"
