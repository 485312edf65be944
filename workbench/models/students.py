"""Students: timm Vision Transformers whose every block output is exposed for the ladder of projectors.

For real use the student is a standard timm ViT (default ``vit_base_patch16_224``). For the offline
world the workbench registers small ViTs in timm's registry, so they are created the same way:
``timm.create_model("wb_vit_tiny_patch4_32")``.

A trained student is a folder: ``student.safetensors`` (the encoder's weights) and ``config.json``
(``{"config": {"student": <timm name>, "image_size": ...}, ...}``), written by distillation;
``load_student`` rebuilds the encoder from it, or from a run's out_dir.
"""
from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

from ..core.checkpoint import Checkpoints
from ..core.files import load_tensors
from ..core.params import ParameterError
from ..layers.attention import use_fused_attention
from ..layers.conv_stem import ConvStemEmbed

STUDENT_WEIGHTS = "student.safetensors"  # the encoder's weights in a student folder
STUDENT_CONFIG = "config.json"  # {"config": {"student": ..., "image_size": ...}, ...}; written last


def _small_vit(pretrained: bool, defaults: dict, kwargs: dict) -> VisionTransformer:
    if pretrained:
        raise ValueError("the offline-world students have no pretrained weights; they are trained by distillation")
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("pretrained_cfg") and k != "cache_dir"}
    return VisionTransformer(**{**defaults, **kwargs})


@register_model
def wb_vit_tiny_patch4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT for the 32x32 offline world: 64 patches of 4x4, width 128, 4 blocks."""
    defaults = dict(img_size=32, patch_size=4, embed_dim=128, depth=4, num_heads=4, mlp_ratio=3.0, num_classes=0)
    return _small_vit(pretrained, defaults, kwargs)


@register_model
def wb_vitc_tiny_patch8_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Convolutional-stem ViT for the 32x32 offline world: 16 tokens from a 3-conv stem, width 128, 4 blocks."""
    defaults = dict(img_size=32, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=3.0, num_classes=0,
                    embed_layer=ConvStemEmbed)
    return _small_vit(pretrained, defaults, kwargs)


@register_model
def wb_vitc_tiny_patch4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Convolutional-stem ViT for the 32x32 offline world: 64 tokens from a 2-conv stem, width 128, 4 blocks."""
    defaults = dict(img_size=32, patch_size=4, embed_dim=128, depth=4, num_heads=4, mlp_ratio=3.0, num_classes=0,
                    embed_layer=ConvStemEmbed)
    return _small_vit(pretrained, defaults, kwargs)


@register_model
def wb_vit_tiny_patch8_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT for the 32x32 offline world: 16 patches of 8x8, width 128, 4 blocks."""
    defaults = dict(img_size=32, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=3.0, num_classes=0)
    return _small_vit(pretrained, defaults, kwargs)


class Student(nn.Module):
    """A timm ViT plus its own input normalisation; returns the CLS and patch tokens of every block.

    The last block's tokens go through the ViT's final norm, so the feature that is probed after
    training (``embed``) is exactly what the last projector of the ladder was trained on.
    """

    def __init__(self, name: str, img_size: int | None = None, **kwargs):
        super().__init__()
        if img_size is not None:
            kwargs["img_size"] = img_size
        try:
            self.vit = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        except RuntimeError as err:
            raise ValueError(f"unknown student {name!r}: {err}. Use a timm ViT name such as "
                             "'vit_small_patch16_224'") from err
        if not isinstance(self.vit, VisionTransformer):
            raise ValueError(f"student {name!r} is a {type(self.vit).__name__}; the student must be a timm "
                             "VisionTransformer")
        self.name = name
        use_fused_attention(self.vit)
        cfg = getattr(self.vit, "pretrained_cfg", None) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.5, 0.5, 0.5))).view(1, 3, 1, 1), persistent=False)
        self.embed_dim = self.vit.embed_dim
        self.depth = len(self.vit.blocks)
        self.grid = tuple(self.vit.patch_embed.grid_size)
        self.img_size = tuple(self.vit.patch_embed.img_size)
        self.num_prefix_tokens = self.vit.num_prefix_tokens

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != self.img_size:
            images = F.interpolate(images, size=self.img_size, mode="bicubic", align_corners=False, antialias=True)
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(cls, patch) tokens after every block: [(B, D), (B, N, D)] * depth."""
        vit = self.vit
        x = vit.patch_embed(self.preprocess(images))
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        outputs = []
        for i, block in enumerate(vit.blocks):
            x = block(x)
            tokens = vit.norm(x) if i == self.depth - 1 else x
            outputs.append((self._pool(tokens), tokens[:, self.num_prefix_tokens :]))
        return outputs

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.vit.cls_token is not None:
            return tokens[:, 0]
        return tokens[:, self.num_prefix_tokens :].mean(1)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The feature used downstream (probes, transfer): the final CLS token."""
        return self.forward(images)[-1][0]


def check_student_name(name: str) -> str:
    """Fail early, with suggestions, when ``name`` is not a timm ViT."""
    if not timm.is_model(name):
        ours = ", ".join(timm.list_models("wb_*"))
        raise ParameterError(f"unknown student {name!r}: use a timm ViT name such as 'vit_small_patch16_224' or "
                             f"'vit_base_patch16_224', or an offline-world student ({ours})")
    return name


def student_image_size(name: str) -> int:
    """The input resolution of a student, read without allocating its weights."""
    return student_geometry(name)[0]


def student_geometry(name: str, img_size: int | None = None) -> tuple[int, int, int]:
    """(input size, patch size, depth) of a student at ``img_size`` (default: its own), without allocating weights."""
    with torch.device("meta"):
        vit = timm.create_model(check_student_name(name), pretrained=False, num_classes=0)
    if not isinstance(vit, VisionTransformer):
        raise ValueError(f"student {name!r} is a {type(vit).__name__}; the student must be a timm VisionTransformer")
    return img_size or int(vit.patch_embed.img_size[0]), int(vit.patch_embed.patch_size[0]), len(vit.blocks)


def find_student_checkpoint(folder) -> Path:
    """A student folder: ``folder`` itself, ``folder/checkpoint`` (a finished run's out_dir), or the newest
    ``folder/checkpoints/step_*`` (a run still training, or killed)."""
    folder = Path(folder)
    if (folder / STUDENT_CONFIG).is_file():
        return folder
    if (folder / "checkpoint" / STUDENT_CONFIG).is_file():
        return folder / "checkpoint"
    latest = Checkpoints(folder / "checkpoints").latest()
    if latest is not None:
        return latest
    raise FileNotFoundError(f"no distillation checkpoint in {folder} (expected {STUDENT_CONFIG} and {STUDENT_WEIGHTS}, "
                            "or an out_dir holding checkpoint/ or checkpoints/)")


def load_student(folder, device: str | torch.device = "cpu") -> Student:
    """Rebuild a distilled student encoder from its folder or a run's out_dir (projectors are not needed)."""
    folder = find_student_checkpoint(folder)
    cfg = json.loads((folder / STUDENT_CONFIG).read_text())["config"]
    student = Student(cfg["student"], img_size=cfg.get("image_size"))
    student.load_state_dict(load_tensors(folder / STUDENT_WEIGHTS))
    return student.to(device).eval()
