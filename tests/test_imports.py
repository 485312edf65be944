"""The package's layers, read from its source (ast): each imports only the ones below it, and nothing cycles.

    core <- data <- layers <- models <- options <- probing <- generation | distillation | transfer <- study
        <- workbench

Stages never import each other; no module imports another's private name; no module hides an import of the
workbench inside a function (the imports at the top of a module are its whole list of dependencies).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"
RANKS = {"core": 0, "data": 1, "layers": 2, "models": 3, "options": 4, "probing": 5, "generation": 6,
         "distillation": 6, "transfer": 6, "study": 7}
TOP = 8  # workbench/__init__.py and __main__.py: the public API and the command line


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> tuple[str, int]:
    """(the first-level package, its rank) of a workbench module."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in RANKS:
        return "workbench", TOP
    return parts[1], RANKS[parts[1]]


def imports(module: str) -> list[tuple[str, list[str], ast.AST, bool]]:
    """(imported workbench module, names taken from it, node, inside a function) for each import of ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    target = f"{base}.{child.module}" if child.module else base
                else:
                    target = child.module or ""
                if target == "workbench" or target.startswith("workbench."):
                    names = [a.name for a in child.names]
                    submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
                    if len(submodules) < len(names):  # names defined by the module itself
                        found.append((target, [n for n in names if f"{target}.{n}" not in MODULES], child, in_function))
                    found.extend((m, [], child, in_function) for m in submodules)  # ``from . import zoo``
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == "workbench" or alias.name.startswith("workbench."):
                        found.append((alias.name, [], child, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def test_the_package_has_the_layers():
    assert {layer(m)[0] for m in MODULES} == set(RANKS) | {"workbench"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers_only(module):
    here, rank = layer(module)
    for target, _, node, _ in imports(module):
        there, target_rank = layer(target)
        assert there == here or target_rank < rank, (
            f"{module} (line {node.lineno}) imports {target}: {here} (layer {rank}) may import only its own package "
            f"and the layers below it, not {there} (layer {target_rank})")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_modules_and_no_import_hides_in_a_function(module):
    for target, names, node, in_function in imports(module):
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{module} (line {node.lineno}) imports private {private} from {target}"
        assert not in_function, f"{module} (line {node.lineno}) imports {target} inside a function: import at the top"


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle of the directed graph (depth first), as the list of its nodes, or None."""
    state: dict[str, str] = {}

    def walk(node, path):
        state[node] = "open"
        for target in graph.get(node, []):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = walk(target, path + [target])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in graph:
        if node not in state:
            cycle = walk(node, [node])
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = {m: sorted({t for t, _, _, _ in imports(m) if t in MODULES and t != m}) for m in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) in (["a", "b", "c", "a"],)


def test_the_leaf_registry_imports_nothing_of_the_package():
    assert imports("workbench.models._registry") == []


def test_the_checks_see_a_wrong_way_import(tmp_path, monkeypatch):
    """The walker itself: a core module that imported a stage would be caught."""
    bad = tmp_path / "workbench" / "core"
    bad.mkdir(parents=True)
    (bad / "oops.py").write_text("from ..distillation import distill\n\n\ndef f():\n    from ..data import world\n")
    module = "workbench.core.oops"
    monkeypatch.setitem(MODULES, module, bad / "oops.py")
    found = imports(module)
    assert [(t, inside) for t, _, _, inside in found] == [("workbench.distillation", False),
                                                          ("workbench.data.world", True)]
    with pytest.raises(AssertionError, match="may import only its own package"):
        test_imports_go_down_the_layers_only(module)
    with pytest.raises(AssertionError, match="inside a function"):
        test_no_private_name_crosses_modules_and_no_import_hides_in_a_function(module)
