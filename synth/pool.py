"""The tool pool: tools, their APIs, what each stage learned about them, and where it came from.

An API is keyed by its full PEToolBench name `<Category>.<Tool>.<API>`, a tool by
`<Category>.<Tool>`. Adding the same API twice (two source files, or one file that lists it
as a candidate in many entries) merges: the first document wins, empty fields are filled
from later ones, examples are unioned by instruction text, and provenance counts every
source. Everything here is plain data so stage results serialize to JSON deterministically.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from synth.schema import parameter_problems


def api_key(category: str, tool: str, api: str) -> str:
    return f"<{category}>.<{tool}>.<{api}>"


def tool_key(category: str, tool: str) -> str:
    return f"<{category}>.<{tool}>"


def normalize_params(params: Any) -> list[dict]:
    """RapidAPI parameter list -> [{name, type, description, default}] (missing fields filled)."""
    out = []
    for p in params or []:
        if isinstance(p, dict) and isinstance(p.get("name"), str):
            out.append(
                {
                    "name": p["name"],
                    "type": p.get("type", "STRING") if isinstance(p.get("type"), str) else "STRING",
                    "description": p.get("description") or "",
                    "default": p.get("default", ""),
                }
            )
    return out


@dataclasses.dataclass
class Api:
    category: str
    tool: str
    name: str
    description: str = ""
    required: list = dataclasses.field(default_factory=list)
    optional: list = dataclasses.field(default_factory=list)
    documented: bool = False  # has a document: may be a candidate or a ground truth
    api_id: Any = None
    func: str | None = None  # functionality group id
    functionality: str | None = None  # stage a
    examples: list = dataclasses.field(default_factory=list)  # [{instruction, parameters}]
    provenance: dict = dataclasses.field(default_factory=dict)  # source label -> count

    @property
    def key(self) -> str:
        return api_key(self.category, self.tool, self.name)

    @property
    def tool_key(self) -> str:
        return tool_key(self.category, self.tool)

    def problems(self, params: Any) -> list[str]:
        return parameter_problems(params, self.required, self.optional)


@dataclasses.dataclass
class Tool:
    category: str
    name: str
    description: str = ""
    pricing: str | None = None
    score: dict | None = None
    functionality: str | None = None  # stage a
    attributes: dict | None = None  # stage a: non-functional attributes
    apis: list = dataclasses.field(default_factory=list)  # API keys, in first-seen order
    provenance: dict = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return tool_key(self.category, self.name)


class Pool:
    def __init__(self) -> None:
        self.tools: dict[str, Tool] = {}
        self.apis: dict[str, Api] = {}
        self.report: dict[str, int] = {}
        # Structure figures of harvested PEToolBench entries (synth/structure.py), None if none.
        self.structure: dict | None = None

    def count(self, what: str, n: int = 1) -> None:
        self.report[what] = self.report.get(what, 0) + n

    # -- building
    def add_tool(self, category: str, name: str, source: str, description: str = "",
                 pricing: str | None = None, score: dict | None = None) -> Tool:
        key = tool_key(category, name)
        tool = self.tools.get(key)
        if tool is None:
            tool = self.tools[key] = Tool(category, name)
        tool.description = tool.description or (description or "")
        tool.pricing = tool.pricing or pricing
        tool.score = tool.score or score
        tool.provenance[source] = tool.provenance.get(source, 0) + 1
        return tool

    def add_api(self, category: str, tool: str, name: str, source: str, *, description: str | None = None,
                required: Any = None, optional: Any = None, documented: bool = False, api_id: Any = None,
                func: str | None = None, tool_description: str = "") -> Api:
        owner = self.add_tool(category, tool, source, tool_description)
        key = api_key(category, tool, name)
        api = self.apis.get(key)
        if api is None:
            api = self.apis[key] = Api(category, tool, name)
            owner.apis.append(key)
        else:
            self.count("duplicate API mentions merged")
        if documented and not api.documented:
            api.documented = True
            api.description = description or api.description
            api.required = normalize_params(required)
            api.optional = normalize_params(optional)
        elif documented and api.documented:
            if {p["name"] for p in normalize_params(required)} != {p["name"] for p in api.required}:
                self.count("API documents that disagree (first kept)")
        if not api.description and description:
            api.description = description
        if api.api_id is None and api_id is not None:
            api.api_id = api_id
        if func is not None:
            if api.func is None:
                api.func = str(func)
            elif api.func != str(func):
                self.count("conflicting functionality group ids (first kept)")
        api.provenance[source] = api.provenance.get(source, 0) + 1
        return api

    def add_example(self, key: str, instruction: Any, parameters: Any) -> bool:
        """Add an (instruction, parameters) example to an API; False (and counted) if refused."""
        api = self.apis[key]
        if not isinstance(instruction, str) or not instruction.strip():
            self.count("examples dropped: empty instruction")
            return False
        if not isinstance(parameters, dict):
            self.count("examples dropped: parameters not an object")
            return False
        if any(e["instruction"] == instruction for e in api.examples):
            return False
        if api.documented and api.problems(parameters):
            self.count("examples dropped: parameters invalid for the API schema")
            return False
        api.examples.append({"instruction": instruction, "parameters": parameters})
        return True

    def revalidate_examples(self) -> None:
        """Drop examples that became checkable when a later source documented their API."""
        for api in self.apis.values():
            if api.documented:
                kept = [e for e in api.examples if not api.problems(e["parameters"])]
                if len(kept) != len(api.examples):
                    self.count("examples dropped: parameters invalid for the API schema", len(api.examples) - len(kept))
                    api.examples = kept

    # -- views
    def groups(self) -> dict[str, list[str]]:
        """func id -> sorted API keys (documented APIs only)."""
        out: dict[str, list[str]] = {}
        for key in sorted(self.apis):
            api = self.apis[key]
            if api.func is not None and api.documented:
                out.setdefault(api.func, []).append(key)
        return out

    def doc(self, key: str, example: dict | None = None) -> dict:
        """The API's document in the release's api_ground_truth / apis_same_func form."""
        api = self.apis[key]
        tool = self.tools[api.tool_key]
        if example is None:
            example = api.examples[0] if api.examples else {"instruction": "", "parameters": {}}
        return {
            "api_name": api.name,
            "api_desc": api.description,
            "required_parameters": api.required,
            "optional_parameters": api.optional,
            "Example": {"Scenario": example["instruction"], "Parameters": example["parameters"]},
            "tool_name": api.tool,
            "tool_desc": tool.description,
            "category_name": api.category,
            "api_id": api.api_id,
        }

    def candidate(self, key: str) -> dict:
        """The API as a candidate tool in the release's apis_candidate form."""
        api = self.apis[key]
        return {
            "tool_name": key,
            "tool_description": api.description,
            "required_parameters": api.required,
            "optional_parameters": api.optional,
        }

    # -- (de)serialization
    def to_json(self) -> dict:
        return {
            "tools": [dataclasses.asdict(self.tools[k]) for k in sorted(self.tools)],
            "apis": [dataclasses.asdict(self.apis[k]) for k in sorted(self.apis)],
            "report": dict(sorted(self.report.items())),
            "structure": self.structure,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Pool":
        pool = cls()
        for t in data["tools"]:
            tool = Tool(**t)
            pool.tools[tool.key] = tool
        for a in data["apis"]:
            api = Api(**a)
            pool.apis[api.key] = api
        pool.report = dict(data.get("report", {}))
        pool.structure = data.get("structure")
        return pool
