"""Configs declared once: every parameter is a dataclass field that carries its type, default, bounds and role.

    @dataclass
    class DistillConfig(Config):
        kind: ClassVar[str] = "03_distill"    # what a run of it records in its out_dir
        epochs: int = param(8, ge=1, help="passes over the training split")
        teacher_drop_prob: float = param(0.5, ge=0, le=1, help="teacher dropping probability")
        device: str = param("auto", execution=True, check=pick_device)

    cfg = DistillConfig.from_params(epochs="4")        # a papermill or command-line string, read by its type
    cfg, out = DistillConfig.from_notebook(globals())  # a notebook's parameters, then its out_dir claimed

**Reading a value.** The field's type says how (``int``, ``float``, ``bool``, ``str``, ``list[str]``,
``list[int]``, ``dict[str, str]``, and ``X | None``, whose ``None`` may be written ``auto``); a list is a
YAML list or a comma-separated string, as papermill's ``-y`` and ``-p`` deliver them. Then the
metadata: bounds (``ge``, ``gt``, ``le``), ``choices``, a ``check`` of the value (a teacher name that
exists), or a ``parse`` that replaces the type's reading. Every refusal names the parameter and what to
type. Checks that relate two fields are the config's own ``check`` method: the only hand-written part.

**Same run or not.** A field's role is ``result`` (the default: it decides what the run computes),
``execution`` (where and how fast: device, compilation, workers, batch of a generator) or ``extent``
(how much of a run there is: a rerun may extend it, as generation's classes and images per class).
``run_key()``, the result fields, is the one rule by which every stage decides whether a folder holds
the same run: what ``prepare_out_dir`` records, what a resumed checkpoint must match, what locks a
generated folder.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from .params import (
    ParameterError,
    as_bool,
    as_choice,
    as_float,
    as_int,
    as_list,
    as_pairs,
    check_injected_parameters,
    did_you_mean,
)
from .runs import prepare_out_dir

ROLES = ("result", "execution", "extent")
NONE_WORDS = (None, "", "auto", "none", "None", 0, "0")  # what an optional field reads as None (its default)
# A notebook's parameters besides its config's fields, and their help.
NOTEBOOK_PARAMETERS = {"overwrite": "True: delete the run already in out_dir and start over",
                       "out_dir": "the folder of this run's artifacts: summary.json, figures, tables, checkpoints"}
NOTEBOOK_NAMES = tuple(NOTEBOOK_PARAMETERS)
COMMENT_COLUMN, LINE_WIDTH = 39, 120  # a parameters cell: where each help comment starts, and where it wraps


def param(default: Any = dataclasses.MISSING, *, default_factory: Callable | Any = dataclasses.MISSING,
          help: str = "", ge: float | None = None, gt: float | None = None, le: float | None = None,
          choices=None, check: Callable | None = None, parse: Callable | None = None,
          execution: bool = False, extent: bool = False, allow_empty: bool = False,
          option: Option | None = None) -> Any:
    """A config field: its default and, as metadata, how a given value is read and checked, and its role.
    ``option``: the shared declaration it was made from (``Option``), if any."""
    if execution and extent:
        raise ValueError("a field is execution or extent, not both")
    if isinstance(default, (list, dict)):  # a mutable default: each config gets its own copy
        default, default_factory = dataclasses.MISSING, (lambda value=default: copy.deepcopy(value))
    metadata = {"help": help, "ge": ge, "gt": gt, "le": le, "choices": tuple(choices) if choices is not None else None,
                "check": check, "parse": parse, "allow_empty": allow_empty, "option": option,
                "role": "execution" if execution else "extent" if extent else "result"}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


NO_DEFAULT = object()  # an Option whose default each stage gives


@dataclasses.dataclass(frozen=True, eq=False)  # one declaration is one object: compared by identity
class Option:
    """An option that several stages take, declared once (``workbench.options``): its name, type, bounds, checks,
    role and help. A stage's config makes its field by calling it, with the stage's default when it has its own:

        n_train: int = N_TRAIN(3000)      # the same type, bounds and help as every other stage's n_train

    The default may differ by stage (a transfer task needs fewer images than a distillation); nothing else does
    (``tests/test_options.py`` checks every stage config against the declarations)."""

    name: str
    type: Any
    help: str
    default: Any = NO_DEFAULT  # each stage gives its own
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple | None = None
    check: Callable | None = None
    parse: Callable | None = None
    execution: bool = False
    allow_empty: bool = False

    def __call__(self, default: Any = dataclasses.MISSING, *, extent: bool = False) -> Any:
        """A config field of this option: ``default``, or the declared one. ``extent``: a rerun may extend it (a
        stage's own reading of the option, as generation's images per class)."""
        default = self.default if default is dataclasses.MISSING else default
        if default is NO_DEFAULT:
            raise TypeError(f"option {self.name!r} has no default of its own: give the stage's")
        factory = dataclasses.MISSING
        if callable(default):  # a default computed when a config is made (a shipped class list)
            default, factory = dataclasses.MISSING, default
        return param(default, default_factory=factory, help=self.help, ge=self.ge, gt=self.gt, le=self.le,
                     choices=self.choices, check=self.check, parse=self.parse, execution=self.execution,
                     extent=extent, allow_empty=self.allow_empty, option=self)


def read_value(value: Any, name: str, kind: Any, meta: dict) -> Any:
    """``value`` (a literal, a YAML value or a papermill string) as the field ``name`` of type ``kind`` wants it."""
    if meta.get("parse") is not None:
        value = meta["parse"](value, name)
    else:
        optional = _optional(kind)
        if optional is not None:
            if value in NONE_WORDS and not isinstance(value, bool):
                return None
            kind = optional
        value = _read_type(value, name, kind, meta)
    if meta.get("choices") is not None:
        as_choice(value, name, meta["choices"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_bounds(value, name, meta)
    if meta.get("check") is not None:
        meta["check"](value)
    return value


def _optional(kind: Any) -> Any | None:
    """``X`` for ``X | None`` (``Optional[X]``), else None."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0]
    return None


def _read_type(value: Any, name: str, kind: Any, meta: dict) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return as_bool(value, name)
    if kind is int:
        return as_int(value, name)
    if kind is float:
        return as_float(value, name)
    if kind is str:
        return "" if value is None else str(value)
    if origin is list and args in ((str,), (int,), (float,)):
        items = as_list(value, name, allow_empty=meta.get("allow_empty", False))
        read = {(int,): as_int, (float,): as_float}.get(args)
        return [read(v, name) for v in items] if read else items
    if origin is dict and args == (str, str):
        return as_pairs(value, name)
    raise TypeError(f"config field {name!r} has type {kind!r}, which needs a parse= function in its param()")


def _check_bounds(value: float, name: str, meta: dict) -> None:
    ge, gt, le = meta.get("ge"), meta.get("gt"), meta.get("le")
    low_ok = (ge is None or value >= ge) and (gt is None or value > gt)
    if low_ok and (le is None or value <= le):
        return
    if ge is not None and le is not None:
        raise ParameterError(f"{name} must be in [{ge}, {le}], got {value}")
    if gt is not None:
        raise ParameterError(f"{name} must be > {gt}" + (f" and <= {le}" if le is not None else "") + f", got {value}")
    if ge is not None and value < ge:
        raise ParameterError(f"{name} must be >= {ge}, got {value}")
    raise ParameterError(f"{name} must be <= {le}, got {value}")


@dataclasses.dataclass
class Config:
    """Base of the stages' configs. Subclasses are dataclasses whose fields are ``param(...)``."""

    kind: ClassVar[str] = "run"  # the run kind an out_dir records (e.g. "03_distill"): kinds never share a folder
    what: ClassVar[str] = "run"  # how messages name its parameters ("unknown distillation parameter(s) ...")
    # A field's older name -> its name now. Run files, papermill parameters and out_dirs that use the older name
    # still work, with a FutureWarning naming the new spelling.
    renamed: ClassVar[dict[str, str]] = {}

    # ------------------------------------------------------------------ building one

    @classmethod
    def from_params(cls, **params) -> Config:
        """Read and check every field (given or default); an unknown name is refused with the known ones, an older
        name (``renamed``) read as its name now, with a warning."""
        params = cls.current_names(params)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise ParameterError(f"unknown {cls.what} parameter(s) {unknown}{did_you_mean(unknown[0], fields)}; "
                                 f"known: {sorted(fields)}")
        kinds = typing.get_type_hints(cls)
        values = {}
        for name, f in fields.items():
            value = params[name] if name in params else _default(f)
            values[name] = read_value(value, name, kinds[name], f.metadata)
        cfg = cls(**values)
        cfg.check()
        return cfg

    @classmethod
    def current_names(cls, params: dict, where: str = "") -> dict:
        """``params`` with every older name of a field (``renamed``) replaced by its name now, and a FutureWarning
        for each. ``where``: what holds them, for the message (a run file, an out_dir's record)."""
        out = dict(params)
        for old, new in cls.renamed.items():
            if old not in out:
                continue
            if new in out and out[new] != out[old]:
                raise ParameterError(f"{old} is the older name of {new}: give only {new}")
            warnings.warn(f"the {cls.what} parameter {old!r}{where} is now called {new!r}; it is read as {new}, "
                          f"but write {new} (e.g. -p {new} ...) from now on", FutureWarning, stacklevel=3)
            out[new] = out.pop(old)
        return out

    def check(self) -> None:
        """Checks that relate several fields (the single-field ones are in the fields' metadata)."""

    @classmethod
    def from_notebook(cls, namespace: dict) -> tuple[Config, Path]:
        """A notebook's parameters (its ``globals()``): every name papermill injected must be one of the notebook's,
        every field is read and checked, and only then ``out_dir`` is claimed for this configuration
        (``claim_out_dir``). Returns the config and the output folder."""
        check_injected_parameters(namespace, older_names=cls.renamed)
        if "out_dir" not in namespace:
            raise ParameterError("the notebook's parameters cell needs out_dir (the folder of this run's artifacts)")
        overwrite = as_bool(namespace.get("overwrite", False), "overwrite")
        params = {f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace}
        for old, new in cls.renamed.items():  # only papermill can have injected an older name: it wins
            if old in namespace:
                params.pop(new, None)
                params[old] = namespace[old]
        cfg = cls.from_params(**params)
        return cfg, cfg.claim_out_dir(namespace["out_dir"], overwrite)

    def check_inputs(self) -> None:
        """What the run will read from disk (data folders, weight files) and the memory its sizes take, checked
        before ``claim_out_dir`` touches the out_dir, so a run that fails here leaves it as it found it and the
        corrected command needs no ``overwrite``. The values themselves were checked when the config was made
        (``check``); a stage with inputs on disk extends this."""

    def claim_out_dir(self, out_dir, overwrite: bool = False, log=print, inputs_checked: bool = False) -> Path:
        """Check the run's inputs (``check_inputs``, unless the caller just did), then make ``out_dir`` this run's
        folder (``prepare_out_dir``: the same run continues, another is refused)."""
        if not inputs_checked:
            self.check_inputs()
        return prepare_out_dir(out_dir, self.run_key(), overwrite, kind=self.kind, log=log,
                               defaults=self.default_run_key(), current_names=self.recorded_key)

    @classmethod
    def recorded_key(cls, record: dict) -> dict:
        """A run key as an out_dir or a checkpoint recorded it, with the names of now (``renamed``)."""
        return cls.current_names(record, where=" recorded in this run's folder")

    # ------------------------------------------------------------------ what it is

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def fields_with_role(cls, role: str) -> list[str]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("role", "result") == role]

    def run_key(self) -> dict:
        """What decides the results: the result fields. Two configs with the same key are the same run."""
        return {name: getattr(self, name) for name in self.fields_with_role("result")}

    @classmethod
    def default_run_key(cls) -> dict:
        """The run key of the defaults: what a record written before a field existed is read with."""
        return {f.name: _default(f) for f in dataclasses.fields(cls) if f.metadata.get("role", "result") == "result"}

    @classmethod
    def parameter_help(cls) -> dict[str, str]:
        """Each field's help text, for command lines, tables and the notebooks' parameters cells; a field with choices
        lists them when its help does not."""
        helps = {}
        for f in dataclasses.fields(cls):
            text, choices = f.metadata.get("help", ""), f.metadata.get("choices")
            if choices and not all(str(c) in text for c in choices):
                text += f" ({', '.join(map(str, choices))})"
            helps[f.name] = text
        return helps

    @classmethod
    def parameters_cell(cls, values: list[tuple[str, str]]) -> str:
        """A notebook's parameters cell: ``name = <literal>`` for each (name, literal source) of ``values``, each
        with its field's help as its comment (wrapped under itself): what the notebooks show is what is declared."""
        helps = {**cls.parameter_help(), **NOTEBOOK_PARAMETERS}
        lines = []
        for name, literal in values:
            code = f"{name} = {literal}"
            words, width = helps.get(name, "").split(), LINE_WIDTH - COMMENT_COLUMN - 2
            if not words:
                lines.append(code)
                continue
            comment = [words[0]]
            for word in words[1:]:
                # papermill skips a parameter whose line holds a second "=" (--help-notebook, its type): the
                # help's "name=path" goes to a comment line of its own
                if len(comment[-1]) + 1 + len(word) <= width and not (len(comment) == 1 and "=" in word):
                    comment[-1] += " " + word
                else:
                    comment.append(word)
            lines.append(f"{code.ljust(COMMENT_COLUMN - 2)}  # {comment[0]}")
            lines += [f"{'':{COMMENT_COLUMN}}# {text}" for text in comment[1:]]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        """In a notebook: a table of the parameters, those that differ from the default in bold."""
        rows = ["| parameter | value | role | |", "|---|---|---|---|"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            text = repr(value).replace("|", "\\|")
            rows.append(f"| {f.name} | {text if value == _default(f) else f'**{text}**'} | "
                        f"{f.metadata.get('role', 'result')} | {f.metadata.get('help', '')} |")
        return f"**{type(self).__name__}**\n\n" + "\n".join(rows)


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is dataclasses.MISSING:
        raise TypeError(f"config field {f.name!r} needs a default")
    return f.default
