"""The offline world: a procedural image dataset with independent, labelled factors.

Each 32x32 image shows one object on a background. The object's *shape* and *colour* are drawn
independently, so a model can be good at one factor and blind to the other; that is what makes
the multi-teacher effect of UNIC visible without any download. Size, position, brightness and the
background are nuisance factors. Background styles are split into a training family and a held-out
family, which gives the transfer tasks their distribution shift.

Everything is rendered with vectorised numpy from a seed, so a split is reproducible bit for bit.
"""
from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

VERSION = 1  # bump when rendering changes: keys every cache built from world images

SHAPES = ("circle", "square", "triangle", "diamond", "plus", "ring")
COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta")
HUES = (0.0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6)  # evenly spaced, so colours are equally far apart
BACKGROUNDS = ("flat", "gradient", "noise", "blobs", "stripes", "checker")
TRAIN_BACKGROUNDS = ("flat", "gradient", "noise", "blobs")
HELD_OUT_BACKGROUNDS = ("stripes", "checker")


@dataclass(frozen=True)
class WorldConfig:
    image_size: int = 32
    min_radius: float = 6.0  # half-size of the object, in pixels
    max_radius: float = 12.0
    hue_jitter: float = 0.03  # fraction of the colour wheel
    pixel_noise: float = 0.03
    backgrounds: tuple[str, ...] = TRAIN_BACKGROUNDS

    def __post_init__(self):
        unknown = set(self.backgrounds) - set(BACKGROUNDS)
        if unknown:
            raise ValueError(f"unknown background(s) {sorted(unknown)}; known: {list(BACKGROUNDS)}")
        if not 2 <= self.min_radius <= self.max_radius < self.image_size / 2:
            raise ValueError("need 2 <= min_radius <= max_radius < image_size / 2")


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask from normalised coordinates u, v (object centre at 0, radius 1)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u**2 + v**2 <= 1.0
    if shape == "square":  # roughly the area of the circle
        return np.maximum(au, av) <= 0.8
    if shape == "triangle":  # apex up
        return (v <= 0.75) & (au <= 0.62 * (v + 0.95))
    if shape == "diamond":
        return au + av <= 1.1
    if shape == "plus":
        return ((au <= 0.33) | (av <= 0.33)) & (np.maximum(au, av) <= 1.0)
    if shape == "ring":
        r2 = u**2 + v**2
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    raise AssertionError(shape)


def _backgrounds(kind_ids: np.ndarray, names: tuple[str, ...], size: int, rng: np.random.Generator) -> np.ndarray:
    """Low-saturation backgrounds (N, S, S, 3) in [0, 1]: they must never look like an object colour."""
    n = len(kind_ids)
    level = rng.uniform(0.25, 0.75, size=(n, 1, 1, 1))
    tint = rng.uniform(-0.06, 0.06, size=(n, 1, 1, 3))
    base = np.broadcast_to(level + tint, (n, size, size, 3)).copy()
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    for k, name in enumerate(names):
        idx = np.flatnonzero(kind_ids == k)
        if len(idx) == 0:
            continue
        m = len(idx)
        if name == "flat":
            pattern = np.zeros((m, size, size))
        elif name == "gradient":
            angle = rng.uniform(0, 2 * np.pi, size=(m, 1, 1))
            pattern = 0.2 * (np.cos(angle) * xx + np.sin(angle) * yy)
        elif name == "noise":
            pattern = rng.normal(0, 0.08, size=(m, size, size))
        elif name == "blobs":  # smooth random field: a few low-frequency cosines
            pattern = np.zeros((m, size, size))
            for _ in range(3):
                fx, fy = rng.uniform(0.5, 2.0, size=(2, m, 1, 1))
                phase = rng.uniform(0, 2 * np.pi, size=(m, 1, 1))
                pattern += 0.07 * np.cos(np.pi * (fx * xx + fy * yy) + phase)
        elif name == "stripes":
            period = rng.uniform(3, 6, size=(m, 1, 1))
            angle = rng.uniform(0, np.pi, size=(m, 1, 1))
            coord = (np.cos(angle) * xx + np.sin(angle) * yy) * size / 2
            pattern = 0.12 * np.sign(np.sin(2 * np.pi * coord / period))
        elif name == "checker":
            period = rng.integers(3, 7, size=(m, 1, 1))
            ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
            pattern = 0.12 * (((ii // period + jj // period) % 2) * 2 - 1)
        else:  # guarded by WorldConfig
            raise AssertionError(name)
        base[idx] += pattern[..., None]
    return base


def render(cfg: WorldConfig, n: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Render ``n`` images. Returns uint8 images (N, 3, S, S) and a label tensor per factor."""
    rng = np.random.default_rng(seed)
    s = cfg.image_size
    shape = rng.integers(len(SHAPES), size=n)
    colour = rng.integers(len(COLOURS), size=n)
    background = rng.integers(len(cfg.backgrounds), size=n)
    radius = rng.uniform(cfg.min_radius, cfg.max_radius, size=n)
    margin = radius + 1
    cx = rng.uniform(margin, s - margin)
    cy = rng.uniform(margin, s - margin)

    # 2x2 supersampling gives anti-aliased edges, so shapes are not told apart by jagged pixels
    sub = (np.arange(2 * s) + 0.5) / 2
    yy, xx = np.meshgrid(sub, sub, indexing="ij")
    alpha = np.zeros((n, s, s, 1), dtype=np.float32)
    for k, name in enumerate(SHAPES):
        idx = np.flatnonzero(shape == k)
        u = (xx[None] - cx[idx, None, None]) / radius[idx, None, None]
        v = (yy[None] - cy[idx, None, None]) / radius[idx, None, None]
        mask = _shape_mask(name, u, v).astype(np.float32)
        alpha[idx, ..., 0] = mask.reshape(len(idx), s, 2, s, 2).mean(axis=(2, 4))

    hue = (np.asarray(HUES)[colour] + rng.uniform(-cfg.hue_jitter, cfg.hue_jitter, size=n)) % 1.0
    sat = rng.uniform(0.7, 1.0, size=n)
    val = rng.uniform(0.55, 1.0, size=n)
    rgb = np.array([colorsys.hsv_to_rgb(h, sa, va) for h, sa, va in zip(hue, sat, val)]).reshape(n, 1, 1, 3)

    bg = _backgrounds(background, cfg.backgrounds, s, rng)
    img = alpha * rgb + (1 - alpha) * bg
    img += rng.normal(0, cfg.pixel_noise, size=img.shape)
    img = np.clip(img, 0, 1)
    images = torch.from_numpy((img * 255 + 0.5).astype(np.uint8)).permute(0, 3, 1, 2).contiguous()
    labels = {
        "shape": torch.from_numpy(shape),
        "colour": torch.from_numpy(colour),
        "background": torch.from_numpy(background),
    }
    return images, labels


@dataclass
class WorldSplit:
    """A split of the world held in memory: uint8 images and one label vector per factor."""

    images: torch.Tensor
    labels: dict[str, torch.Tensor]
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def make_split(cfg: WorldConfig, n: int, seed: int) -> WorldSplit:
    images, labels = render(cfg, n, seed)
    classes = {"shape": SHAPES, "colour": COLOURS, "background": cfg.backgrounds}
    return WorldSplit(images, labels, classes)


def config_dict(cfg: WorldConfig) -> dict:
    return asdict(cfg)
