"""The built-in tool catalog (package data) and what the report says about it."""

from __future__ import annotations

import json
import pathlib

from petool_jax.errors import UserError

CATALOG = pathlib.Path(__file__).with_name("catalog.json")


def catalog_path() -> pathlib.Path:
    if not CATALOG.is_file():
        raise UserError(f"{CATALOG}: the demo's tool catalog is missing from the installation "
                        "(regenerate it with: python -m petool_jax.app.demo.catalog_source)")
    return CATALOG


def catalog_summary(path: pathlib.Path | None = None) -> dict:
    """Counts for the report: categories, functionality groups, tools, APIs, examples."""
    tools = json.loads((path or catalog_path()).read_text(encoding="utf-8"))
    apis = [api for tool in tools for api in tool["api_list"]]
    groups: dict[str, set] = {}
    for tool in tools:
        for api in tool["api_list"]:
            groups.setdefault(api["func"], set()).add(tool["tool_name"])
    return {
        "categories": len({t["category_name"] for t in tools}),
        "functionality_groups": len(groups),
        "tools": len(tools),
        "apis": len(apis),
        "providers_per_group": [min(map(len, groups.values())), max(map(len, groups.values()))],
        "example_instructions": sum(len(api.get("examples", [])) for api in apis),
        "profiles": sorted({t.get("profile", "") for t in tools} - {""}),
    }
