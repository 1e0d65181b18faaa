"""Read tool sources into a Pool: ToolBench/RapidAPI tool documents and PEToolBench files.

ToolBench (`data/toolenv/tools/<Category>/<tool>.json`): one tool per file with
`tool_name`/`title`, `tool_description`, `pricing`, `score` and `api_list` entries
{name, description, required_parameters, optional_parameters}; the category is the file's
`category_name`/`category` or else its folder. A JSON list of such tools works as well.
Two optional per-API keys that ToolBench itself lacks make such a file usable offline (the
built-in demo catalog, petool_jax/app/demo/catalog.json, uses them): `func`, the API's
functionality group id, and `examples`, a list of {instruction, parameters} example calls
(checked against the API's schema like every example).

PEToolBench entry files (the released test file, our own train/test outputs) are harvested:
`apis_candidate` gives API documents, `api_ground_truth` and `apis_same_func` give documents
with their functionality group (`func`), tool description and an `Example`; the histories of
all three settings, and the query with its ground truth, give example instructions with
parameters. APIs seen only in histories have no document: they can fill histories but never
be a candidate or a ground truth.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from petool_jax.errors import UserError
from petool_jax.files import read_json
from petool_jax.petoolbench import HISTORY_MARKER, INSTRUCTION_KEYS
from synth.pool import Pool
from synth.structure import add_measurement, empty_measurement
from synth.structure_stats import entry_facts



def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and (p.name.endswith(".json") or p.name.endswith(".json.gz")))
    if path.is_file():
        return [path]
    raise UserError(f"tool_pool: {path}: no such file or folder")


def source_fingerprint(paths: list[str]) -> str:
    """Content hash of every source file, so a changed pool invalidates the stage caches."""
    digest = hashlib.sha256()
    for raw in paths:
        for file in _files(Path(raw)):
            digest.update(str(file).encode("utf-8"))
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _kind(data: Any) -> str | None:
    items = data if isinstance(data, list) else [data]
    first = next((x for x in items if isinstance(x, dict)), None)
    if first is None:
        return None
    if "apis_candidate" in first or "api_call_ground_truth" in first:
        return "petoolbench"
    if "api_list" in first:
        return "toolbench"
    return None


def load_pool(paths: list[str]) -> Pool:
    pool = Pool()
    for raw in paths:
        root = Path(raw)
        files = _files(root)
        recognized = 0
        for file in files:
            data = read_json(file)
            kind = _kind(data)
            label = file.name if root.is_file() else str(file.relative_to(root.parent))
            if kind == "petoolbench":
                _harvest_petoolbench(pool, data, file, label)
            elif kind == "toolbench":
                _load_toolbench(pool, data, file, label)
            elif root.is_file():
                raise UserError(
                    f"{file}: neither ToolBench tool documents (objects with 'api_list') nor "
                    "PEToolBench entries (objects with 'apis_candidate')"
                )
            else:
                pool.count("files skipped: not tool documents")
                continue
            recognized += 1
        if not recognized:
            raise UserError(f"tool_pool: {root}: holds no ToolBench tool documents or PEToolBench entries")
    pool.revalidate_examples()
    if not pool.apis:
        raise UserError("tool_pool: the sources hold no APIs")
    return pool


# -- ToolBench / RapidAPI ---------------------------------------------------------------


def _load_toolbench(pool: Pool, data: Any, file: Path, label: str) -> None:
    tools = data if isinstance(data, list) else [data]
    for index, doc in enumerate(tools):
        where = f"{file}: tool {index}" if isinstance(data, list) else str(file)
        if not isinstance(doc, dict) or not isinstance(doc.get("api_list"), list):
            raise UserError(f"{where}: expected an object with an 'api_list' list")
        name = doc.get("tool_name") or doc.get("title") or doc.get("standardized_name") or file.name.split(".")[0]
        category = doc.get("category_name") or doc.get("category") or file.parent.name
        if not isinstance(name, str) or not isinstance(category, str):
            raise UserError(f"{where}: 'tool_name' and 'category_name' must be strings")
        source = f"toolbench:{label}"
        pool.add_tool(
            category, name, source, doc.get("tool_description") or "",
            pricing=doc.get("pricing") if isinstance(doc.get("pricing"), str) else None,
            score=doc.get("score") if isinstance(doc.get("score"), dict) else None,
        )
        for a_index, api in enumerate(doc["api_list"]):
            if not isinstance(api, dict) or not isinstance(api.get("name"), str) or not api["name"]:
                raise UserError(f"{where}: api_list[{a_index}]: expected an object with a string 'name'")
            func = api.get("func")
            if func is not None and (isinstance(func, bool) or not isinstance(func, (str, int))):
                raise UserError(f"{where}: api_list[{a_index}]: 'func' must be a string or an integer group id")
            examples = api.get("examples", [])
            if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
                raise UserError(f"{where}: api_list[{a_index}]: 'examples' must be a list of "
                                "{instruction, parameters} objects")
            added = pool.add_api(
                category, name, api["name"], source,
                description=api.get("description") or "",
                required=api.get("required_parameters"), optional=api.get("optional_parameters"),
                documented=True, api_id=api.get("api_id"), func=None if func is None else str(func),
            )
            for example in examples:
                pool.add_example(added.key, example.get("instruction"), example.get("parameters"))


# -- PEToolBench entries ----------------------------------------------------------------


def _split_name(full: str) -> tuple[str, str, str] | None:
    if full.startswith("<") and full.endswith(">"):
        parts = full[1:-1].split(">.<")
        if len(parts) >= 3:
            return parts[0], ">.<".join(parts[1:-1]), parts[-1]
    return None


def _history(text: str) -> list:
    start = text.find(HISTORY_MARKER)
    if start < 0:
        return []
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start + len(HISTORY_MARKER))
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def _harvest_petoolbench(pool: Pool, entries: Any, file: Path, label: str) -> None:
    if not isinstance(entries, list):
        raise UserError(f"{file}: expected a JSON list of PEToolBench entries")
    if pool.structure is None:
        pool.structure = empty_measurement()
    pool.structure["files"].append(label)
    for index, entry in enumerate(entries):
        where = f"{file}: entry {index}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object")
        func = entry.get("func")
        func = str(func) if func is not None else None
        docs = list(entry.get("apis_same_func") or [])
        if isinstance(entry.get("api_ground_truth"), dict):
            docs.append(entry["api_ground_truth"])
        for doc in docs:
            if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("category_name", "tool_name", "api_name")):
                raise UserError(f"{where}: apis_same_func/api_ground_truth: documents need string category_name, tool_name, api_name")
            api = pool.add_api(
                doc["category_name"], doc["tool_name"], doc["api_name"], f"petoolbench:{label}:same_func",
                description=doc.get("api_desc") or "", required=doc.get("required_parameters"),
                optional=doc.get("optional_parameters"), documented=True, api_id=doc.get("api_id"),
                func=func, tool_description=doc.get("tool_desc") or "",
            )
            example = doc.get("Example")
            if isinstance(example, dict):
                pool.add_example(api.key, example.get("Scenario"), example.get("Parameters"))
        raw = entry.get("apis_candidate")
        try:
            candidates = json.loads(raw) if isinstance(raw, str) else (raw or [])
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: key 'apis_candidate': not valid JSON: {err.msg}") from None
        for cand in candidates:
            parts = _split_name(cand.get("tool_name", "")) if isinstance(cand, dict) else None
            if parts is None:
                pool.count("candidates skipped: tool_name not <Category>.<Tool>.<API>")
                continue
            pool.add_api(
                *parts, f"petoolbench:{label}:candidate", description=cand.get("tool_description") or "",
                required=cand.get("required_parameters"), optional=cand.get("optional_parameters"), documented=True,
            )
        calls = []
        truth = entry.get("api_call_ground_truth")
        if isinstance(truth, dict) and isinstance(entry.get("query"), str):
            calls.append((entry["query"], truth, "query"))
        for key in INSTRUCTION_KEYS.values():
            if isinstance(entry.get(key), str):
                for item in _history(entry[key]):
                    if isinstance(item, dict) and isinstance(item.get("tool_call"), dict):
                        calls.append((item.get("instruction"), item["tool_call"], "history"))
        for instruction, call, field in calls:
            parts = _split_name(call.get("tool_name", "")) if isinstance(call.get("tool_name"), str) else None
            if parts is None:
                pool.count("calls skipped: tool_name not <Category>.<Tool>.<API>")
                continue
            api = pool.add_api(*parts, f"petoolbench:{label}:{field}")
            pool.add_example(api.key, instruction, call.get("parameters"))
        _measure(pool, entry)


def _measure(pool: Pool, entry: dict) -> None:
    """The entry's structure (history lengths, groups, distractors) as a synthesis target."""
    try:
        facts = entry_facts(entry)
    except (KeyError, TypeError, ValueError, AttributeError):
        pool.count("entries whose structure could not be measured")
        return
    add_measurement(pool.structure, facts, None if entry.get("func") is None else str(entry["func"]))
