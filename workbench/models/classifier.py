"""A student classifier: a student encoder with a linear head on its final CLS token.

One concept, the model every supervised student of the workbench is (05's students, 06's): it lives beside the
students because it is one, with a task head; the stages build it here and train it with
``workbench.models.supervised``. Its weights are ``student.*`` (the encoder, which ``load_student`` reads back once
saved on its own) and ``head.*``.

    model = make_classifier("wb_vitc_tiny_patch8_32", "random", n_classes=6)
    model = make_classifier("wb_vitc_tiny_patch8_32", "runs/03_distill/checkpoint", n_classes=36)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .students import Student, load_student


class StudentClassifier(nn.Module):
    """The student encoder with a linear head on its final CLS token."""

    def __init__(self, student: Student, n_classes: int):
        super().__init__()
        self.student, self.head = student, nn.Linear(student.embed_dim, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.student.forward_features(images)[0])


def make_classifier(student: str, init: str, n_classes: int) -> StudentClassifier:
    """Random initialisation (``init="random"``), or the encoder of a 03 checkpoint or a released UNIC file (a
    fresh head either way)."""
    if init == "random":
        return StudentClassifier(Student(student), n_classes)
    encoder = load_student(init)
    if encoder.name != student:
        raise ValueError(f"student_init {init!r} holds a {encoder.name!r} student but student={student!r}; "
                         f"set student={encoder.name!r}")
    return StudentClassifier(encoder.train(), n_classes)
