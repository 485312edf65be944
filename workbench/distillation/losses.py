"""Distillation loss and teacher dropping (UNIC, Sec. 3.1 and 3.4).

Per teacher and token type the loss is ``0.5 * (1 - cos) + 0.5 * smooth_l1(beta=1)`` (smooth-L1
averaged over dimensions, patch loss averaged over tokens); the CLS and patch terms are averaged.
That gives one loss per (teacher, image). Teacher dropping then keeps, for every image, the teacher
with the highest loss and drops every other teacher with probability ``p``: the student stops
over-fitting the teachers it already matches and spends its capacity on the one it matches worst.
Coefficients are normalized over the active (teacher, image) pairs and detached.

Distributed (``ranks`` of ``workbench.core.distributed``): every rank draws the dropping randomness of the
whole global batch from the same generator and keeps its own columns (rank r holds global images r,
r + N, ...), and the coefficients are normalized over the active pairs of every rank, so N ranks
make the same decisions and the same gradient as one process with the global batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B,) or (B, N, D) -> (B,): cosine + smooth-L1, averaged over tokens."""
    cos = 1 - F.cosine_similarity(pred, target, dim=-1)
    sl1 = F.smooth_l1_loss(pred, target, reduction="none", beta=1.0).mean(-1)
    loss = 0.5 * cos + 0.5 * sl1
    return loss.mean(dim=1) if loss.ndim == 2 else loss


def teacher_losses(preds: dict, targets: dict) -> torch.Tensor:
    """{teacher: (cls, patch)} predictions and targets -> (T, B) loss per teacher and image."""
    rows = []
    for t in preds:
        (cls_p, patch_p), (cls_t, patch_t) = preds[t], targets[t]
        rows.append(0.5 * (feature_loss(cls_p, cls_t) + feature_loss(patch_p, patch_t)))
    return torch.stack(rows)


@torch.no_grad()
def teacher_keep(losses: torch.Tensor, drop_p: float, generator: torch.Generator | None = None,
                 ranks=None) -> torch.Tensor:
    """(T, B) losses -> (T, B) bool mask of the kept (teacher, image) pairs.

    Vectorised: the highest-loss teacher of each image is always kept; each other one is kept with
    probability ``1 - drop_p``. ``drop_p=0`` (and evaluation) keeps every pair.
    """
    rank, size = (ranks.rank, ranks.size) if ranks is not None else (0, 1)
    t, b = losses.shape
    draws = torch.rand((t, b * size), generator=generator, device="cpu")[:, rank::size]  # this rank's columns
    keep = draws.to(losses.device) >= drop_p
    keep.scatter_(0, losses.argmax(dim=0, keepdim=True), True)
    return keep


@torch.no_grad()
def teacher_coefficients(losses: torch.Tensor, drop_p: float, generator: torch.Generator | None = None,
                         ranks=None) -> torch.Tensor:
    """(T, B) losses -> (T, B) coefficients that sum to 1 over the active (teacher, image) pairs (of every rank)."""
    coeffs = teacher_keep(losses, drop_p, generator, ranks).to(losses.dtype)
    total = coeffs.sum()
    if ranks is not None and ranks.size > 1:
        total = ranks.all_sum(total.clone())
    return coeffs / total


def distillation_loss(losses: torch.Tensor, drop_p: float, generator: torch.Generator | None = None, ranks=None):
    """Total loss and the coefficients used; per-teacher alpha = ``coeffs.sum(1)`` (its share of the loss).

    With ``ranks`` the loss is this rank's part of the global loss times N: DistributedDataParallel
    averages the gradients of the N ranks, which gives the gradient of the global loss."""
    coeffs = teacher_coefficients(losses, drop_p, generator, ranks)
    loss = (coeffs * losses).sum()
    return (loss * ranks.size if ranks is not None else loss), coeffs
