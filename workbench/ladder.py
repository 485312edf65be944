"""Ladder of expendable projectors (UNIC, Sec. 3.3).

For every teacher there are two stacks, one for the CLS token and one for the patch tokens. A stack
holds one 2-layer MLP (Linear, GELU, Linear) per selected student block; the MLP outputs are summed
to predict the teacher's (standardized) features. Intermediate blocks thus receive a direct signal,
which lets the student keep the lower-level information some teachers carry. Hidden width is the
student width, 4x for the last block. ``blocks=[depth - 1]`` is the plain "last block only" baseline.
All projectors are dropped after training: only the student encoder is kept.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))


def select_blocks(ladder: str | list[int], depth: int) -> list[int]:
    """``"all"`` -> every block, ``"last"`` -> the last one, or an explicit list of block indices."""
    if ladder == "all":
        return list(range(depth))
    if ladder == "last":
        return [depth - 1]
    if isinstance(ladder, str):
        raise ValueError(f"ladder must be 'all', 'last' or a list of block indices, got {ladder!r}")
    blocks = sorted({int(b) % depth if int(b) < 0 else int(b) for b in ladder})
    if not blocks or blocks[-1] >= depth:
        raise ValueError(f"ladder blocks {list(ladder)} out of range for a student of depth {depth}")
    return blocks


class ProjectorStack(nn.Module):
    """Sum of one MLP per selected block: predicts one teacher's tokens of one type."""

    def __init__(self, dim_in: int, dim_out: int, blocks: list[int], depth: int):
        super().__init__()
        self.blocks = blocks
        self.mlps = nn.ModuleList(mlp(dim_in, dim_in * (4 if b == depth - 1 else 1), dim_out) for b in blocks)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, per_block: list[torch.Tensor]) -> torch.Tensor:
        return sum(m(per_block[b]) for b, m in zip(self.blocks, self.mlps))


def resize_tokens(tokens: torch.Tensor, grid: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resample (B, h*w, D) patch tokens from ``grid`` to ``target`` (e.g. patch 16 -> 14)."""
    if tuple(grid) == tuple(target):
        return tokens
    b, n, d = tokens.shape
    x = tokens.transpose(1, 2).reshape(b, d, *grid)
    x = F.interpolate(x, size=tuple(target), mode="bilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2)


class Ladder(nn.Module):
    """One CLS stack and one patch stack per teacher."""

    def __init__(self, student_dim: int, depth: int, teacher_dims: dict[str, int], blocks: list[int]):
        super().__init__()
        self.blocks = blocks
        self.cls = nn.ModuleDict({t: ProjectorStack(student_dim, d, blocks, depth) for t, d in teacher_dims.items()})
        self.patch = nn.ModuleDict({t: ProjectorStack(student_dim, d, blocks, depth) for t, d in teacher_dims.items()})

    def forward(self, outputs, student_grid, teacher_grids: dict[str, tuple[int, int]]):
        """Student per-block (cls, patch) -> {teacher: (cls_pred (B, D_t), patch_pred (B, N_t, D_t))}."""
        cls_tokens = [c for c, _ in outputs]
        patch_tokens = [p for _, p in outputs]
        preds = {}
        for t in self.cls:
            patch = resize_tokens(self.patch[t](patch_tokens), student_grid, teacher_grids[t])
            preds[t] = (self.cls[t](cls_tokens), patch)
        return preds
