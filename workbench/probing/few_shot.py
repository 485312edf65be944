"""Few-shot linear probes (CoG): the linear probe trained on N images per class, over several random draws.

With so few images there is none to hold out for choosing the weight decay: it is fixed, the same for
every few-shot probe of the workbench (02's curves, 04's few-shot tasks, a probed teacher of task
distillation with under 3 labelled images per class).
"""
from __future__ import annotations

import torch

from ..core.stats import seed_stats
from .linear import linear_probe

FEW_SHOT_WEIGHT_DECAY = 1e-3
FEW_SHOT_SEEDS = (0, 1, 2)


def few_shot_indices(y: torch.Tensor, shots: int, seed: int) -> torch.Tensor:
    """``shots`` random training images per class (all of a class when it has fewer)."""
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in y.unique():
        idx = torch.nonzero(y == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:shots]])
    return torch.cat(picks)


def few_shot_probe(train_x, train_y, test_x, test_y, shots=(1, 2, 5, 10), seeds=FEW_SHOT_SEEDS,
                   weight_decay: float = FEW_SHOT_WEIGHT_DECAY) -> dict[int, dict]:
    """CoG-style few-shot linear probes: for each shot count, top-1 of each draw and their spread (``seed_stats``)."""
    out = {}
    for n in shots:
        accs = [linear_probe(train_x[i], train_y[i], test_x, test_y, weight_decay=weight_decay)["top1"]
                for i in (few_shot_indices(train_y, n, s) for s in seeds)]
        out[n] = seed_stats(accs)
    return out
