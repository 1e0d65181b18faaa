"""The package graph runs one way: core <- eval <- synth <- app, with no cycles.

core = `petool_jax` outside `petool_jax.app` (model, conversion, training, generation, the
PEToolBench schema and prompts); `eval` builds on the core; `synth` on the core and `eval`
(its comparison runs the rule baseline); the application layer `petool_jax.app` (CLI,
commands, demo, experiment) on everything. Imports inside functions count as well: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("petool_jax", "eval", "synth", "bench")
# layer -> the layers it may import (its own included)
ALLOWED = {
    "core": {"core"},
    "eval": {"core", "eval"},
    "synth": {"core", "eval", "synth"},
    "app": {"core", "eval", "synth", "app"},
    "bench": {"core", "eval", "synth", "app", "bench"},
}


def module_files() -> dict[str, pathlib.Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def layer(module: str) -> str:
    if module == "petool_jax.app" or module.startswith("petool_jax.app."):
        return "app"
    top = module.split(".")[0]
    return "core" if top == "petool_jax" else top


def imported_modules(module: str, path: pathlib.Path, known: dict) -> set[str]:
    """The project modules `module` imports (`from a import b` counts `a.b` when b is a module)."""
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_is_read_from_the_tree():
    graph = import_graph()
    # The walker must see what it is meant to police, or the checks below are vacuous.
    assert "petool_jax.app.cli" in graph and "eval.run" in graph and "synth.pipeline" in graph
    assert "petool_jax.train.sft" in graph["petool_jax.app.commands.train"] or any(
        t.startswith("petool_jax.train") for t in graph["petool_jax.app.commands.train"])
    assert "petool_jax.petoolbench" in graph["eval.run"]


def test_no_import_runs_against_the_layers():
    wrong = sorted(f"{src} -> {dst}" for src, targets in import_graph().items() for dst in targets
                   if layer(dst) not in ALLOWED[layer(src)])
    assert wrong == [], "imports against core <- eval <- synth <- app:\n" + "\n".join(wrong)


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_imported_across_modules():
    modules = module_files()
    offenders = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                offenders += [f"{name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []
