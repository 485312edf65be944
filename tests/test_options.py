"""Each option that several stages take is declared once (``workbench.options``), and the notebooks show what is
declared: their parameters cells name every field with its config's default and its help as the comment."""
import dataclasses
import sys
import typing
import warnings
from pathlib import Path

import pytest
from notebook_cells import EXTRA_PARAMETERS, NOTEBOOKS, parameters

import workbench as wb
from workbench.core.config import Option, _default, read_value
from workbench.core.params import ParameterError
from workbench.options import SHARED_OPTIONS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from sync_parameters import written_cell  # noqa: E402

STAGE_CONFIGS = [wb.GenerateConfig, wb.ProbeConfig, wb.DistillConfig, wb.TransferConfig, wb.TaskDistillConfig,
                 wb.CloneStudyConfig]


def declarations() -> dict[str, list[tuple[type, dataclasses.Field]]]:
    found: dict[str, list] = {}
    for cls in STAGE_CONFIGS:
        for f in dataclasses.fields(cls):
            found.setdefault(f.name, []).append((cls, f))
    return found


def test_an_option_of_several_stages_is_one_declaration():
    shared = {name: fields for name, fields in declarations().items() if len(fields) > 1}
    assert shared, "no option is shared: the test would check nothing"
    for name, fields in shared.items():
        options = {f.metadata.get("option") for _, f in fields}
        assert len(options) == 1 and None not in options, (
            f"{name!r} is declared separately in {[c.__name__ for c, _ in fields]}: declare it once as an Option "
            f"(workbench.options) and make each stage's field with it")
        option = options.pop()
        assert option.name == name
        for cls, f in fields:
            assert typing.get_type_hints(cls)[name] == option.type, f"{cls.__name__}.{name} is not {option.type}"
            for key in ("help", "ge", "gt", "le", "check", "parse", "allow_empty"):
                assert f.metadata[key] == getattr(option, key), f"{cls.__name__}.{name}: {key} differs"


def test_a_declared_option_is_never_shadowed_by_a_field_of_its_own():
    """A stage that takes a shared option by its name takes the declaration, not a copy of it."""
    for name, fields in declarations().items():
        for cls, f in fields:
            option = SHARED_OPTIONS.get(name)
            if option is not None:
                assert f.metadata.get("option") is option, f"{cls.__name__}.{name} does not use workbench.options"


def test_the_check_sees_a_drifted_declaration():
    """The same name declared twice with other bounds is what the first test refuses."""
    drifted = dataclasses.make_dataclass("Drifted", [("n_train", int, wb.core.config.param(10, ge=1, help="x"))],
                                         bases=(wb.core.config.Config,))
    fields = [f for c in (wb.ProbeConfig, drifted) for f in dataclasses.fields(c) if f.name == "n_train"]
    assert len({f.metadata.get("option") for f in fields}) == 2


def test_an_option_gives_every_stage_the_same_bounds_with_its_own_default():
    probe, transfer = wb.ProbeConfig.from_params(), wb.TransferConfig.from_params()
    assert (probe.n_train, transfer.n_train) == (6000, 3000)
    for cls in (wb.ProbeConfig, wb.TransferConfig, wb.DistillConfig, wb.TaskDistillConfig):
        with pytest.raises(ParameterError, match="n_train must be >= 8"):
            cls.from_params(n_train=4)
    with pytest.raises(TypeError, match="no default of its own"):
        Option("x", int, "help")()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_defaults_are_the_config_defaults(path):
    """01 to 06: what a notebook runs with by default is what its config (the command line, the library) does."""
    from test_notebooks import config_of

    cls = config_of(path)
    given = parameters(path)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = {**f.metadata, "check": None}
        default = read_value(_default(f), f.name, hints[f.name], meta)
        assert read_value(given[f.name], f.name, hints[f.name], meta) == default, (
            f"{path.name}: {f.name} = {given[f.name]!r}, but {cls.__name__}'s default is {default!r}")
    assert set(given) - {f.name for f in dataclasses.fields(cls)} == set(EXTRA_PARAMETERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_parameter_comment_is_its_declared_help(path):
    now, written = written_cell(path.with_suffix(".py"))
    assert now.strip() == written, (f"{path.name}'s parameters cell differs from its config's help texts: run "
                                    "python tools/sync_parameters.py")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """``papermill --help-notebook`` (and papermill's typing of -p values) lists each parameter: it skips a line
    holding a second "=", so a help text's name=path must not share the first line with the assignment."""
    from papermill.inspection import inspect_notebook

    seen = set(inspect_notebook(str(path)))
    assert seen == set(parameters(path)), f"papermill misses {sorted(set(parameters(path)) - seen)} in {path.name}"


def test_the_command_line_help_reads_the_declarations(capsys):
    from workbench.__main__ import main

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    assert "".join(wb.GenerateConfig.parameter_help()["images_per_call"].split()) in text


@pytest.mark.parametrize("cls, old, new, value", [
    (wb.DistillConfig, "checkpoints", "teacher_weights", {}),
    (wb.DistillConfig, "tdrop_p", "teacher_drop_prob", 0.25),
    (wb.ProbeConfig, "tasks", "benchmarks", []),
    (wb.TaskDistillConfig, "steps", "student_steps", 7),
    (wb.GenerateConfig, "batch_size", "images_per_call", 3),
])
def test_an_older_name_still_works_with_a_warning_naming_the_new_one(cls, old, new, value):
    with pytest.warns(FutureWarning, match=f"{old!r} is now called {new!r}"):
        cfg = cls.from_params(**{old: value})
    assert getattr(cfg, new) == value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls.from_params(**{new: value})  # the name of now: no warning
    with pytest.raises(ParameterError, match=f"give only {new}"):
        cls.from_params(**{old: value, new: "1" if value != "1" else "2"})
