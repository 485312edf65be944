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
# Shapes no world model is trained on: the unseen concepts of the transfer notebook's concept-generalization
# levels (``workbench.transfer``), from geometric figures close to the seen ones to everyday silhouettes.
NOVEL_SHAPES = ("trapezoid", "pentagon", "hexagon", "star", "semicircle", "heart", "sector", "crescent", "teardrop",
                "bell", "arrow", "letter_x", "house", "fish", "hourglass")
# The shapes as WordNet 3.0 noun synsets (wnids): the seen concepts, and the novel (unseen) ones. The transfer
# notebook ranks the novel ones by WordNet similarity to the seen ones; the world's text-to-image model
# (``workbench.generation``) prompts with their names, hypernyms and definitions (``assets/world_shapes.json``).
SHAPE_WNIDS = {"circle": "n13873502", "square": "n13878634", "triangle": "n13879320",
               "diamond": "n13882961", "plus": "n06811986", "ring": "n13875392"}
NOVEL_SHAPE_WNIDS = {"trapezoid": "n13881512", "pentagon": "n13882201", "hexagon": "n13882276", "star": "n13881644",
                     "semicircle": "n13874251", "heart": "n13865904", "sector": "n13875027",
                     "crescent": "n13896217", "teardrop": "n13901925", "bell": "n13886260", "arrow": "n06818121",
                     "letter_x": "n06833663", "house": "n03544360", "fish": "n02512053", "hourglass": "n03544143"}
assert set(SHAPE_WNIDS) == set(SHAPES) and set(NOVEL_SHAPE_WNIDS) == set(NOVEL_SHAPES)
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


def _polygon(u: np.ndarray, v: np.ndarray, vertices) -> np.ndarray:
    """Even-odd point-in-polygon test; ``vertices`` are (x, y) with y pointing *up* (v points down)."""
    inside = np.zeros(np.broadcast(u, v).shape, dtype=bool)
    pts = list(vertices)
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1]):
        y1, y2 = -y1, -y2  # to image orientation
        if y1 == y2:
            continue
        crosses = (y1 > v) != (y2 > v)
        inside ^= crosses & (u < (x2 - x1) * (v - y1) / (y2 - y1) + x1)
    return inside


def _regular(n: int, radius: float, start_deg: float = 90.0, inner: float | None = None) -> list:
    """Vertices of a regular polygon, or of a star when ``inner`` (the inner radius) is given."""
    k = 2 * n if inner else n
    angles = np.deg2rad(start_deg) + 2 * np.pi * np.arange(k) / k
    radii = [radius if inner is None or i % 2 == 0 else inner for i in range(k)]
    return [(r * np.cos(a), r * np.sin(a)) for r, a in zip(radii, angles)]


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask from normalised coordinates u, v (object centre at 0, radius 1, v pointing down)."""
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
    # novel shapes (never in a training split)
    y = -v  # y up, for readable vertices
    if shape == "trapezoid":
        return _polygon(u, v, [(-0.95, -0.6), (0.95, -0.6), (0.5, 0.6), (-0.5, 0.6)])
    if shape == "pentagon":
        return _polygon(u, v, _regular(5, 1.0))
    if shape == "hexagon":
        return _polygon(u, v, _regular(6, 0.95, start_deg=0.0))
    if shape == "star":
        return _polygon(u, v, _regular(5, 1.0, inner=0.45))
    if shape == "semicircle":
        return (u**2 + (y + 0.4) ** 2 <= 1.0) & (y >= -0.4)
    if shape == "heart":  # (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled into the unit box
        x, yy = 1.15 * u, 1.15 * y + 0.12
        return (x**2 + yy**2 - 1) ** 3 - x**2 * yy**3 <= 0
    if shape == "sector":  # a 70-degree slice of a disc, apex down
        r2 = u**2 + (y + 0.7) ** 2
        return (r2 <= 1.6**2) & (au <= np.tan(np.deg2rad(35)) * (y + 0.7))
    if shape == "crescent":
        return (u**2 + v**2 <= 1.0) & ((u - 0.45) ** 2 + (y - 0.15) ** 2 > 0.85**2)
    if shape == "teardrop":
        return (u**2 + (y + 0.35) ** 2 <= 0.6**2) | _polygon(u, v, [(-0.538, -0.084), (0.538, -0.084), (0.0, 1.0)])
    if shape == "bell":  # dome, flared rim, clapper
        dome = (u**2 + (y - 0.25) ** 2 <= 0.5**2) & (y >= 0.25)
        body = _polygon(u, v, [(-0.5, 0.25), (0.5, 0.25), (0.6, -0.45), (0.92, -0.68), (-0.92, -0.68), (-0.6, -0.45)])
        return dome | body | (u**2 + (y + 0.8) ** 2 <= 0.17**2)
    if shape == "letter_x":  # the letter: two diagonal bars
        bars = (np.abs(u - v) <= 0.32) | (np.abs(u + v) <= 0.32)
        return bars & (np.maximum(au, av) <= 0.8)
    if shape == "arrow":
        return _polygon(u, v, [(-0.95, -0.22), (0.2, -0.22), (0.2, -0.65), (0.95, 0.0), (0.2, 0.65), (0.2, 0.22),
                               (-0.95, 0.22)])
    if shape == "house":
        return _polygon(u, v, [(-0.7, -0.9), (0.7, -0.9), (0.7, 0.1), (0.95, 0.1), (0.0, 0.95), (-0.95, 0.1),
                               (-0.7, 0.1)])
    if shape == "fish":
        body = ((u + 0.2) / 0.7) ** 2 + (y / 0.45) ** 2 <= 1.0
        return body | _polygon(u, v, [(0.35, 0.0), (0.95, 0.5), (0.95, -0.5)])
    if shape == "hourglass":
        return _polygon(u, v, [(-0.7, 0.95), (0.7, 0.95), (0.08, 0.0), (0.7, -0.95), (-0.7, -0.95), (-0.08, 0.0)])
    raise ValueError(f"unknown shape {shape!r}; known: {list(SHAPES + NOVEL_SHAPES)}")


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


def render(cfg: WorldConfig, n: int, seed: int,
           shapes: tuple[str, ...] = SHAPES) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Render ``n`` images. Returns uint8 images (N, 3, S, S) and a label tensor per factor.

    ``shapes`` are the object classes (label ``shape`` indexes it); the default is the training world.
    """
    images, labels, _ = render_with_coverage(cfg, n, seed, shapes)
    return images, labels


def render_with_coverage(cfg: WorldConfig, n: int, seed: int, shapes: tuple[str, ...] = SHAPES
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """``render``, plus the object's coverage of each pixel (N, S, S) uint8: 0 background, 255 object, in between
    on the anti-aliased edge. It is the alpha the images were composited with, so no random draw changes."""
    unknown = [sh for sh in shapes if sh not in SHAPES + NOVEL_SHAPES]
    if unknown or not shapes:
        raise ValueError(f"unknown shape(s) {unknown}; known: {list(SHAPES + NOVEL_SHAPES)}")
    rng = np.random.default_rng(seed)
    s = cfg.image_size
    shape = rng.integers(len(shapes), size=n)
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
    for k, name in enumerate(shapes):
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
    coverage = torch.from_numpy((alpha[..., 0] * 255 + 0.5).astype(np.uint8))
    return images, labels, coverage


@dataclass
class WorldSplit:
    """A split of the world held in memory: uint8 images and one label vector per factor."""

    images: torch.Tensor
    labels: dict[str, torch.Tensor]
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    coverage: torch.Tensor | None = None  # (N, S, S) uint8: how much of each pixel the object covers (0-255)

    def __len__(self) -> int:
        return len(self.images)


def make_split(cfg: WorldConfig, n: int, seed: int, shapes: tuple[str, ...] = SHAPES) -> WorldSplit:
    images, labels, coverage = render_with_coverage(cfg, n, seed, shapes)
    classes = {"shape": tuple(shapes), "colour": COLOURS, "background": cfg.backgrounds}
    return WorldSplit(images, labels, classes, coverage)


def config_dict(cfg: WorldConfig) -> dict:
    return asdict(cfg)
