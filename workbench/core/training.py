"""What every training loop of the workbench shares: one optimizer recipe, one learning-rate schedule, and
what a loss that is no longer finite raises.

    opt = configure_optimizer(model, lr=2e-3, weight_decay=0.05)
    for step in range(total):
        set_lr(opt, get_lr(step, total, lr=2e-3, warmup_frac=0.1))
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: training stops, saying where and what to change."""


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices (ndim >= 2), none on vectors and scalars (biases, norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def configure_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)


def get_lr(step: int, total: int, lr: float, warmup_frac: float, min_lr: float = 0.0) -> float:
    """Linear warm-up over the first ``warmup_frac`` of the steps (at least one), then cosine to ``min_lr``."""
    warmup = max(1, int(warmup_frac * total))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
