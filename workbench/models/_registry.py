"""The teacher registry (names -> builders) and the named students. A leaf: it imports nothing of the workbench.

Modules that define teachers register them when they are imported (``workbench.models`` imports them
all); ``create_teacher`` (``workbench.models._factory``) looks them up here.

    @register_teacher("world_shape", "offline-world specialist ...")
    def world_shape(pretrained: bool = True, checkpoint: str | None = None) -> Teacher: ...

A builder that takes ``preprocessing`` (a ``Preprocessing``) lets users override its evaluation transform.
"""
from __future__ import annotations

from collections.abc import Callable

_builders: dict[str, Callable] = {}
_descriptions: dict[str, str] = {}


def register_teacher(name: str, description: str) -> Callable:
    """Decorator: ``builder(pretrained: bool, checkpoint: str | None[, preprocessing]) -> Teacher`` is created by
    ``name``."""

    def wrap(builder: Callable) -> Callable:
        _builders[name] = builder
        _descriptions[name] = description
        return builder

    return wrap


def is_registered(name: str) -> bool:
    return name in _builders


def teacher_builder(name: str) -> Callable:
    return _builders[name]


def list_teachers() -> dict[str, str]:
    """Registered teacher names and what they are. Any timm model name also works."""
    return dict(sorted(_descriptions.items()))


_students: dict[str, Callable] = {}


def register_named_student(name: str, provider: Callable) -> None:
    """``provider() -> Path``: the folder of the student called ``name`` (``"student"``: 03's default student, which
    ``workbench.distillation`` registers), made when first asked for. ``load_student(name)`` loads it."""
    _students[name] = provider


def named_students() -> list[str]:
    return sorted(_students)


def named_student(name: str):
    """The folder of the named student (its provider may distill it first)."""
    return _students[name]()
