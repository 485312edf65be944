"""The teachers of task-specific distillation: a frozen encoder probed on the task, or fine-tuned on it.

The probed teacher is the good practice with few labels: the tuned linear probe of 02
(``workbench.probing.fit_linear_probe``) on the teacher's frozen features, its weight decay chosen by
held-out cross-entropy rather than accuracy, since the scale of its logits is what a student learns.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ...data.labelled import Labelled
from ...models import Teacher, train_classifier
from ...probing import FEW_SHOT_WEIGHT_DECAY, WEIGHT_DECAYS, encode_images, fit_linear_probe
from .config import TaskDistillConfig

# The probe's weight decay sets the scale of its logits, so it is chosen by held-out cross-entropy; every
# other decay of the probing grid is enough with a few labelled images (and twice as fast).
PROBE_WEIGHT_DECAYS = WEIGHT_DECAYS[::2]


class TeacherClassifier(nn.Module):
    """A teacher encoder with a linear head on its pooled feature: logits for the task."""

    def __init__(self, teacher: Teacher, head: nn.Module):
        super().__init__()
        self.teacher, self.head = teacher, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.teacher(images).cls)


def probe_teacher(teacher: Teacher, labelled: Labelled, n_classes: int, device,
                  seed: int) -> tuple[TeacherClassifier, dict]:
    """The probed teacher: frozen encoder + the tuned linear probe of ``workbench.probing`` on its features.

    With too few labelled images to hold any out (under 3 per class), the weight decay is that of 02's
    few-shot probes and ``info["val_top1"]`` is None.
    """
    features = encode_images(lambda x: teacher(x).cls, labelled.pixels, device)
    try:
        probe, info = fit_linear_probe(features, labelled.labels, n_classes, seed=seed,
                                       weight_decays=PROBE_WEIGHT_DECAYS, select="log_loss")
    except ValueError:  # nothing to hold out
        probe, info = fit_linear_probe(features, labelled.labels, n_classes, weight_decay=FEW_SHOT_WEIGHT_DECAY)
    return TeacherClassifier(teacher, probe.to(device)).eval(), info


def finetune_teacher(teacher: Teacher, labelled: Labelled, n_classes: int, cfg: TaskDistillConfig, device,
                     seed: int, precision: str = "fp32") -> TeacherClassifier:
    """The teacher fine-tuned end to end with a new linear head on the labelled images (a short schedule, no
    clipping): the loop of every student classifier, on a copy of the teacher."""
    def build() -> TeacherClassifier:
        return TeacherClassifier(copy.deepcopy(teacher), nn.Linear(teacher.embed_dim, n_classes)).requires_grad_(True)

    model = train_classifier(build=build, labelled=labelled, batch_size=cfg.labelled_batch, steps=cfg.finetune_steps,
                             lr=cfg.finetune_lr, seed=seed, device=device, weight_decay=cfg.weight_decay,
                             warmup_frac=cfg.warmup_frac, grad_clip=0, name="fine-tuned teacher", precision=precision)
    return model.requires_grad_(False).eval()
