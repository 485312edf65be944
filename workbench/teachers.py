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
    """Any timm model: ViTs give CLS + patch tokens, CNNs give global pool + feature-map cells.

    Preprocessing (input size, mean/std) comes from the model's pretrained config unless given.
    """

    def __init__(self, name: str, model: nn.Module, img_size: int | None = None,
                 mean: tuple | None = None, std: tuple | None = None):
        super().__init__()
        from .students import use_fused_attention

        self.name = name
        self.model = model
        use_fused_attention(model)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.img_size = (img_size, img_size) if img_size else tuple(cfg.get("input_size", (3, 224, 224))[1:])
        self.interpolation = cfg.get("interpolation", "bicubic")
        mean = mean or cfg.get("mean", (0.485, 0.456, 0.406))
        std = std or cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
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
    from . import specialists, zoo  # noqa: F401  (register the offline-world teachers and the zoo)


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

    from .params import ParameterError

    known = list_teachers()
    bad = [n for n in names if n not in known and not timm.is_model(n)]
    if bad:
        raise ParameterError(f"unknown teacher(s) {bad}. Registered teachers: {', '.join(known)}. "
                             "Any timm model name works too (see timm.list_models()).")
    if len(set(names)) != len(names):
        raise ParameterError(f"teachers must be distinct, got {names}")
    return list(names)


def _create_timm_teacher(name: str, pretrained: bool, checkpoint: str | None) -> Teacher:
    import timm

    check_teacher_names([name])
    if checkpoint is not None:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        load_timm_checkpoint(model, checkpoint, name)
    else:
        model = _create_timm_model(name, pretrained)
    return TimmTeacher(name, model)


def _create_timm_model(timm_name: str, pretrained: bool, **kwargs) -> nn.Module:
    """timm.create_model with weights from the local Hugging Face cache, and a clear error without them."""
    import timm

    try:
        return timm.create_model(timm_name, pretrained=pretrained, num_classes=0, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:
        if pretrained and _looks_offline(err):
            raise FileNotFoundError(
                f"weights for {timm_name!r} are not in the local Hugging Face cache and cannot be downloaded "
                f"here. On a machine with network run `python -c \"import timm; timm.create_model('{timm_name}', "
                f"pretrained=True)\"` (or huggingface-cli download) and copy the cache (HF_HOME), or pass a "
                f"checkpoint file. ({type(err).__name__}: {err})"
            ) from err
        raise


def load_timm_checkpoint(model: nn.Module, path: str, name: str) -> None:
    """Load a timm-format checkpoint (safetensors, or a pickle read with weights_only=True); heads are ignored."""
    from timm.models import clean_state_dict

    from .io import load_weights

    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path!r} for teacher {name!r} does not exist")
    state = unwrap_state_dict(load_weights(path))
    result = model.load_state_dict(clean_state_dict(state), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("head", "fc."))]
    if missing:
        raise ValueError(f"checkpoint {path!r} does not fit {name!r}: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")


def unwrap_state_dict(checkpoint, keys=("state_dict_ema", "model_ema", "state_dict", "model")) -> dict:
    """The weights inside a training checkpoint (timm's order: EMA weights first), or the checkpoint itself."""
    if isinstance(checkpoint, dict):
        for key in keys:
            if isinstance(checkpoint.get(key), dict):
                return checkpoint[key]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a state dict (name -> tensor) in the checkpoint, got a {type(checkpoint).__name__}")
    return checkpoint


def _looks_offline(err: Exception) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return any(s in text for s in ("offline", "connect", "resolve", "not found", "no such file", "cache", "hub"))
