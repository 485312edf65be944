"""Run a notebook's first cells in this process, as papermill would in a kernel (for validation tests)."""
from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_validation_cell(notebook: str, params: dict, cwd: Path) -> dict:
    """Run a notebook's parameters cell, a papermill-style injected cell and its validation cell, in order,
    in this process (a kernel's namespace, with the input history ``In`` an IPython kernel keeps)."""
    nb = json.loads((ROOT / "notebooks" / notebook).read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"][:2]
    injected = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
    namespace = {"In": ["", cells[0], injected, cells[1]]}
    cwd_before = os.getcwd()
    os.chdir(cwd)
    try:
        for source in (cells[0], injected, cells[1]):
            exec(compile(source, notebook, "exec"), namespace)
    finally:
        os.chdir(cwd_before)
    return namespace
