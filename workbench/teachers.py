"""Teachers: frozen encoders behind one interface, created by name from a registry.

A teacher takes RGB images in [0, 1] at the data's resolution, applies its *own* preprocessing
(resize, mean/std), and returns a pooled feature (CLS token, or global pool for CNNs) and its patch
tokens on a grid. The distillation and probing code only ever sees that interface, so the offline
specialists of the built-in world and real timm encoders plug in the same way.

    teacher = create_teacher("world_shape")            # offline specialist (trained once, cached)
    teacher = create_teacher("vit_small_patch16_224")  # any timm model, weights from the local HF cache
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Features:
    cls: torch.Tensor  # (B, D) pooled feature
    patch: torch.Tensor  # (B, N, D) patch tokens, N = grid[0] * grid[1]
    grid: tuple[int, int]


class Teacher(nn.Module):
    """Base class: subclasses set ``embed_dim`` and implement ``encode`` on preprocessed input."""

    name: str = "teacher"
    embed_dim: int

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def encode(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> Features:
        return self.encode(self.preprocess(images))


class TimmTeacher(Teacher):
    """Any timm model: ViTs give CLS + patch tokens, CNNs give global pool + feature-map cells."""

    def __init__(self, name: str, model: nn.Module):
        super().__init__()
        self.name = name
        self.model = model
        cfg = model.pretrained_cfg
        self.img_size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
        self.interpolation = cfg.get("interpolation", "bicubic")
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1), persistent=False)
        self.embed_dim = model.num_features
        self.num_prefix_tokens = getattr(model, "num_prefix_tokens", 0)

    def preprocess(self, images):
        if tuple(images.shape[-2:]) != self.img_size:
            mode = self.interpolation if self.interpolation in ("bilinear", "bicubic") else "bilinear"
            images = F.interpolate(images, size=self.img_size, mode=mode, align_corners=False, antialias=True)
        return (images - self.mean) / self.std

    def encode(self, x):
        out = self.model.forward_features(x)
        pooled = self.model.forward_head(out, pre_logits=True)  # the model's own pooling: CLS, avg or map
        if out.ndim == 4:  # CNN feature map (B, C, H, W): its cells are the patch tokens
            return Features(pooled, out.flatten(2).transpose(1, 2), tuple(out.shape[-2:]))
        return Features(pooled, out[:, self.num_prefix_tokens :], tuple(self.model.patch_embed.grid_size))


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, tuple[Callable[..., Teacher], str]] = {}


def register_teacher(name: str, description: str):
    """Decorator: ``builder(pretrained: bool, checkpoint: str | None) -> Teacher`` is created by ``name``."""

    def wrap(builder):
        _REGISTRY[name] = (builder, description)
        return builder

    return wrap


def list_teachers() -> dict[str, str]:
    """Registered teacher names and what they are. Any timm model name also works."""
    _ensure_builtin()
    return {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}


def _ensure_builtin():
    from . import specialists  # noqa: F401  (registers the offline-world teachers)


def create_teacher(name: str, pretrained: bool = True, checkpoint: str | None = None) -> Teacher:
    """Build a teacher by registry name, or any timm model name; returns it frozen and in eval mode."""
    _ensure_builtin()
    if name in _REGISTRY:
        teacher = _REGISTRY[name][0](pretrained=pretrained, checkpoint=checkpoint)
    else:
        teacher = _create_timm_teacher(name, pretrained, checkpoint)
    teacher.requires_grad_(False)
    return teacher.eval()


def check_teacher_names(names: list[str]) -> list[str]:
    """Fail early, listing the known teachers, when a name is neither registered nor a timm model."""
    import timm

    known = list_teachers()
    bad = [n for n in names if n not in known and not timm.is_model(n)]
    if bad:
        raise ValueError(f"unknown teacher(s) {bad}. Registered teachers: {', '.join(known)}. "
                         "Any timm model name works too (see timm.list_models()).")
    if len(set(names)) != len(names):
        raise ValueError(f"teachers must be distinct, got {names}")
    return list(names)


def _create_timm_teacher(name: str, pretrained: bool, checkpoint: str | None) -> Teacher:
    import timm
    from timm.models import load_checkpoint

    check_teacher_names([name])
    if checkpoint is not None:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint!r} for teacher {name!r} does not exist")
        result = load_checkpoint(model, str(checkpoint), strict=False, weights_only=True)
        missing = [k for k in getattr(result, "missing_keys", []) if not k.startswith(("head", "fc."))]
        if missing:
            raise ValueError(f"checkpoint {checkpoint!r} does not fit {name!r}: missing {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}")
        return TimmTeacher(name, model)
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
    except (OSError, RuntimeError, ValueError) as err:
        if pretrained and _looks_offline(err):
            raise FileNotFoundError(
                f"weights for teacher {name!r} are not in the local Hugging Face cache and cannot be "
                f"downloaded here. Put them in the cache (HF_HOME), or pass a checkpoint file "
                f"({type(err).__name__}: {err})"
            ) from err
        raise
    return TimmTeacher(name, model)


def _looks_offline(err: Exception) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return any(s in text for s in ("offline", "connect", "resolve", "not found", "no such file", "cache", "hub"))
