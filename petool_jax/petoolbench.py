"""PEToolBench entries: loading, the parts of a setting's prompt, and chat messages.

An entry (the authors' released `user_entries_test.json` format) carries, per setting,
one finished system prompt (`instruction_preferred` / `_ratings` / `_chronological`):

    head     "\\nYour task is ... Interaction history is:\\n"
    history  a JSON list of past calls, json.dumps(..., ensure_ascii=False) on one line
    tail     "\\n\\nAvailable tools ...:\\n[candidates]\\n\\nGenerate your tool call ... Begin!\\n\\n"

`split_instruction` / `render_instruction` take that prompt apart and put it back byte
for byte, so an over-long prompt can lose its OLDEST history entries while the
candidates (in the tail) and the user query (a separate message) stay intact.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any, Callable

from petool_jax.errors import UserError
from petool_jax.files import read_json
from petool_jax.petoolbench_text import no_history_instruction, with_capped_descriptions

SETTINGS = ("p", "r", "c")
INSTRUCTION_KEYS = {
    "p": "instruction_preferred",
    "r": "instruction_ratings",
    "c": "instruction_chronological",
}
# The authors' no-history mode (`wo_history`): opt-in only, never one of the data's settings.
NO_HISTORY = "none"
NO_HISTORY_KEY = "instruction_wo_history"  # used as is when an entry carries it
EVAL_SETTINGS = SETTINGS + (NO_HISTORY,)
# llama_factory: alpaca_user as LLaMA-Factory's converter builds it (empty parts left out),
# rendered by petool_jax.train.llama_factory instead of the chat template (training only).
PROMPT_FORMATS = ("system_user", "alpaca_user", "llama_factory")

# Keys every entry must carry whatever the file; instruction keys are checked per setting.
REQUIRED_KEYS = ("entry_id", "query", "apis_candidate", "api_call_ground_truth")
HISTORY_MARKER = "Interaction history is:\n"
# The per-setting release files hold one setting each: user_entries_test_{p,r,c}.json.
_PER_SETTING_FILE = re.compile(r"_([prc])\.json(\.gz)?$")


def _setting_of_file(path: pathlib.Path) -> str | None:
    match = _PER_SETTING_FILE.search(path.name)
    return match.group(1) if match else None


def load_entries(path, settings=None) -> list[dict]:
    """Entries of a released test file (combined, or one `user_entries_test_{p,r,c}.json`).

    Checks the keys the harness reads and that `apis_candidate` parses, so a wrong file
    fails here with the file, entry index and key rather than deep inside a run.
    `settings` (default: all three for a combined file, the file's own for a per-setting
    file) are the settings whose instruction key every entry must have.
    """
    path = pathlib.Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise UserError(
            f"{path}: expected a JSON list of PEToolBench entries, got a JSON "
            + {"dict": "object", "str": "string"}.get(type(data).__name__, type(data).__name__)
        )
    if settings is None:
        own = _setting_of_file(path)
        settings = (own,) if own else SETTINGS
    for s in settings:
        if s not in EVAL_SETTINGS:
            raise UserError(f"unknown setting {s!r}; settings are {','.join(EVAL_SETTINGS)}")
    settings = [s for s in settings if s in INSTRUCTION_KEYS]  # `none` needs only the candidates
    needed = REQUIRED_KEYS + tuple(INSTRUCTION_KEYS[s] for s in settings)
    seen: dict[Any, int] = {}
    for index, entry in enumerate(data):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(entry).__name__}")
        if "entry_id" in entry:
            where += f" (entry_id {entry['entry_id']!r})"
        for key in needed:
            if key not in entry:
                raise UserError(f"{where}: missing key {key!r}")
        if not isinstance(entry["entry_id"], (int, str)) or isinstance(entry["entry_id"], bool):
            raise UserError(f"{where}: key 'entry_id' must be an integer or a string")
        if entry["entry_id"] in seen:
            raise UserError(
                f"{where}: duplicate entry_id {entry['entry_id']!r} (also entry {seen[entry['entry_id']]})"
            )
        seen[entry["entry_id"]] = index
        for key in ("query",) + tuple(INSTRUCTION_KEYS[s] for s in settings):
            if not isinstance(entry[key], str):
                raise UserError(f"{where}: key {key!r} must be a string")
        truth = entry["api_call_ground_truth"]
        if (
            not isinstance(truth, dict)
            or not isinstance(truth.get("tool_name"), str)
            or not isinstance(truth.get("parameters"), dict)
        ):
            raise UserError(
                f"{where}: key 'api_call_ground_truth' must be an object with a string "
                "'tool_name' and an object 'parameters'"
            )
        try:
            candidates(entry)
        except ValueError as err:
            raise UserError(f"{where}: key 'apis_candidate': {err}") from None
    return data


def available_settings(entries: list[dict]) -> tuple[str, ...]:
    """The settings whose instruction every entry carries."""
    return tuple(s for s in SETTINGS if all(INSTRUCTION_KEYS[s] in e for e in entries))


def candidates(entry: dict) -> list[dict]:
    """The candidate tools: `apis_candidate` is a JSON string in the release."""
    raw = entry["apis_candidate"]
    if isinstance(raw, str):
        try:
            tools = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON: {err.msg} at character {err.pos}") from None
    else:
        tools = raw
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("tool_name"), str) for t in tools
    ):
        raise ValueError("expected a list of tools, each an object with a string 'tool_name'")
    return tools


def same_func_tool_names(entry: dict) -> set[str]:
    """Full `<Category>.<Tool>.<API>` names of the APIs functionally equivalent to the truth.

    `apis_same_func` holds API docs (category_name, tool_name, api_name); the truth is
    always one of them. Empty when the entry has no such key.
    """
    names = set()
    for doc in entry.get("apis_same_func") or []:
        if isinstance(doc, dict) and all(k in doc for k in ("category_name", "tool_name", "api_name")):
            names.add(f"<{doc['category_name']}>.<{doc['tool_name']}>.<{doc['api_name']}>")
    return names


def split_tool_name(full_name: str) -> tuple[str, str, str]:
    """`<Category>.<Tool>.<API>` -> (category, tool, api); tool names may hold dots."""
    if full_name.startswith("<") and full_name.endswith(">"):
        parts = full_name[1:-1].split(">.<")
        if len(parts) >= 3:
            return parts[0], ">.<".join(parts[1:-1]), parts[-1]
    return "", "", full_name


# --- the setting's prompt, taken apart and put back ----------------------------------


def split_instruction(text: str) -> tuple[str, list[dict], str]:
    """(head, history, tail) of a setting's system prompt; raises ValueError without history."""
    start = text.find(HISTORY_MARKER)
    if start < 0:
        raise ValueError(f"no {HISTORY_MARKER.strip()!r} marker in the instruction")
    start += len(HISTORY_MARKER)
    try:
        history, end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as err:
        raise ValueError(f"the interaction history is not a JSON list: {err.msg}") from None
    if not isinstance(history, list):
        raise ValueError("the interaction history is not a JSON list")
    return text[:start], history, text[end:]


def render_instruction(head: str, history: list[dict], tail: str) -> str:
    """Inverse of split_instruction for the release's serialisation (one line, non-ASCII kept)."""
    return head + json.dumps(history, ensure_ascii=False) + tail


def history_of(entry: dict, setting: str) -> list[dict]:
    """The interaction history shown in the setting's prompt ([] when there is none)."""
    if setting == NO_HISTORY:
        return []
    try:
        return split_instruction(entry[INSTRUCTION_KEYS[setting]])[1]
    except ValueError:
        return []


# --- chat messages ---------------------------------------------------------------------


def instruction_text(entry: dict, setting: str) -> str:
    """The setting's system prompt as released; for `none`, the authors' wo_history prompt
    (the entry's own `instruction_wo_history` when it has one)."""
    if setting == NO_HISTORY:
        if isinstance(entry.get(NO_HISTORY_KEY), str):
            return entry[NO_HISTORY_KEY]
        return no_history_instruction(entry["apis_candidate"])
    return entry[INSTRUCTION_KEYS[setting]]


def _instruction(entry: dict, setting: str, drop_oldest: int, description_cap: int | None) -> str:
    text = instruction_text(entry, setting)
    if drop_oldest > 0:
        head, history, tail = split_instruction(text)
        text = render_instruction(head, history[drop_oldest:], tail)
    # Without drops or caps: the original bytes, even when the file serialised its history differently.
    return with_capped_descriptions(text, description_cap)[0]


def build_messages(
    entry: dict, setting: str, drop_oldest: int = 0, prompt_format: str = "system_user",
    description_cap: int | None = None,
) -> list[dict]:
    """Chat messages for one (entry, setting).

    system_user: system = the setting's instruction, user = the query (the authors'
    evaluation). alpaca_user: one user turn `instruction + "\\n" + query` (how the authors
    trained with LLaMA-Factory's alpaca format). `drop_oldest` history entries are left
    out; `description_cap` cuts candidate descriptions longer than that many characters.
    """
    if setting not in EVAL_SETTINGS:
        raise ValueError(f"unknown setting {setting!r}")
    instruction = _instruction(entry, setting, drop_oldest, description_cap)
    return instruction_messages(instruction, entry["query"], prompt_format)


def instruction_messages(instruction: str, query: str, prompt_format: str = "system_user") -> list[dict]:
    """The chat messages of a system prompt and a query in one of PROMPT_FORMATS."""
    if prompt_format == "system_user":
        return [
            {"role": "system", "content": instruction},
            {"role": "user", "content": query},
        ]
    if prompt_format == "alpaca_user":
        return [{"role": "user", "content": instruction + "\n" + query}]
    if prompt_format == "llama_factory":
        return [{"role": "user", "content": "\n".join(part for part in (instruction, query) if part)}]
    raise ValueError(f"unknown prompt_format {prompt_format!r}; one of {', '.join(PROMPT_FORMATS)}")


def fit_messages(
    entry: dict,
    setting: str,
    count_tokens: Callable[[list[dict]], int],
    max_tokens: int,
    prompt_format: str = "system_user",
) -> tuple[list[dict], int]:
    """fit_instruction for one (entry, setting)."""
    return fit_instruction(instruction_text(entry, setting), entry["query"], count_tokens, max_tokens, prompt_format)


def fit_instruction(
    instruction: str,
    query: str,
    count_tokens: Callable[[list[dict]], int],
    max_tokens: int,
    prompt_format: str = "system_user",
) -> tuple[list[dict], int]:
    """Messages within `max_tokens`, dropping the fewest OLDEST history entries.

    Returns (messages, n_dropped). When even an empty history does not fit, returns the
    empty-history messages and n_dropped = len(history): the caller reports it. The count
    only falls as entries go, so a binary search needs ~log2(20) calls of count_tokens.
    Training examples (an instruction and a query, from any file format) and evaluation
    entries both come through here.
    """
    messages = instruction_messages(instruction, query, prompt_format)
    if count_tokens(messages) <= max_tokens:
        return messages, 0
    try:
        head, history, tail = split_instruction(instruction)
    except ValueError:
        return messages, 0  # nothing we may drop
    if not history:
        return messages, 0

    def without_oldest(n: int) -> list[dict]:
        return instruction_messages(render_instruction(head, history[n:], tail), query, prompt_format)

    low, high = 0, len(history)  # count(low) > max_tokens; answer in (low, high]
    best = without_oldest(high)
    if count_tokens(best) > max_tokens:
        return best, len(history)
    while high - low > 1:
        mid = (low + high) // 2
        trial = without_oldest(mid)
        if count_tokens(trial) <= max_tokens:
            high, best = mid, trial
        else:
            low = mid
    return best, high
