"""Notebooks as tests see them: their two forms compared, and their first cells run in this process."""
from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXTRA_PARAMETERS = ("out_dir", "overwrite")  # a notebook's parameters besides its config's fields
# The offline teachers this machine has cached already, read at import (before conftest points $WORKBENCH_CACHE at a
# test's own folder).
USER_TEACHERS = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")).expanduser() / "teachers"


def cache_with_user_teachers(cache: Path) -> Path:
    """``cache``, for notebooks run in other processes, with this machine's offline teachers copied in where it has
    them: they spare each test module their training (absent, the first run trains them)."""
    if USER_TEACHERS.is_dir():
        shutil.copytree(USER_TEACHERS, cache / "teachers")
    return cache


def cells(nb) -> list[tuple[str, str, list[str]]]:
    """(type, source, tags) of every cell: what the two forms of a notebook must agree on."""
    return [(c.cell_type, c.source.strip(), list(c.metadata.get("tags", []))) for c in nb.cells]


def notebook_differences(ipynb: Path, source: Path) -> list[str]:
    """Where ``source`` (the percent-format .py) and ``ipynb`` disagree; empty when they are in sync."""
    a, b = cells(nbformat.read(ipynb, as_version=4)), cells(jupytext.read(source))
    out = [f"{ipynb.name} has {len(a)} cells, {source.name} {len(b)}"] if len(a) != len(b) else []
    for i, (x, y) in enumerate(zip(a, b)):
        if x[0] != y[0] or x[2] != y[2]:
            out.append(f"cell {i}: {ipynb.name} has a {x[0]} cell tagged {x[2]}, "
                       f"{source.name} a {y[0]} cell tagged {y[2]}")
        elif x[1] != y[1]:
            lines = list(zip(x[1].splitlines() + [""], y[1].splitlines() + [""]))
            k, (u, v) = next((k, pair) for k, pair in enumerate(lines) if pair[0] != pair[1])
            out.append(f"cell {i}, line {k + 1}: {ipynb.name} {u!r}, {source.name} {v!r}")
    return out


def code_cells(notebook: Path) -> list[str]:
    nb = json.loads(notebook.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def parameters(notebook: Path) -> dict:
    """The literal defaults of the notebook's parameters cell."""
    tree = ast.parse(code_cells(notebook)[0])
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}


def run_validation_cell(notebook: str, params: dict, cwd: Path) -> dict:
    """Run a notebook's parameters cell, a papermill-style injected cell and its validation cell, in order,
    in this process (a kernel's namespace, with the input history ``In`` an IPython kernel keeps)."""
    cells_ = code_cells(ROOT / "notebooks" / notebook)[:2]
    injected = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
    namespace = {"In": ["", cells_[0], injected, cells_[1]]}
    cwd_before = os.getcwd()
    os.chdir(cwd)
    try:
        for source in (cells_[0], injected, cells_[1]):
            exec(compile(source, notebook, "exec"), namespace)
    finally:
        os.chdir(cwd_before)
    return namespace
