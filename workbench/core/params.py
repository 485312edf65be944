"""Notebook parameters as papermill delivers them, checked once with one clear message each.

``-p teachers a,b`` arrives as the string ``"a,b"``; ``-y "teachers: [a, b]"`` arrives as a list;
``-p epochs abc`` arrives as a string where an int is expected. These helpers accept the first two
and reject the third with a message that says what to pass instead.
"""
from __future__ import annotations

import ast
import difflib

from .errors import ParameterError  # noqa: F401  (the error of this module, defined with the others)


def as_list(value, name: str, allow_empty: bool = False) -> list[str]:
    """A list parameter given as a YAML list or a comma-separated string."""
    if value is None and allow_empty:
        return []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # papermill -p shots 5 arrives as a number
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        raise ParameterError(f"{name} must be a list (-y \"{name}: [a, b]\") or a comma-separated string "
                             f"(-p {name} a,b), got {value!r}")
    items = [v for v in items if v]
    if not items and not allow_empty:
        raise ParameterError(f"{name} is empty; give at least one value, e.g. -p {name} a,b")
    return items


def did_you_mean(name: str, known) -> str:
    """ " (did you mean 'x'?)" for the known name closest to a mistyped one, or "" when none is close."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_int(value, name: str, minimum: int | None = None) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        out = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an integer, got {value!r} (e.g. -p {name} 4)") from None
    if minimum is not None and out < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {out}")
    return out


def as_float(value, name: str, low: float | None = None, high: float | None = None) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        out = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r} (e.g. -p {name} 0.5)") from None
    if (low is not None and out < low) or (high is not None and out > high):
        raise ParameterError(f"{name} must be {_range(low, high)}, got {out}")
    return out


def _range(low, high) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    return f">= {low}" if low is not None else f"<= {high}"


def as_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def as_pairs(value, name: str, keys: list[str] | None = None) -> dict[str, str]:
    """``"a=x,b=y"`` (or a YAML mapping) -> {"a": "x", "b": "y"}; keys, when given, must be among ``keys``."""
    if isinstance(value, dict):
        pairs = {str(k): str(v) for k, v in value.items()}
    else:
        pairs = {}
        for item in as_list(value, name, allow_empty=True):
            key, sep, val = item.partition("=")
            if not sep or not key.strip() or not val.strip():
                raise ParameterError(f"{name} takes name=value pairs such as ibot_vitb16=/ckpt/ibot.pth, got {item!r}")
            pairs[key.strip()] = val.strip()
    if keys is not None:
        unknown = sorted(set(pairs) - set(keys))
        if unknown:
            raise ParameterError(f"{name} names {unknown}, which are not among {keys}")
    return pairs


def as_bool(value, name: str) -> bool:
    """``True``/``False`` from YAML or papermill (``-p overwrite True``), or the strings true/false/yes/no/1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise ParameterError(f"{name} must be True or False, got {value!r} (e.g. -p {name} True)")


INJECTED_HEADER = "# Parameters"  # the first line of the cell papermill injects after the parameters cell


def _assigned_names(source: str) -> list[str] | None:
    """Names assigned by a cell of plain ``name = literal`` lines; None when the cell is anything else."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return None
        names.append(node.targets[0].id)
    return names


def check_injected_parameters(namespace: dict, older_names: dict[str, str] | None = None) -> None:
    """Refuse parameters that papermill injected but the notebook does not have (``-p learing_rate 0.1``).

    papermill only warns about them and runs on, silently ignoring the value. Call it from the cell after
    the parameters, with ``globals()``: the kernel's input history holds the parameters cell and, right
    after it, the injected one. Outside papermill nothing is injected and nothing is checked. ``older_names``:
    a parameter's older name -> its name now; an older name is known (the config reads it, with a warning).
    """
    history = list(namespace.get("In") or namespace.get("_ih") or [])
    injected = [i for i, src in enumerate(history) if i > 0 and src.lstrip().startswith(INJECTED_HEADER)]
    if not injected:
        return
    i = injected[-1]
    known = _assigned_names(history[i - 1])
    given = _assigned_names(history[i])
    if known is None or given is None:  # cells run out of order by hand: cannot tell, so do not guess
        return
    unknown = [n for n in given if n not in known and n not in (older_names or {})]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, known, n=1)
            if close:
                hints.append(f"did you mean {close[0]!r} for {n!r}?")
        raise ParameterError(f"unknown parameter(s) {unknown} for this notebook; {' '.join(hints)} "
                             f"Its parameters are: {', '.join(known)}")
