"""The UNIC model: the student, its ladder of expendable projectors, and the teachers' standardizers.

The forward half of a training step reads top to bottom in ``distill_forward``: the teachers encode the batch
without autograd; their CLS and patch features are standardized with running statistics; the student's blocks
feed the ladder, whose predictions meet the targets in the per-(teacher, image) loss; teacher dropping weighs
those losses into the one that is minimised (the backward half and the update are the training loop's).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..layers.ladder import make_ladder, select_blocks
from ..layers.standardize import make_standardizer
from ..models import Student, Teacher
from .losses import distillation_loss, teacher_losses


class UNIC(nn.Module):
    """Student encoder + expendable ladder + per-teacher, per-token-type standardizers."""

    def __init__(self, student: Student, teacher_dims: dict[str, int], teacher_grids: dict[str, tuple[int, int]],
                 ladder: str | list[int] = "all", standardize: str = "running", fused_ladder: bool = True):
        super().__init__()
        self.student = student
        self.teacher_grids = dict(teacher_grids)
        self.ladder = make_ladder(student.embed_dim, student.depth, teacher_dims, select_blocks(ladder, student.depth),
                                  fused=fused_ladder)
        self.std_cls = nn.ModuleDict({t: make_standardizer(standardize, d) for t, d in teacher_dims.items()})
        self.std_patch = nn.ModuleDict({t: make_standardizer(standardize, d) for t, d in teacher_dims.items()})

    def forward(self, images):
        return self.ladder(self.student(images), self.student.grid, self.teacher_grids)

    @torch.no_grad()
    def targets(self, teacher_feats: dict, update_weight: float | None, all_sum: Callable | None = None):
        """Standardize teacher features by the running statistics so far; when training (``update_weight``), the
        batch then moves them (over every rank's batch with ``all_sum``, the sum over ranks)."""
        out = {}
        for t, f in teacher_feats.items():
            out[t] = (self.std_cls[t](f.cls.float()), self.std_patch[t](f.patch.float()))
            if update_weight is not None:
                self.std_cls[t].update(f.cls, update_weight, all_sum)
                self.std_patch[t].update(f.patch, update_weight, all_sum)
        return out


def teacher_feature_shapes(teachers: dict[str, Teacher], images: torch.Tensor) -> tuple[dict, dict]:
    with torch.inference_mode():
        feats = {t: m(images) for t, m in teachers.items()}
    return {t: f.cls.shape[-1] for t, f in feats.items()}, {t: f.grid for t, f in feats.items()}


def distill_forward(model: UNIC, teachers: dict[str, Teacher], images: torch.Tensor, stats_weight: float,
                 drop_p: float, generator: torch.Generator | None, amp, ranks=None, forward=None):
    """Forward half of one training step: returns the loss, the (T, B) losses and the coefficients.

    Distributed: ``ranks`` (``workbench.core.distributed.ProcessGroup``) and ``forward``, the model wrapped in
    DistributedDataParallel (its gradients are averaged over the ranks)."""
    with torch.inference_mode(), amp:  # teachers never build autograd state
        feats = {t: m(images) for t, m in teachers.items()}
    targets = model.targets(feats, update_weight=stats_weight, all_sum=ranks.all_sum if ranks else None)
    with amp:
        preds = (forward or model)(images)
    losses = teacher_losses(preds, targets)  # (T, B), float32
    loss, coeffs = distillation_loss(losses, drop_p, generator, ranks)
    return loss, losses, coeffs
