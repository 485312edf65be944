"""What every training loop of the workbench shares: one optimizer recipe, one learning-rate schedule, and
what a loss that is no longer finite raises.

    opt = configure_optimizer(model, lr=2e-3, weight_decay=0.05)
    for step in range(total):
        set_lr(opt, get_lr(step, total, lr=2e-3, warmup=warmup_steps))

Both follow the official UNIC (and DINO) code: weight decay on weight matrices only, and a linear warm-up
from 0 followed by a cosine to ``min_lr``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .errors import NonFiniteLoss  # noqa: F401  (raised here, defined with the workbench's other errors)


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """The parameters that modules list in ``no_weight_decay()`` (timm's convention: a ViT's position embedding
    and tokens, the ladder's biases), as full names."""
    names = set()
    for prefix, module in model.named_modules():
        if hasattr(module, "no_weight_decay") and callable(module.no_weight_decay):
            names |= {f"{prefix}.{n}" if prefix else n for n in module.no_weight_decay()}
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups by role: weight decay on weight matrices; none on biases, norms and layer scales (vectors),
    position embeddings and tokens, whatever their shape."""
    skip = no_weight_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        listed = name in skip or any(name.startswith(s + ".") for s in skip)
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or listed else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def configure_optimizer(model: nn.Module, lr: float, weight_decay: float,
                        betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas))


def get_lr(step: int, total: int, lr: float, warmup: int, min_lr: float = 0.0) -> float:
    """A linear warm-up from 0 to ``lr`` over the first ``warmup`` steps, then a cosine from ``lr`` to ``min_lr``
    over the rest (the official schedule: ``np.linspace(0, lr, warmup)``, then the cosine)."""
    if step < warmup:
        return lr * step / max(warmup - 1, 1)
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
