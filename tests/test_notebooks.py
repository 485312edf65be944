"""Notebook conventions: two forms in sync, committed without outputs, kernel python3, the first code cell the
literal parameters of a config, the second one import and one call, and no cell that branches on a parameter."""
import ast
import dataclasses
import json
import shutil

import pytest
from notebook_cells import EXTRA_PARAMETERS, NOTEBOOKS, ROOT, code_cells, notebook_differences, parameters

import workbench as wb


def config_of(notebook) -> type:
    """The config class whose ``from_notebook`` the notebook's second code cell calls."""
    tree = ast.parse(code_cells(notebook)[1])
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "from_notebook"]
    assert len(calls) == 1, "the second code cell calls <Config>.from_notebook(globals()) once"
    return getattr(wb, calls[0].func.value.attr)


def test_there_are_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["01_synthetic_imagenet", "02_probe_teachers", "03_distill", "04_transfer",
                                           "05_task_distill", "06_synthetic_vs_real", "07_studies"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_two_forms_of_each_notebook_agree(path):
    source = path.with_suffix(".py")
    assert source.is_file(), f"{path.name} has no paired {source.name} (jupytext percent format)"
    differences = notebook_differences(path, source)
    assert not differences, (f"{path.name} and {source.name} differ: {'; '.join(differences)}. Run "
                             "`make sync-notebooks` (jupytext --sync: the older file of each pair is updated from the "
                             "newer one)")


def test_the_sync_check_sees_an_edit_of_either_form(tmp_path):
    """Edit one form without the other, as a researcher might, and the check fails; sync them and it passes."""
    import jupytext

    nb, py = ROOT / "notebooks" / "02_probe_teachers.ipynb", ROOT / "notebooks" / "02_probe_teachers.py"
    for edited in ("py", "ipynb"):
        a, b = shutil.copy(nb, tmp_path / nb.name), shutil.copy(py, tmp_path / py.name)
        if edited == "py":
            text = py.read_text().replace('probe = "both"', 'probe = "linear"')
            (tmp_path / py.name).write_text(text)
        else:
            book = json.loads(nb.read_text())
            book["cells"][-1]["source"].append("\nprint('one more line')")
            (tmp_path / nb.name).write_text(json.dumps(book))
        assert notebook_differences(a, b), f"an edit of the {edited} form went unseen"
        jupytext.write(jupytext.read(b if edited == "py" else a), a if edited == "py" else b,
                       fmt="ipynb" if edited == "py" else "py:percent")
        assert not notebook_differences(a, b)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), "commit notebooks without outputs"
    assert "parameters" in code[0]["metadata"].get("tags", []), "first code cell must be tagged 'parameters'"
    tree = ast.parse("".join(code[0]["source"]))
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, "parameters are plain assignments"
        ast.literal_eval(node.value)  # literals only: derived values belong in later cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_parameters_are_the_fields_of_the_notebook_config(path):
    """Each parameter is declared once, on its config field: the notebook's parameters cell names every field and
    nothing else (besides out_dir and overwrite), and its defaults pass the config's own checks."""
    cfg_cls = config_of(path)
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    names = parameters(path)
    assert set(names) == fields | set(EXTRA_PARAMETERS), (
        f"not in the notebook: {sorted(fields - set(names))}; not in {cfg_cls.__name__}: "
        f"{sorted(set(names) - fields - set(EXTRA_PARAMETERS))}")
    cfg_cls.from_params(**{k: v for k, v in names.items() if k in fields})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_second_cell_imports_the_workbench_and_validates(path):
    tree = ast.parse(code_cells(path)[1])
    kinds = [type(node).__name__ for node in tree.body]
    assert kinds[:2] == ["Import", "Assign"] and kinds[2:] in ([], ["Expr"]), kinds
    assert [a.name for a in tree.body[0].names] == ["workbench"] and tree.body[0].names[0].asname == "wb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_branches_on_a_parameter_or_rebinds_one(path):
    """One story per notebook: a mode parameter would make cells say ``if mode == ...``; and a later cell that
    rebinds a parameter's name would change what a rerun of the second cell reads."""
    names = set(parameters(path))

    def mentions(node) -> set[str]:
        found = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & names
        found |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                  and n.value.id == "cfg"} & names
        return found

    for i, source in enumerate(code_cells(path)[1:], 2):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.If, ast.IfExp, ast.While)):
                assert not mentions(node.test), f"code cell {i} branches on parameter(s) {mentions(node.test)}"
            targets = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            elif isinstance(node, (ast.For, ast.comprehension)):
                targets = [node.target]
            rebound = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)} & names
            assert not rebound, f"code cell {i} rebinds parameter(s) {rebound}"
