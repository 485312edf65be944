"""The teachers of task-specific distillation: a frozen encoder probed on the task, or fine-tuned on it.

The probed teacher is the good practice with few labels: the tuned linear probe of 02
(``workbench.probing.fit_linear_probe``) on the teacher's frozen features, its weight decay chosen by
held-out cross-entropy rather than accuracy, since the scale of its logits is what a student learns.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.device import autocast_for
from ...core.training import configure_optimizer, get_lr, set_lr
from ...models import Teacher
from ...probing import FEW_SHOT_WEIGHT_DECAY, WEIGHT_DECAYS, encode_images, fit_linear_probe
from .config import TaskDistillConfig
from .data import Labelled, augment

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
                     seed: int) -> TeacherClassifier:
    """The teacher fine-tuned end to end with a new linear head on the labelled images (a short schedule)."""
    torch.manual_seed(seed)
    model = TeacherClassifier(copy.deepcopy(teacher), nn.Linear(teacher.embed_dim, n_classes)).to(device)
    model.requires_grad_(True).train()
    opt = configure_optimizer(model, cfg.finetune_lr, cfg.weight_decay)
    gen, amp = torch.Generator().manual_seed(seed), autocast_for(device)
    batches = labelled.batches(cfg.labelled_batch, gen)
    for step in range(cfg.finetune_steps):
        set_lr(opt, get_lr(step, cfg.finetune_steps, cfg.finetune_lr, int(cfg.warmup_frac * cfg.finetune_steps)))
        x, y = next(batches)
        with amp:
            logits = model(augment(x, gen).to(device))
        loss = F.cross_entropy(logits.float(), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.requires_grad_(False).eval()
