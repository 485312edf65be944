"""Knowledge distillation of a classifier's predictions (Hinton et al., 2015), and image mixing.

The student matches the teacher's class distribution softened by a temperature T:

    loss = (1 - a) * CE(student(x_labelled), y) + a * T^2 * KL(softmax(t / T) || softmax(s / T))

The KL term needs no label, so it is computed on every distillation image: the labelled ones and any
unlabelled or generated ones. The T^2 factor keeps the gradient of the soft term on the same scale as
the hard term when T changes (the soft gradients scale as 1 / T^2), so ``a`` means the same at any T.

Mixing (mixup, Zhang et al. 2018, used for distillation as "function matching" by Beyer et al. 2022):
each distillation image is blended with another one of the batch, ``lam * x_i + (1 - lam) * x_j``, and
the teacher labels the blend; the student learns the teacher's function between images, not only at them.

``TaskObjective`` is a student's step of 05 for the shared loop (``workbench.models.supervised``): its
distillation images and its loss.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.precision import autocast
from ...data.labelled import augment


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


class TaskLoss(NamedTuple):
    total: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor


def task_distillation_loss(labelled_logits: torch.Tensor, labels: torch.Tensor, student_logits: torch.Tensor | None,
                           teacher_logits: torch.Tensor | None, kd_weight: float, temperature: float) -> TaskLoss:
    """(1 - a) * CE on the labelled images + a * KD on the distillation images (``a = kd_weight``).

    Without a teacher (``teacher_logits=None``) this is plain supervised training; with ``kd_weight = 1``
    the labels are not used at all.
    """
    ce = F.cross_entropy(labelled_logits.float(), labels)
    if teacher_logits is None:
        return TaskLoss(ce, ce.detach(), torch.zeros((), device=ce.device))
    kd = kd_loss(student_logits, teacher_logits, temperature)
    return TaskLoss((1 - kd_weight) * ce + kd_weight * kd, ce.detach(), kd.detach())


class Mixed(NamedTuple):
    images: torch.Tensor  # (B, ...) blends
    lam: torch.Tensor  # (B,) weight of the image itself
    partner: torch.Tensor  # (B,) index of the image it is blended with


def mix_images(images: torch.Tensor, concentration: float, rng: np.random.Generator) -> Mixed:
    """Blend every image with a random other image of the batch: ``lam * x_i + (1 - lam) * x_partner(i)``.

    ``lam ~ Beta(c, c)`` per image (c = 1: uniform; small c: mostly near-copies; large c: near 50/50).
    Partners form a random permutation without fixed points (an image is paired with itself only in a
    batch of one), drawn from ``rng`` like ``lam``: a seeded run blends the same way every time.
    """
    if concentration <= 0:
        raise ValueError(f"mixing concentration must be > 0, got {concentration} (0 means: do not mix)")
    n = images.shape[0]
    lam = torch.from_numpy(rng.beta(concentration, concentration, size=n)).to(images.device, torch.float32)
    if n > 1:  # a cyclic shift of a random order: every image gets a partner other than itself
        order = torch.from_numpy(rng.permutation(n))
        partner = torch.empty(n, dtype=torch.long)
        partner[order] = order.roll(1)
    else:
        partner = torch.zeros(1, dtype=torch.long)
    partner = partner.to(images.device)
    shape = (n,) + (1,) * (images.ndim - 1)
    blended = lam.view(shape) * images + (1 - lam.view(shape)) * images[partner]
    return Mixed(blended.to(images.dtype), lam, partner)


@dataclass
class TaskObjective:
    """A student of 05 in ``workbench.models.train_classifier``: the labelled images, the ``extra`` ones (augmented)
    where there is a ``teacher``, blended with each other with ``mix`` (the Beta concentration; None: unmixed), and
    ``task_distillation_loss`` (no teacher: cross-entropy only)."""

    teacher: nn.Module | None
    extra: Iterator[torch.Tensor] | None
    kd_weight: float
    temperature: float
    mix: float | None
    device: torch.device
    precision: str = "fp32"  # of the teacher's forward, as the student's

    def draw(self, x: torch.Tensor, gen: torch.Generator, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """(the student's images, the teacher's): unmixed, both the distillation images, the labelled ones first;
        mixed, the labelled images then the blends, and the blends."""
        kd_images = x
        if self.teacher is not None and self.extra is not None:
            kd_images = torch.cat([x, augment(next(self.extra), gen)])
        if self.mix is None:
            return kd_images, kd_images
        kd_images = mix_images(kd_images, self.mix, rng).images
        return torch.cat([x, kd_images]), kd_images

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, kd_images: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher_logits = None
        if self.teacher is not None:
            with torch.inference_mode(), autocast(self.precision, self.device):
                teacher_logits = self.teacher(kd_images.to(self.device, non_blocking=True)).float()
            teacher_logits = teacher_logits.clone()  # inference tensors cannot enter autograd
        n = len(labels)
        loss = task_distillation_loss(logits[:n], labels, logits[n:] if self.mix is not None else logits,
                                      teacher_logits, self.kd_weight, self.temperature)
        return {"loss": loss.total, "ce": loss.ce, "kd": loss.kd}
