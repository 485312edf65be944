"""Ladder of expendable projectors (UNIC, Sec. 3.3).

For every teacher there are two stacks, one for the CLS token and one for the patch tokens. A stack
holds one 2-layer MLP (Linear, GELU, Linear) per selected student block; the MLP outputs are summed
to predict the teacher's (standardized) features. Intermediate blocks thus receive a direct signal,
which lets the student keep the lower-level information some teachers carry. Hidden width is the
student width, 4x for the last block. ``blocks=[depth - 1]`` is the plain "last block only" baseline.
All projectors are dropped after training: only the student encoder is kept.

Two implementations of the same function, with interchangeable weights:

- ``Ladder``: one ``nn.Sequential`` MLP per block, teacher and token type, as the paper draws it
  (readable; the reference);
- ``FusedLadder`` (the default for training): the same MLPs as a few batched matrix products. The first
  layers of every block that shares a hidden width are one ``baddbmm`` over the stacked block
  outputs, with all teachers' hidden units side by side; the second layers and the sum over blocks
  are one product per group of teachers of equal width, whose inner dimension runs over
  (block, hidden unit), so the sum is done inside the matrix product. For a 12-block student and two
  teachers of equal width the forward pass makes 8 matrix products instead of 96 ``Linear`` calls
  (36 operations in all instead of 316, and 120 instead of 638 backward): on a GPU that is a handful
  of large kernels instead of hundreds of small ones. On a CPU the arithmetic, the same in both,
  dominates at real sizes, and the two run at about the same speed.

``FusedLadder.load_state_dict`` also accepts a ``Ladder`` state dict (and ``Ladder`` a fused one), so
checkpoints load into either.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))


def hidden_width(block: int, depth: int, dim: int) -> int:
    """The student width; 4x for the last block (whose features are the ones kept)."""
    return dim * (4 if block == depth - 1 else 1)


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


def resize_tokens(tokens: torch.Tensor, grid: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resample (B, h*w, D) patch tokens from ``grid`` to ``target`` (e.g. patch 16 -> 14)."""
    if tuple(grid) == tuple(target):
        return tokens
    b, n, d = tokens.shape
    x = tokens.transpose(1, 2).reshape(b, d, *grid)
    x = F.interpolate(x, size=tuple(target), mode="bilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2)


def _init_(tensors) -> None:
    for t in tensors:
        if t.ndim >= 2 and t.shape[-1] > 0:
            nn.init.trunc_normal_(t, std=0.02)
        else:
            nn.init.zeros_(t)


# ----------------------------------------------------------------------------- per-block MLPs (reference)

class ProjectorStack(nn.Module):
    """Sum of one MLP per selected block: predicts one teacher's tokens of one type."""

    def __init__(self, dim_in: int, dim_out: int, blocks: list[int], depth: int):
        super().__init__()
        self.blocks = blocks
        self.mlps = nn.ModuleList(mlp(dim_in, hidden_width(b, depth, dim_in), dim_out) for b in blocks)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _init_([m.weight, m.bias])

    def forward(self, per_block: list[torch.Tensor]) -> torch.Tensor:
        return sum(m(per_block[b]) for b, m in zip(self.blocks, self.mlps))


class Ladder(nn.Module):
    """One CLS stack and one patch stack per teacher: one small MLP call per block, teacher and token type."""

    def __init__(self, student_dim: int, depth: int, teacher_dims: dict[str, int], blocks: list[int]):
        super().__init__()
        self.student_dim, self.depth, self.teacher_dims, self.blocks = student_dim, depth, dict(teacher_dims), blocks
        self.cls = nn.ModuleDict({t: ProjectorStack(student_dim, d, blocks, depth) for t, d in teacher_dims.items()})
        self.patch = nn.ModuleDict({t: ProjectorStack(student_dim, d, blocks, depth) for t, d in teacher_dims.items()})
        self.register_load_state_dict_pre_hook(_accept_other_layout)

    def forward(self, outputs, student_grid, teacher_grids: dict[str, tuple[int, int]]):
        """Student per-block (cls, patch) -> {teacher: (cls_pred (B, D_t), patch_pred (B, N_t, D_t))}."""
        cls_tokens = [c for c, _ in outputs]
        patch_tokens = [p for _, p in outputs]
        preds = {}
        for t in self.cls:
            patch = resize_tokens(self.patch[t](patch_tokens), student_grid, teacher_grids[t])
            preds[t] = (self.cls[t](cls_tokens), patch)
        return preds


# ----------------------------------------------------------------------------- batched matrix products

class FusedProjectors(nn.Module):
    """Every teacher's projector stack for one token type, as batched matrix products.

    Parameters (``G`` blocks in a hidden-width group, ``h`` that width, ``T`` teachers, ``D`` the
    student width):

    - ``w1.<g>`` (G, D, T*h), ``b1.<g>`` (G, 1, T*h): first layers of the group's blocks, teachers'
      hidden units side by side (in ``self.order``);
    - ``w2.<g>_<s>`` (T_s, G*h, D_s): second layers of the ``T_s`` teachers of width ``D_s``, rows
      running over (block, hidden unit): ``hidden @ w2`` is the sum over the group's blocks;
    - ``b2.<s>`` (T_s, n_blocks, D_s): the second layers' biases, one per block as in ``Ladder``
      (summed in the forward pass), so both layouts train identically under any optimizer.
    """

    def __init__(self, dim_in: int, teacher_dims: dict[str, int], blocks: list[int], depth: int):
        super().__init__()
        self.dim_in, self.blocks = dim_in, list(blocks)
        widths = sorted({hidden_width(b, depth, dim_in) for b in blocks})
        self.groups = [(h, [i for i, b in enumerate(blocks) if hidden_width(b, depth, dim_in) == h]) for h in widths]
        dims = sorted(set(teacher_dims.values()), key=list(teacher_dims.values()).index)
        self.teacher_groups = [(d, [t for t, dt in teacher_dims.items() if dt == d]) for d in dims]
        self.order = [t for _, ts in self.teacher_groups for t in ts]  # teachers' column order in w1
        n_teachers = len(self.order)
        self.w1 = nn.ParameterDict({str(g): nn.Parameter(torch.empty(len(ix), dim_in, n_teachers * h))
                                    for g, (h, ix) in enumerate(self.groups)})
        self.b1 = nn.ParameterDict({str(g): nn.Parameter(torch.empty(len(ix), 1, n_teachers * h))
                                    for g, (h, ix) in enumerate(self.groups)})
        self.w2 = nn.ParameterDict({f"{g}_{s}": nn.Parameter(torch.empty(len(ts), len(ix) * h, d))
                                    for g, (h, ix) in enumerate(self.groups)
                                    for s, (d, ts) in enumerate(self.teacher_groups)})
        self.b2 = nn.ParameterDict({str(s): nn.Parameter(torch.empty(len(ts), len(blocks), d))
                                    for s, (d, ts) in enumerate(self.teacher_groups)})
        _init_(self.parameters())

    def no_weight_decay(self) -> set[str]:
        """The biases, stored as 3-D tensors here: by role, never decayed (``workbench.core.training``)."""
        return {"b1", "b2"}

    def forward(self, per_block: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tokens (..., D) of every student block -> {teacher: (..., D_t)}."""
        lead = per_block[self.blocks[0]].shape[:-1]
        outs = [self.b2[str(s)].sum(1, keepdim=True) for s in range(len(self.teacher_groups))]  # (T_s, 1, D_s)
        for g, (h, ix) in enumerate(self.groups):
            x = torch.stack([per_block[self.blocks[i]] for i in ix]).reshape(len(ix), -1, self.dim_in)  # (G, M, D)
            hidden = F.gelu(torch.baddbmm(self.b1[str(g)], x, self.w1[str(g)]))  # (G, M, T*h)
            hidden = hidden.unflatten(-1, (len(self.order), h))  # (G, M, T, h)
            start = 0
            for s, (_, ts) in enumerate(self.teacher_groups):
                mine = hidden[:, :, start:start + len(ts)].permute(2, 1, 0, 3).flatten(2)  # (T_s, M, G*h)
                outs[s] = torch.baddbmm(outs[s], mine, self.w2[f"{g}_{s}"])  # + sum over the group's blocks
                start += len(ts)
        preds = {}
        for (_, ts), out in zip(self.teacher_groups, outs):
            for t, o in zip(ts, out):
                preds[t] = o.reshape(*lead, o.shape[-1])
        return preds

    # -- the same weights in the per-block layout (``ProjectorStack.mlps[i]`` = block ``blocks[i]``)

    def _places(self):
        """For each teacher t, block index i and hidden group: where its weights sit in both layouts."""
        for g, (h, ix) in enumerate(self.groups):
            for s, (_, ts) in enumerate(self.teacher_groups):
                for r, t in enumerate(ts):
                    col = self.order.index(t) * h
                    for j, i in enumerate(ix):
                        yield t, i, g, s, r, j, col, h

    def from_stacks(self, stacks: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Per-teacher ``ProjectorStack`` state dicts -> this module's state dict (tensors copied)."""
        out = {name: torch.empty_like(p) for name, p in self.named_parameters()}
        for t, i, g, s, r, j, col, h in self._places():
            st = stacks[t]
            out[f"w1.{g}"][j, :, col:col + h] = st[f"mlps.{i}.0.weight"].t()
            out[f"b1.{g}"][j, 0, col:col + h] = st[f"mlps.{i}.0.bias"]
            out[f"w2.{g}_{s}"][r, j * h:(j + 1) * h] = st[f"mlps.{i}.2.weight"].t()
            out[f"b2.{s}"][r, i] = st[f"mlps.{i}.2.bias"]
        return out

    def to_stacks(self, state: dict[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """This module's state dict (default: its own parameters) -> per-teacher ``ProjectorStack`` state dicts."""
        state = state if state is not None else {n: p.detach() for n, p in self.named_parameters()}
        stacks: dict[str, dict[str, torch.Tensor]] = {t: {} for t in self.order}
        for t, i, g, s, r, j, col, h in self._places():
            stacks[t][f"mlps.{i}.0.weight"] = state[f"w1.{g}"][j, :, col:col + h].t().contiguous()
            stacks[t][f"mlps.{i}.0.bias"] = state[f"b1.{g}"][j, 0, col:col + h].clone()
            stacks[t][f"mlps.{i}.2.weight"] = state[f"w2.{g}_{s}"][r, j * h:(j + 1) * h].t().contiguous()
            stacks[t][f"mlps.{i}.2.bias"] = state[f"b2.{s}"][r, i].clone()
        return stacks


class FusedLadder(nn.Module):
    """``Ladder`` computed as batched matrix products: same function, same parameters, fewer and larger kernels."""

    def __init__(self, student_dim: int, depth: int, teacher_dims: dict[str, int], blocks: list[int]):
        super().__init__()
        self.student_dim, self.depth, self.teacher_dims, self.blocks = student_dim, depth, dict(teacher_dims), blocks
        self.cls = FusedProjectors(student_dim, teacher_dims, blocks, depth)
        self.patch = FusedProjectors(student_dim, teacher_dims, blocks, depth)
        self.register_load_state_dict_pre_hook(_accept_other_layout)

    def forward(self, outputs, student_grid, teacher_grids: dict[str, tuple[int, int]]):
        """Student per-block (cls, patch) -> {teacher: (cls_pred (B, D_t), patch_pred (B, N_t, D_t))}."""
        cls = self.cls([c for c, _ in outputs])
        patch = self.patch([p for _, p in outputs])
        return {t: (cls[t], resize_tokens(patch[t], student_grid, teacher_grids[t])) for t in self.teacher_dims}

    @classmethod
    def from_ladder(cls, ladder: Ladder) -> FusedLadder:
        fused = cls(ladder.student_dim, ladder.depth, ladder.teacher_dims, ladder.blocks)
        fused.load_state_dict(ladder.state_dict())
        return fused.to(next(ladder.parameters()).device)

    def to_ladder(self) -> Ladder:
        ladder = Ladder(self.student_dim, self.depth, self.teacher_dims, self.blocks)
        ladder.load_state_dict(self.state_dict())
        return ladder.to(next(self.parameters()).device)


def make_ladder(student_dim: int, depth: int, teacher_dims: dict[str, int], blocks: list[int],
                fused: bool = True) -> Ladder | FusedLadder:
    return (FusedLadder if fused else Ladder)(student_dim, depth, teacher_dims, blocks)


def _accept_other_layout(module, state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: convert, in place, a state dict saved by the other ladder layout."""
    kinds = ("cls", "patch")
    per_block_keys = [k for k in state_dict
                      if k.startswith(tuple(f"{prefix}{kind}." for kind in kinds)) and ".mlps." in k]
    fused_keys = [k for k in state_dict if ".mlps." not in k and k.startswith(
        tuple(f"{prefix}{kind}.{p}." for kind in kinds for p in ("w1", "b1", "w2", "b2")))]
    if isinstance(module, FusedLadder) and per_block_keys:
        for kind in kinds:
            proj: FusedProjectors = getattr(module, kind)
            stacks = {t: {k[len(f"{prefix}{kind}.{t}."):]: state_dict.pop(k) for k in per_block_keys
                          if k.startswith(f"{prefix}{kind}.{t}.")} for t in proj.order}
            for name, v in proj.from_stacks(stacks).items():
                state_dict[f"{prefix}{kind}.{name}"] = v
    elif isinstance(module, Ladder) and fused_keys:
        ref = FusedLadder(module.student_dim, module.depth, module.teacher_dims, module.blocks)
        for kind in kinds:
            proj = getattr(ref, kind)
            fused_state = {k[len(f"{prefix}{kind}."):]: state_dict.pop(k) for k in fused_keys
                           if k.startswith(f"{prefix}{kind}.")}
            for t, st in proj.to_stacks(fused_state).items():
                for name, v in st.items():
                    state_dict[f"{prefix}{kind}.{t}.{name}"] = v
