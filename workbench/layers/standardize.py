"""Teacher feature standardization (UNIC, Sec. 3.2) and its PHI-S alternative (AM-RADIO).

Teachers disagree wildly in feature scale, so their targets are standardized before the loss.
``RunningStandardizer`` keeps a per-dimension running mean and standard deviation; the weight of the
new batch follows a cosine schedule from 1.0 to 0.001 over training, so early statistics adapt fast
and late ones are nearly frozen. As in the official code, a batch is standardised by the statistics of
the batches before it, then moves them (the first batch meets the initial mean 0 and std 1: it passes
unchanged). ``PhiS`` keeps a running mean and covariance instead and maps features
to ``H U^T (x - mu) / sqrt(mean eigenvalue)``: the eigenbasis rotation followed by a Hadamard
rotation spreads the variance evenly, so every dimension ends with the same variance (the mean
eigenvalue) without amplifying noise directions the way per-dimension scaling does.

One standardizer exists per teacher and token type (CLS / patch). Statistics are buffers, so they
are saved with the checkpoint. In a distributed run ``update`` gets ``all_sum`` (the sum of a tensor
over the ranks) and the batch statistics are those of every rank's rows together: N ranks with
batch B update exactly as one process with batch N*B (up to float rounding).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn


def batch_weight(step: int, total_steps: int, start: float = 1.0, end: float = 1e-3) -> float:
    """Cosine schedule for the weight of the new batch in the running statistics: ``start`` at step 0, towards
    ``end`` at the last step (the official UNIC schedule: progress step / total)."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


class Standardizer(nn.Module):
    """Identity (``standardize='none'``); the base of the two real ones."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def update(self, x: torch.Tensor, weight: float, all_sum: Callable | None = None) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the teachers run under inference_mode, whose tensors autograd may not save: the loss gets a copy, as it
        # gets a new tensor from the real standardizers
        return x.clone() if x.is_inference() else x


def batch_moments(x: torch.Tensor, all_sum: Callable | None = None, outer: bool = False, unbiased: bool = False):
    """Mean and variance per dimension (biased, or ``unbiased``; ``outer``: the uncentred second-moment matrix)
    of every row of (..., D), in float32. With ``all_sum`` (sums a tensor over the ranks, in place) the rows of
    every rank count: each rank's moments, weighted by its row count, are combined in float64."""
    flat = x.reshape(-1, x.shape[-1]).float()
    n, mean = flat.shape[0], flat.mean(0)
    second = flat.t() @ flat / n if outer else flat.var(0, unbiased=False)
    if all_sum is None:
        return mean, second * n / max(n - 1, 1) if unbiased and not outer else second
    raw = second if outer else second + mean.square()  # uncentred, so that ranks add up
    packed = torch.cat([mean.new_tensor([1.0]), mean, raw.flatten()]).double() * n
    packed = all_sum(packed)
    total, d = packed[0], mean.shape[0]
    mean_all, raw_all = packed[1:1 + d] / total, packed[1 + d:].view(raw.shape) / total
    second_all = raw_all if outer else (raw_all - mean_all.square()).clamp_min(0)
    if unbiased and not outer:
        second_all = second_all * total / (total - 1).clamp_min(1)
    return mean_all.float(), second_all.float()


class RunningStandardizer(Standardizer):
    """As the official UNIC code: a running mean and standard deviation (unbiased, plus ``eps``) per
    dimension, moved towards each batch's by ``weight``; features are standardised by the statistics so far."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim)
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def update(self, x, weight, all_sum=None):
        mean, var = batch_moments(x, all_sum, unbiased=True)
        self.mean.lerp_(mean, weight)
        self.std.lerp_(var.sqrt() + self.eps, weight)

    def forward(self, x):
        return (x - self.mean) / (self.std + self.eps)


def hadamard(n: int) -> torch.Tensor:
    """An orthonormal Hadamard matrix (entries +-1/sqrt(n)) for n = 2^k or (q + 1) * 2^k, q prime = 3 mod 4.

    Sylvester's doubling handles powers of two; Paley's first construction gives order q + 1, which
    covers the usual widths (384 = 12 * 32, 768 = 12 * 64, 1280 = 20 * 64, ...).
    """
    h, m = None, n
    while m >= 1:  # strip factors of two until a Paley order (or 1) remains
        if m == 1:
            h = torch.ones(1, 1)
        elif m > 2 and (m - 1) % 4 == 3 and _is_prime(m - 1):
            h = _paley(m - 1)
        if h is not None or m % 2:
            break
        m //= 2
    if h is None:
        raise ValueError(
            f"PHI-S needs a Hadamard matrix of order {n}, which this builder cannot make "
            "(it needs 2^k or (q+1)*2^k with q prime, q = 3 mod 4); use standardize='running'"
        )
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(q**0.5) + 1))


def _paley(q: int) -> torch.Tensor:
    residues = {(i * i) % q for i in range(1, q)}
    chi = torch.tensor([0.0] + [1.0 if i in residues else -1.0 for i in range(1, q)])
    idx = torch.arange(q)
    jacobsthal = chi[(idx[None, :] - idx[:, None]) % q]  # Q[i, j] = chi(j - i), antisymmetric here
    s = torch.zeros(q + 1, q + 1)
    s[0, 1:] = 1.0
    s[1:, 0] = -1.0
    s[1:, 1:] = jacobsthal
    return torch.eye(q + 1) + s


class PhiS(Standardizer):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim)
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("second_moment", torch.eye(dim))
        self.register_buffer("transform", torch.eye(dim))
        self.register_buffer("hadamard", hadamard(dim), persistent=False)

    @torch.no_grad()
    def update(self, x, weight, all_sum=None):
        mean, second = batch_moments(x, all_sum, outer=True)
        self.mean.lerp_(mean, weight)
        self.second_moment.lerp_(second, weight)
        cov = self.second_moment - torch.outer(self.mean, self.mean)
        eigvals, eigvecs = torch.linalg.eigh(cov.double())
        scale = eigvals.clamp_min(0).mean().add(self.eps).rsqrt()
        self.transform.copy_((self.hadamard.double() @ eigvecs.t() * scale).float())

    def forward(self, x):
        return (x - self.mean) @ self.transform.t()


# "phis" is PHI-S, the name its paper gives it (Ranzinger et al., 2024, "PHI-S: Distribution Balancing for
# Label-Free Multi-Teacher Distillation"): a Hadamard rotation that gives every dimension the same variance.
STANDARDIZERS = {"none": Standardizer, "running": RunningStandardizer, "phis": PhiS}


def make_standardizer(kind: str, dim: int) -> Standardizer:
    if kind not in STANDARDIZERS:
        raise ValueError(f"unknown standardize={kind!r}; choose one of {list(STANDARDIZERS)}")
    return STANDARDIZERS[kind](dim)
