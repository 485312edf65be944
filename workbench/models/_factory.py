"""``create_teacher(name, pretrained=..., checkpoint=...)``: a registered teacher or any timm model, frozen.

Registered names (the offline specialists, the zoo) are looked up in ``_registry``; any other name must
be a timm model, whose weights come from the local Hugging Face cache or a checkpoint file.
"""
from __future__ import annotations

import timm

from ..core.params import ParameterError
from ._registry import is_registered, list_teachers, teacher_builder
from .teachers import Teacher, TimmTeacher
from .weights import create_timm_model, load_timm_checkpoint


def create_teacher(name: str, pretrained: bool = True, checkpoint: str | None = None) -> Teacher:
    """Build a teacher by registry name, or any timm model name; returns it frozen and in eval mode."""
    if is_registered(name):
        teacher = teacher_builder(name)(pretrained=pretrained, checkpoint=checkpoint)
    else:
        check_teacher_names([name])
        if checkpoint is not None:
            model = timm.create_model(name, pretrained=False, num_classes=0)
            load_timm_checkpoint(model, checkpoint, name)
        else:
            model = create_timm_model(name, pretrained)
        teacher = TimmTeacher(name, model)
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
