"""``create_teacher(name, pretrained=..., checkpoint=...)``: a registered teacher or any timm model, frozen.

Registered names (the offline specialists, the zoo) are looked up in ``_registry``; any other name must
be a timm model, whose weights come from the local Hugging Face cache or a checkpoint file.
"""
from __future__ import annotations

from pathlib import Path

import timm

from ..core.params import ParameterError
from ._registry import is_registered, list_teachers, teacher_builder
from .preprocess import PREPROCESSING, Preprocessing, preprocessing_named
from .teachers import Teacher, TimmTeacher
from .weights import create_timm_model, load_checkpoint


def create_teacher(name: str, pretrained: bool = True, checkpoint: str | None = None,
                   preprocessing: str | Preprocessing | None = None) -> Teacher:
    """Build a teacher by registry name, or any timm model name; returns it frozen and in eval mode.

    ``checkpoint``: a weight file (a timm name reads it as a timm-family file; a zoo name in its release's own
    format). ``preprocessing``: a recipe name (``workbench.models.preprocess.PREPROCESSING``) or a
    ``Preprocessing``, instead of the release's (zoo) or the timm config's (timm names)."""
    if isinstance(preprocessing, str):
        preprocessing = preprocessing_named(preprocessing)
    if is_registered(name):
        options = {"preprocessing": preprocessing} if preprocessing is not None else {}
        teacher = teacher_builder(name)(pretrained=pretrained, checkpoint=checkpoint, **options)
    else:
        check_teacher_names([name])
        if checkpoint is not None:
            model = timm.create_model(name, pretrained=False, num_classes=0)
            load_checkpoint(model, checkpoint, "timm", name)
        else:
            model = create_timm_model(name, pretrained)
        teacher = TimmTeacher(name, model, preprocessing)
    teacher.requires_grad_(False)
    return teacher.eval()


def check_teacher_names(names: list[str]) -> list[str]:
    """Fail early, listing the known teachers, when a name is neither registered nor a timm model."""
    known = list_teachers()
    bad = [n for n in names if n not in known and not timm.is_model(n)]
    if bad:
        raise ParameterError(f"unknown teacher(s) {bad}. Registered teachers: {', '.join(known)}. "
                             "Any timm model name works too (see timm.list_models()).")
    if len(set(names)) != len(names):
        raise ParameterError(f"teachers must be distinct, got {names}")
    return list(names)


def check_teacher_options(teachers: list[str], checkpoints: dict[str, str], preprocessing: dict[str, str]) -> None:
    """A config's per-teacher ``teacher_weights`` (files that exist) and ``preprocessing`` (known recipes) name
    teachers of the run."""
    for field_name, mapping in (("teacher_weights", checkpoints), ("preprocessing", preprocessing)):
        unknown = sorted(set(mapping) - set(teachers))
        if unknown:
            raise ParameterError(f"{field_name} names {unknown}, which are not among the teachers {teachers}")
    for name, path in checkpoints.items():
        if not Path(path).is_file():
            raise ParameterError(f"teacher_weights: the file of {name!r}, {path!r}, does not exist; give the path of "
                                 "its weights as its release ships them (e.g. checkpoint_teacher.pth)")
    for name, recipe in preprocessing.items():
        if recipe not in PREPROCESSING:
            raise ParameterError(f"preprocessing of {name!r}: unknown recipe {recipe!r}; "
                                 f"known: {sorted(PREPROCESSING)}")


def build_teachers(names: list[str], weights: dict[str, str] | None = None,
                   preprocessing: dict[str, str | Preprocessing] | None = None, device=None,
                   pretrained: bool = True) -> dict[str, Teacher]:
    """The teachers of a run, by name and in order: each from its release weight file (``weights``: name -> path)
    when given, fed by its ``preprocessing`` recipe when given, frozen, on ``device`` (None: where built).

    The one way every stage (02 to 06) and the command line build their teachers; ``create_teacher`` builds one."""
    weights, preprocessing = weights or {}, preprocessing or {}
    teachers = {}
    for name in names:
        teacher = create_teacher(name, pretrained=pretrained, checkpoint=weights.get(name),
                                 preprocessing=preprocessing.get(name))
        teachers[name] = teacher if device is None else teacher.to(device)
    return teachers
