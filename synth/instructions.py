"""Stage d: instructions. Per API, user instructions with their ground-truth parameters,
validated against the API's schema (a re-ask carries the schema problems back to the LLM).

Only APIs the users need are asked about: those of preferred tools (histories, queries)
and of the competing tools in the users' groups (rated-0 and early chronological calls).
An API that already has instructions.per_api examples (e.g. harvested ones) is skipped.
Offline the stage does nothing and says how many APIs stayed short.
"""

from __future__ import annotations

import json
from typing import Any

from synth.pool import Pool

SYSTEM = (
    "You write realistic user requests for web APIs, each with the exact API call that serves it. "
    "Answer with one JSON object and nothing else."
)


def needed_apis(pool: Pool, users: list[dict]) -> list[str]:
    tools: set[str] = set()
    groups = pool.groups()
    for user in users:
        tools.update(user["preferred_tools"])
        for func in user["groups"]:
            tools.update(pool.apis[k].tool_key for k in groups.get(func, []))
    return sorted(k for t in tools if t in pool.tools for k in pool.tools[t].apis if pool.apis[k].documented)


def instruction_prompt(pool: Pool, key: str, n: int) -> list[dict]:
    api = pool.apis[key]
    tool = pool.tools[api.tool_key]

    def params(ps: list[dict]) -> str:
        return json.dumps(ps, ensure_ascii=False) if ps else "[]"

    avoid = "\n".join(f"- {e['instruction']}" for e in api.examples) or "(none yet)"
    return [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": f"Tool: {tool.name} (category {tool.category}): {tool.description or '(no description)'}\n"
            f"API: {api.name}: {api.description or '(no description)'}\n"
            f"Required parameters: {params(api.required)}\n"
            f"Optional parameters: {params(api.optional)}\n"
            f"Existing requests (write different ones):\n{avoid}\n\n"
            f"Write {n} different, specific requests a user could make that this API serves, each with "
            "the parameters of the call: every required parameter, optional ones only when the request "
            "asks for them, values of the documented types. Reply with JSON:\n"
            '{"examples": [{"instruction": "...", "parameters": {"name": value}}]}',
        },
    ]


def make_validator(pool: Pool, key: str, n: int):
    api = pool.apis[key]
    existing = {e["instruction"] for e in api.examples}

    def validate(value: Any) -> list[dict]:
        items = value.get("examples") if isinstance(value, dict) else None
        if not isinstance(items, list) or len(items) < n:
            raise ValueError(f'expected {{"examples": [...]}} with {n} items')
        out = []
        seen = set(existing)
        for i, item in enumerate(items[:n]):
            if not isinstance(item, dict):
                raise ValueError(f"examples[{i}] must be an object")
            text = item.get("instruction")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"examples[{i}].instruction must be a non-empty string")
            if text.strip() in seen:
                raise ValueError(f"examples[{i}] repeats an existing request")
            problems = api.problems(item.get("parameters"))
            if problems:
                raise ValueError(f"examples[{i}].parameters: {'; '.join(problems[:5])}")
            seen.add(text.strip())
            out.append({"instruction": text.strip(), "parameters": item["parameters"]})
        return out

    return validate


def run_instructions(pool: Pool, users: list[dict], config: dict, client, offline: bool) -> tuple[dict, dict]:
    per_api = config["instructions"]["per_api"]
    needed = needed_apis(pool, users)
    short = [k for k in needed if len(pool.apis[k].examples) < per_api]
    if offline:
        return {"examples": {}, "failures": []}, {
            "mode": "offline: the pool's own examples", "APIs needed": len(needed),
            "APIs with fewer than per_api examples": len(short),
        }
    requests = [
        {"messages": instruction_prompt(pool, k, per_api - len(pool.apis[k].examples)),
         "model": config["llm"]["model"],
         "validate": make_validator(pool, k, per_api - len(pool.apis[k].examples)),
         "max_reasks": config["llm"]["max_reasks"],
         "params": {"temperature": config["llm"]["temperature"], "max_tokens": config["llm"]["max_tokens"]}}
        for k in short
    ]
    examples: dict[str, list] = {}
    failures = []
    for key, answer in zip(short, client.chat_json_many(requests, desc="d: instructions")):
        if answer.ok:
            examples[key] = answer.value
        else:
            failures.append({"stage": "instructions", "item": key, "error": answer.error})
    return {"examples": examples, "failures": failures}, {
        "mode": f"llm {config['llm']['model']}", "APIs needed": len(needed),
        "APIs asked": len(short), "examples written": sum(len(v) for v in examples.values()),
        "failures": len(failures),
    }


def apply_instructions(pool: Pool, result: dict) -> None:
    for key, items in result["examples"].items():
        for item in items:
            pool.add_example(key, item["instruction"], item["parameters"])
