"""Stage a: tool understanding. Per tool, what it does (and what each API does) and its
non-functional attributes (ease of use, documentation quality, authentication, pricing,
reliability, ...), as schema-validated JSON from the LLM.

Tools that already carry attributes are not asked about again. Offline (llm.model=none)
the description fields are the functionality and the attributes are read off the document
itself (required-parameter count, how much is documented, key/token parameters, RapidAPI
pricing and service score when present): coarse, but deterministic and honest about being
derived from the document rather than judged.
"""

from __future__ import annotations

import re
from typing import Any

from synth.pool import Pool

SYSTEM = (
    "You analyse API tools listed on RapidAPI for a tool-learning dataset. "
    "Answer with one JSON object and nothing else."
)

ATTRIBUTE_HINTS = {
    "ease_of_use": "how easy the tool is to call (number and clarity of required parameters)",
    "documentation_quality": "how complete and clear its documentation is",
    "authentication": "what credentials or keys it needs",
    "pricing": "free, freemium or paid access, as far as the document tells",
    "reliability": "how dependable the service looks (versioning, status, measured service level)",
}


def _param_line(params: list[dict]) -> str:
    return ", ".join(f"{p['name']} ({p['type']})" for p in params) or "none"


def understanding_prompt(pool: Pool, tool_key: str, attributes: list[str], max_apis: int) -> tuple[list[dict], list[str]]:
    tool = pool.tools[tool_key]
    api_keys = tool.apis[:max_apis]
    lines = [
        f"Tool: {tool.name}",
        f"Category: {tool.category}",
        f"Description: {tool.description or '(none)'}",
        f"Pricing: {tool.pricing or 'not stated'}",
    ]
    if tool.score:
        lines.append(f"Measured service: {', '.join(f'{k}={v}' for k, v in sorted(tool.score.items()) if not k.startswith('__'))}")
    lines.append("APIs:")
    names = []
    for i, key in enumerate(api_keys, 1):
        api = pool.apis[key]
        names.append(api.name)
        lines.append(
            f"{i}. {api.name}: {api.description or '(no description)'} | required: {_param_line(api.required)}"
            f" | optional: {_param_line(api.optional)}"
        )
    attr_lines = "\n".join(f'    "{a}": "{ATTRIBUTE_HINTS.get(a, a.replace("_", " "))}"' for a in attributes)
    api_lines = ",\n".join(f'    "{n}": "one sentence: what this API does"' for n in names)
    lines.append(
        "\nDescribe the tool's functionality (what it does) separately from its non-functional "
        "attributes (how it is to use). Reply with JSON of exactly this shape:\n"
        "{\n"
        '  "functionality": "one or two sentences",\n'
        '  "apis": {\n' + api_lines + "\n  },\n"
        '  "attributes": {\n' + attr_lines + "\n  }\n"
        "}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}], names


def make_validator(api_names: list[str], attributes: list[str]):
    def validate(value: Any) -> dict:
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        functionality = value.get("functionality")
        if not isinstance(functionality, str) or not functionality.strip():
            raise ValueError("'functionality' must be a non-empty string")
        apis = value.get("apis")
        if not isinstance(apis, dict):
            raise ValueError("'apis' must be an object mapping each API name to a sentence")
        missing = [n for n in api_names if not isinstance(apis.get(n), str) or not apis[n].strip()]
        if missing:
            raise ValueError(f"'apis' lacks a description for: {', '.join(missing[:10])}")
        attrs = value.get("attributes")
        if not isinstance(attrs, dict):
            raise ValueError("'attributes' must be an object")
        bad = [a for a in attributes if not isinstance(attrs.get(a), (str, int, float)) or not str(attrs[a]).strip()]
        if bad:
            raise ValueError(f"'attributes' lacks: {', '.join(bad)}")
        return {
            "functionality": functionality.strip(),
            "apis": {n: apis[n].strip() for n in api_names},
            "attributes": {a: str(attrs[a]).strip() for a in attributes},
        }

    return validate


_CREDENTIAL = re.compile(r"(api[_-]?key|token|secret|auth|password|apikey)", re.I)


def heuristic_understanding(pool: Pool, tool_key: str, attributes: list[str]) -> dict:
    """Attributes read off the document (offline mode); see the module docstring."""
    tool = pool.tools[tool_key]
    apis = [pool.apis[k] for k in tool.apis]
    documented = [a for a in apis if a.documented]
    params = [p for a in documented for p in a.required + a.optional]
    n_required = sum(len(a.required) for a in documented) / max(1, len(documented))
    described = sum(bool(p["description"].strip()) for p in params) / max(1, len(params))
    desc_words = len(tool.description.split()) + sum(len(a.description.split()) for a in documented)
    facts = {
        "ease_of_use": "no required parameters" if n_required == 0 else
        "one or two required parameters" if n_required <= 2 else "many required parameters",
        "documentation_quality": "undocumented" if not documented else
        "detailed" if described >= 0.6 and desc_words >= 30 else "brief" if desc_words >= 10 else "sparse",
        "authentication": "credential parameters" if any(_CREDENTIAL.search(p["name"]) for p in params)
        else "no credential parameters",
        "pricing": (tool.pricing or "unknown").lower(),
        "reliability": _reliability(tool),
    }
    return {
        "functionality": tool.description or f"{tool.name} ({tool.category})",
        "apis": {a.name: a.description or f"{a.name} of {tool.name}" for a in apis},
        "attributes": {a: facts.get(a, "unknown") for a in attributes},
    }


def _reliability(tool) -> str:
    score = tool.score or {}
    level = score.get("avgServiceLevel", score.get("avgSuccessRate"))
    if isinstance(level, (int, float)):
        return "high service level" if level >= 95 else "medium service level" if level >= 70 else "low service level"
    if re.search(r"_v\d+$|\bv\d+\b", tool.name):
        return "versioned"
    return "unknown"


def run_understanding(pool: Pool, config: dict, client, offline: bool) -> tuple[dict, dict]:
    """Result: {tool_key: {functionality, apis: {api name: sentence}, attributes}}; report; failures inside."""
    attributes = list(config["understanding"]["attributes"])
    todo = sorted(k for k, t in pool.tools.items() if t.attributes is None)
    result: dict[str, dict] = {}
    failures = []
    if offline:
        for key in todo:
            result[key] = heuristic_understanding(pool, key, attributes)
        return {"tools": result, "failures": failures}, {
            "mode": "offline: derived from the documents", "tools": len(todo),
            "already understood": len(pool.tools) - len(todo), "failures": 0,
        }
    requests = []
    for key in todo:
        messages, names = understanding_prompt(pool, key, attributes, config["understanding"]["max_apis_per_prompt"])
        requests.append({
            "messages": messages, "model": config["llm"]["model"], "validate": make_validator(names, attributes),
            "max_reasks": config["llm"]["max_reasks"],
            "params": {"temperature": config["llm"]["temperature"], "max_tokens": config["llm"]["max_tokens"]},
        })
    answers = client.chat_json_many(requests, progress=True, desc="a: tool understanding")
    for key, answer in zip(todo, answers):
        if answer.ok:
            value = answer.value
            # APIs beyond the prompt cap keep their own description as functionality.
            apis = {pool.apis[k].name: pool.apis[k].description or pool.apis[k].name for k in pool.tools[key].apis}
            apis.update(value["apis"])
            result[key] = {**value, "apis": apis}
        else:
            failures.append({"stage": "understanding", "item": key, "error": answer.error})
    return {"tools": result, "failures": failures}, {
        "mode": f"llm {config['llm']['model']}", "tools": len(todo),
        "already understood": len(pool.tools) - len(todo), "failures": len(failures),
    }


def apply_understanding(pool: Pool, result: dict) -> int:
    """Write stage a into the pool; tools whose understanding failed leave the pool. Returns how many left."""
    for key, value in result["tools"].items():
        tool = pool.tools[key]
        tool.functionality = value["functionality"]
        tool.attributes = value["attributes"]
        for api_key in tool.apis:
            api = pool.apis[api_key]
            api.functionality = value["apis"].get(api.name, api.description or api.name)
    failed = [f["item"] for f in result["failures"]]
    for key in failed:
        for api_key in pool.tools[key].apis:
            del pool.apis[api_key]
        del pool.tools[key]
    return len(failed)
