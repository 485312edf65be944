"""Offline specialist teachers, trained on the built-in world and cached on disk.

Two small networks, each blind to the other's factor *by construction*, so each is a specialist:

- ``world_colour``: a per-pixel MLP (1x1 convolutions) followed by pooling. It sees which colours are
  present but not how they are arranged, so it cannot tell shapes apart.
- ``world_shape``: a CNN that only sees the edge magnitude of the luminance, normalised per image.
  Edges carry the outline but neither hue nor the sign of the contrast, so it cannot tell colours apart.

Each is trained with a linear classification head on its own factor; the head is dropped and the
encoder is used as a teacher. Trained weights are cached under ``$WORKBENCH_CACHE/teachers/<key>``,
keyed by the full training config, so the second run loads them in milliseconds.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ParameterError
from ..core.files import cache_dir, config_hash, load_tensors, save_json, save_tensors
from ..data import world
from ._registry import register_teacher
from .teachers import Features, Teacher
from .weights import load_weights, unwrap_state_dict

CACHE_VERSION = 1  # bump when the architectures or the training recipe change


class ColourSpecialist(Teacher):
    def __init__(self, width: int = 48, patch: int = 4):
        super().__init__()
        self.embed_dim, self.patch = width, patch
        self.pixel_mlp = nn.Sequential(
            nn.Conv2d(3, width, 1), nn.GELU(), nn.Conv2d(width, width, 1), nn.GELU(), nn.Conv2d(width, width, 1)
        )

    def preprocess(self, images):
        return F.avg_pool2d(images, 2) * 2 - 1  # colour needs no fine detail: work at half resolution

    def encode(self, x):
        fmap = self.pixel_mlp(x)
        cells = F.avg_pool2d(fmap, self.patch // 2)  # patch tokens: mean pixel feature of each cell
        return Features(fmap.mean(dim=(2, 3)), cells.flatten(2).transpose(1, 2), tuple(cells.shape[-2:]))


def _conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ShapeSpecialist(Teacher):
    def __init__(self, width: int = 96):
        super().__init__()
        self.embed_dim = width
        self.net = nn.Sequential(
            _conv_bn(1, width // 4),
            _conv_bn(width // 4, width // 2, stride=2),
            _conv_bn(width // 2, width, stride=2),
            _conv_bn(width, width),
            _conv_bn(width, width),
        )
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("sobel", torch.stack([sobel, sobel.t()]).unsqueeze(1), persistent=False)

    def preprocess(self, images):
        weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
        luma = (images * weights).sum(1, keepdim=True)
        grad = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), self.sobel)
        edges = grad.pow(2).sum(1, keepdim=True).add(1e-6).sqrt()
        mean = edges.mean(dim=(2, 3), keepdim=True)
        std = edges.std(dim=(2, 3), keepdim=True)
        return (edges - mean) / (std + 1e-6)

    def encode(self, x):
        fmap = self.net(x)
        return Features(fmap.mean(dim=(2, 3)), fmap.flatten(2).transpose(1, 2), tuple(fmap.shape[-2:]))


@dataclass(frozen=True)
class SpecialistConfig:
    arch: str  # "colour" or "shape"
    task: str  # the world factor it is trained on
    width: int = 64
    n_train: int = 6000
    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    world: world.WorldConfig = field(default_factory=world.WorldConfig)


SPECIALISTS = {
    "world_colour": SpecialistConfig(arch="colour", task="colour", width=48, epochs=2),
    "world_shape": SpecialistConfig(arch="shape", task="shape", width=64, epochs=4),
}


def build_specialist(cfg: SpecialistConfig) -> Teacher:
    if cfg.arch == "colour":
        return ColourSpecialist(cfg.width)
    if cfg.arch == "shape":
        return ShapeSpecialist(cfg.width)
    raise ValueError(f"unknown specialist architecture {cfg.arch!r}; expected 'colour' or 'shape'")


def train_specialist(cfg: SpecialistConfig, log=print) -> Teacher:
    """Train encoder + linear head on ``cfg.task`` of the world; return the encoder (head dropped)."""
    torch.manual_seed(cfg.seed)
    model = build_specialist(cfg)
    split = world.make_split(cfg.world, cfg.n_train, seed=10_000 + cfg.seed)
    n_classes = len(split.classes[cfg.task])
    head = nn.Linear(model.embed_dim, n_classes)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(cfg.n_train / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    labels = split.labels[cfg.task]
    model.train()
    t0 = time.time()
    for epoch in range(cfg.epochs):
        order = torch.randperm(cfg.n_train, generator=gen)
        correct = 0
        for i in range(0, cfg.n_train, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = split.images[idx].float() / 255
            y = labels[idx]
            logits = head(model(x).cls)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += (logits.argmax(1) == y).sum().item()
        log(f"  {cfg.arch} specialist epoch {epoch + 1}/{cfg.epochs}: train acc {100 * correct / cfg.n_train:.1f}%"
            f" ({time.time() - t0:.0f}s)")
    return model.eval()


def _cache_key(name: str, cfg: SpecialistConfig) -> str:
    return f"{name}-{config_hash({'version': CACHE_VERSION, **asdict(cfg)})}"


def load_or_train(name: str, cfg: SpecialistConfig, log=print) -> Teacher:
    folder = cache_dir("teachers", _cache_key(name, cfg))
    weights = folder / "model.safetensors"
    model = build_specialist(cfg)
    if weights.exists():
        model.load_state_dict(load_tensors(weights))
        return model.eval()
    log(f"training offline teacher {name!r} (first run only; cached in {folder})")
    model = train_specialist(cfg, log=log)
    save_tensors(model.state_dict(), weights)
    save_json({"name": name, "cache_version": CACHE_VERSION, **asdict(cfg)}, folder / "config.json")
    return model


def _register(name: str, cfg: SpecialistConfig):
    def builder(pretrained: bool = True, checkpoint: str | None = None, preprocessing=None) -> Teacher:
        if preprocessing is not None:
            raise ParameterError(f"preprocessing: {name!r} reads the offline world's images as they are; it takes "
                                 "no preprocessing recipe")
        if checkpoint is not None:
            model = build_specialist(cfg)
            model.load_state_dict(unwrap_state_dict(load_weights(checkpoint)))
        elif pretrained:
            model = load_or_train(name, cfg)
        else:
            model = build_specialist(cfg)
        model.name = name
        return model

    register_teacher(name, f"offline-world specialist: trained on {cfg.task!r}, blind to the other factor")(builder)


for _name, _cfg in SPECIALISTS.items():
    _register(_name, _cfg)
