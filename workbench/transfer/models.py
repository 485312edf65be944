"""The models of a transfer run: teachers by name, and distilled students by folder.

    models = load_models("world_colour,world_shape,runs/03_distill", device)

``student`` names the student 03 distills with its defaults: ``load_models`` takes where to find it
(``default_student``, a folder or a function that returns one) from its caller, which may train it.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ParameterError
from ..core.params import as_list
from ..models import (
    STUDENT_FOLDER,
    TRAINING_CHECKPOINTS,
    Features,
    Teacher,
    build_teachers,
    check_teacher_names,
    check_teacher_options,
    find_student_folder,
    load_student,
)
from ..models.students import OLDER_STUDENT_FOLDER
from ..probing import Encoder

DEFAULT_STUDENT = "student"  # the models entry that stands for 03's default student


@dataclass
class TransferModel(Encoder):
    """A model as the transfer notebook uses it: an ``Encoder`` for the probes (its ``features`` give the patch
    tokens of the dense probes and PCA pictures), with its role and where it came from."""

    role: str = "teacher"  # "teacher" or "student"
    source: str = ""


def teacher_model(name: str, m: Teacher) -> TransferModel:
    return TransferModel(name, lambda x: m(x).cls, m, features=m, role="teacher", source=name)


def student_model(name: str, folder: Path, device) -> TransferModel:
    s = load_student(folder, device)

    def features(x):
        cls, patch = s.forward_features(x)  # the final norm's: what the student is used for downstream
        return Features(cls, patch, s.grid)

    return TransferModel(name, s.embed, s, features=features, role="student", source=str(folder))


def parse_models(specs) -> list[tuple[str, str, str | None]]:
    """Check the ``models`` parameter without loading anything: [(name, "teacher" | "student", source)].

    ``student`` is 03's default student (source None); a folder is a distilled student (a run's ``out_dir``, its
    ``student/``, or a training checkpoint ``checkpoints/step_*`` of a run still training), named after the
    run; a file is a released UNIC checkpoint (``unic.pth``), named after the file; ``name=path`` names
    either; anything else is a teacher (registry or timm name).
    """
    parsed = []
    for item in as_list(specs, "models"):
        name, sep, path = item.partition("=")
        if item == DEFAULT_STUDENT:
            parsed.append((DEFAULT_STUDENT, "student", None))
        elif sep or os.sep in item or Path(item).exists():
            source = Path(path.strip() if sep else item)
            if not source.is_file():  # a file is a released UNIC checkpoint; a folder, one of ours
                source = find_student_folder(source)
            label = name.strip() if sep else run_label(source)
            parsed.append((label, "student", str(source)))
        else:
            check_teacher_names([item])
            parsed.append((item, "teacher", item))
    names = [n for n, _, _ in parsed]
    if len(set(names)) != len(names):
        raise ParameterError(f"model names must be distinct, got {names}; name students with name=folder")
    return parsed


def run_label(folder: Path) -> str:
    """A student's name from its folder: the run's folder (``runs/03_a/student`` -> ``03_a``), with the step for a
    run still training (``runs/03_a/checkpoints/step_00000300`` -> ``03_a@step_00000300``); a release file's name
    without its suffix (``unic_l.pth`` -> ``unic_l``)."""
    if folder.is_file():
        return folder.stem
    if folder.name in (STUDENT_FOLDER, OLDER_STUDENT_FOLDER):
        return folder.parent.name
    if folder.parent.name == TRAINING_CHECKPOINTS:
        return f"{folder.parent.parent.name}@{folder.name}"
    return folder.name


def load_models(specs, device, teacher_weights: dict[str, str] | None = None,
                default_student: Path | Callable[[], Path] | None = None,
                preprocessing: dict[str, str] | None = None) -> list[TransferModel]:
    """The models of ``parse_models(specs)``, loaded.

    ``teacher_weights`` maps teacher names to release weight files in their authors' format, as in 02; ``preprocessing``
    a teacher's evaluation recipe instead of its release's (students bring the one they were trained with);
    ``default_student`` is the folder of the model named ``student``, or a function that returns it (called
    only when that name is asked for: it may have to train the student).
    """
    parsed = parse_models(specs)
    names = [n for n, role, _ in parsed if role == "teacher"]
    check_teacher_options(names, teacher_weights or {}, preprocessing or {})
    teachers = build_teachers(names, teacher_weights, preprocessing, device)
    models = []
    for name, role, source in parsed:
        if role == "teacher":
            models.append(teacher_model(name, teachers[name]))
            continue
        if source is None:
            if default_student is None:
                raise ParameterError(f"{DEFAULT_STUDENT!r} stands for 03's default student, but no default_student "
                                     "was given")
            source = default_student() if callable(default_student) else default_student
        models.append(student_model(name, Path(source), device))
    return models
