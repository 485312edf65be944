"""How each release feeds images to its model: its evaluation transform, exactly.

    Preprocessing(resize=256, crop=224, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD)

resizes the shorter side of the PIL image to ``resize`` (torchvision's ``Resize``, as every release below
does), crops the centre ``crop`` x ``crop``, scales to [0, 1] (``ToTensor``) and normalises by
``mean``/``std``. The first three steps are the loader's (``image_transform``: it decodes the files), the
last is the model's (``normalize``, on the tensors), so that each model of a run gets its own view of
the same files, pixel for pixel as its authors' evaluation code gives it.

The recipes of the releases (their evaluation code, read at the source):

    dino, ibot, dinov2, mae   Resize(256, bicubic) + CenterCrop(224), ImageNet mean/std
    dbot, deit                Resize(256, bicubic) + CenterCrop(224) (crop ratio 0.875), ImageNet mean/std
    deit3                     Resize(224, bicubic) + CenterCrop(224) (``--eval-crop-ratio 1.0``), ImageNet
    unic                      Resize(224, bicubic) + CenterCrop(224), ImageNet (its transfer evaluation)
    clip                      Resize(224, bicubic) + CenterCrop(224), CLIP's mean/std
    inception                 timm's augreg ViTs: crop ratio 0.9, bicubic, mean = std = 0.5
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
from torchvision import transforms

from ..core.errors import ParameterError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
INTERPOLATIONS = {"bicubic": transforms.InterpolationMode.BICUBIC, "bilinear": transforms.InterpolationMode.BILINEAR,
                  "nearest": transforms.InterpolationMode.NEAREST}
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD),
                  "inception": (INCEPTION_MEAN, INCEPTION_STD)}


@dataclass(frozen=True)
class Preprocessing:
    resize: int = 256  # the shorter side, before the centre crop
    crop: int = 224
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def image_transform(self) -> Callable:
        """PIL image -> float tensor in [0, 1] of ``crop`` x ``crop``: the release's transform before normalising."""
        return transforms.Compose([transforms.Resize(self.resize, interpolation=INTERPOLATIONS[self.interpolation]),
                                   transforms.CenterCrop(self.crop), transforms.ToTensor()])

    def at_size(self, crop: int) -> Preprocessing:
        """The same recipe for another input size: the same ratio of crop to resize."""
        return replace(self, crop=crop, resize=math.floor(crop * self.resize / self.crop))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


PREPROCESSING = {
    "dino": Preprocessing(256, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "ibot": Preprocessing(256, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "dinov2": Preprocessing(256, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "mae": Preprocessing(256, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "dbot": Preprocessing(256, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "deit": Preprocessing(256, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "deit3": Preprocessing(224, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "unic": Preprocessing(224, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "clip": Preprocessing(224, 224, "bicubic", CLIP_MEAN, CLIP_STD),
    "inception": Preprocessing(248, 224, "bicubic", INCEPTION_MEAN, INCEPTION_STD),
}


def preprocessing_named(name: str) -> Preprocessing:
    if name not in PREPROCESSING:
        raise ParameterError(f"unknown preprocessing {name!r}; known: {sorted(PREPROCESSING)}")
    return PREPROCESSING[name]


def timm_preprocessing(model: nn.Module | dict) -> Preprocessing:
    """What timm's ``pretrained_cfg`` of a model (or that config itself, a dict) says (its ``create_transform``:
    the shorter side to floor(size / crop_pct), a centre crop, the config's interpolation and mean/std)."""
    cfg = (model if isinstance(model, dict) else getattr(model, "pretrained_cfg", None)) or {}
    crop = int(cfg.get("input_size", (3, 224, 224))[-1])
    interpolation = cfg.get("interpolation", "bicubic")
    return Preprocessing(resize=math.floor(crop / cfg.get("crop_pct", 0.875)), crop=crop,
                         interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic",
                         mean=cfg.get("mean", IMAGENET_MEAN), std=cfg.get("std", IMAGENET_STD))


class Normalize(nn.Module):
    """The model's side of a preprocessing: images in [0, 1], resized to ``size`` when they are another size
    (tensors of the offline world, an augmented view), then normalised by mean/std."""

    def __init__(self, preprocessing: Preprocessing, size: tuple[int, int] | None = None):
        super().__init__()
        self.preprocessing = preprocessing
        self.size = tuple(size) if size is not None else (preprocessing.crop, preprocessing.crop)
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != self.size:
            mode = self.preprocessing.interpolation if self.preprocessing.interpolation != "nearest" else "bilinear"
            images = nn.functional.interpolate(images, size=self.size, mode=mode, align_corners=False, antialias=True)
        return (images - self.mean) / self.std


def timm_hub_preprocessing(weights_file) -> Preprocessing | None:
    """The preprocessing a timm hub file says of itself: the ``pretrained_cfg`` of the ``config.json`` that timm
    writes beside its weights (``push_to_hub``; a Hugging Face cache snapshot of a ``timm/`` repository holds
    both). None when there is no such config beside the file."""
    config = Path(weights_file).parent / "config.json"
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("pretrained_cfg"), dict) or "architecture" not in cfg:
        return None
    return timm_preprocessing(cfg["pretrained_cfg"])
