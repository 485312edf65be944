"""Write each notebook's parameters cell from its config: every parameter's comment is its field's help.

    python tools/sync_parameters.py            # rewrite the cells whose comments differ, then sync the .ipynb twins
    python tools/sync_parameters.py --check    # exit 1 when a cell differs (what tests/test_options.py checks)

The values stay what the cell says (a notebook's defaults are CI-sized literals); only the comments are
written. Run it after changing a help text or adding a parameter, never from a notebook's own cells.
"""
from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import jupytext

import workbench as wb

ROOT = Path(__file__).resolve().parent.parent


def parameter_sources(source: str) -> list[tuple[str, str]]:
    """(name, literal source) of each ``name = literal`` line of a parameters cell, in order."""
    tree = ast.parse(source)
    return [(node.targets[0].id, ast.get_source_segment(source, node.value)) for node in tree.body]


def config_of(notebook: jupytext.jupytext.NotebookNode) -> type:
    """The config class whose ``from_notebook`` the notebook's second code cell calls."""
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    tree = ast.parse(code[1])
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "from_notebook"]
    return getattr(wb, calls[0].func.value.attr)


def written_cell(path: Path) -> tuple[str, str]:
    """(the parameters cell as it is, as its config writes it) of the notebook ``path`` (its .py twin)."""
    notebook = jupytext.read(path)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    return cell.source, config_of(notebook).parameters_cell(parameter_sources(cell.source))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report the notebooks whose cell differs")
    args = parser.parse_args()
    stale = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        now, written = written_cell(path)
        if now.strip() == written:
            continue
        stale.append(path.name)
        if not args.check:
            text = path.read_text()
            path.write_text(text.replace(now.strip(), written, 1))
            subprocess.run([sys.executable, "-m", "jupytext", "--sync", str(path)], check=True, capture_output=True)
    print(("differ: " if args.check else "rewritten: ") + (", ".join(stale) or "none"))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
