"""Teachers: frozen encoders behind one interface, created by name from a registry.

A teacher takes RGB images in [0, 1] at the data's resolution, applies its *own* preprocessing
(resize, mean/std), and returns a pooled feature (CLS token, or global pool for CNNs) and its patch
tokens on a grid. The distillation and probing code only ever sees that interface, so the offline
specialists of the built-in world and real timm encoders plug in the same way.

    teacher = create_teacher("world_shape")            # offline specialist (trained once, cached)
    teacher = create_teacher("vit_small_patch16_224")  # any timm model, weights from the local HF cache

This module holds the interface (``Features``, ``Teacher``) and the timm wrapper; the registry of names
is ``workbench.models._registry`` and ``create_teacher`` is in ``workbench.models._factory``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..layers.attention import use_fused_attention
from .preprocess import Normalize, Preprocessing, timm_preprocessing


@dataclass
class Features:
    cls: torch.Tensor  # (B, D) pooled feature
    patch: torch.Tensor  # (B, N, D) patch tokens, N = grid[0] * grid[1]
    grid: tuple[int, int]

    def pooled(self, kind: str = "cls") -> torch.Tensor:
        """A global feature: ``cls`` (the model's own pooling), ``patch_mean`` or ``cls+patch_mean``."""
        if kind == "cls":
            return self.cls
        if kind == "patch_mean":
            return self.patch.mean(1)
        if kind == "cls+patch_mean":
            return torch.cat([self.cls, self.patch.mean(1)], dim=-1)
        raise ValueError(f"unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}")


FEATURE_KINDS = ("cls", "patch_mean", "cls+patch_mean")


class Teacher(nn.Module):
    """Base class: subclasses set ``embed_dim`` and implement ``encode`` on preprocessed input.

    ``preprocessing`` (``workbench.models.preprocess``), when a teacher has one, is its release's evaluation
    transform: the loader decodes files with its ``image_transform`` and ``preprocess`` normalises. The offline
    specialists have none: they read the world's images as they are."""

    name: str = "teacher"
    embed_dim: int
    preprocessing: Preprocessing | None = None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def encode(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> Features:
        return self.encode(self.preprocess(images))


class TimmTeacher(Teacher):
    """Any timm model: ViTs give CLS + patch tokens, CNNs give global pool + feature-map cells.

    ``preprocessing`` defaults to what the model's timm ``pretrained_cfg`` says; the zoo gives each release's own.
    """

    def __init__(self, name: str, model: nn.Module, preprocessing: Preprocessing | None = None):
        super().__init__()
        self.name = name
        self.model = model
        use_fused_attention(model)
        self.preprocessing = preprocessing or timm_preprocessing(model)
        self.normalize = Normalize(self.preprocessing)
        self.embed_dim = model.num_features
        self.num_prefix_tokens = getattr(model, "num_prefix_tokens", 0)

    def preprocess(self, images):
        return self.normalize(images)

    def encode(self, x):
        out = self.model.forward_features(x)
        pooled = self.model.forward_head(out, pre_logits=True)  # the model's own pooling: CLS, avg or map
        if out.ndim == 4:  # CNN feature map (B, C, H, W): its cells are the patch tokens
            return Features(pooled, out.flatten(2).transpose(1, 2), tuple(out.shape[-2:]))
        return Features(pooled, out[:, self.num_prefix_tokens :], tuple(self.model.patch_embed.grid_size))

    def intermediates(self, images: torch.Tensor, blocks: list[int]) -> list[Features]:
        """Features after the given blocks (ViTs): the block's CLS token (un-normed) and patch tokens."""
        if not hasattr(self.model, "forward_intermediates") or not hasattr(self.model, "blocks"):
            raise ValueError(f"teacher {self.name!r} does not expose intermediate blocks")
        outs = self.model.forward_intermediates(self.preprocess(images), indices=blocks, norm=False,
                                                output_fmt="NLC", intermediates_only=True,
                                                return_prefix_tokens=True)
        grid = tuple(self.model.patch_embed.grid_size)
        feats = []
        for patch, prefix in outs:
            cls = prefix[:, 0] if prefix is not None and prefix.shape[1] else patch.mean(1)
            feats.append(Features(cls, patch, grid))
        return feats
