"""What a clone of the offline world is worth: fidelity and diversity, judged against real world images.

    judges = WorldJudges.load()                       # classifiers trained on real world images
    judges.fidelity(read_world_folder(out))           # share of images whose shape / colour match the prompt
    diversity(images)                                 # object size, position, background: spread per image set

**Fidelity.** The judges are the offline specialists (``world_shape`` sees only luminance edges,
``world_colour`` only per-pixel colours), each with a linear probe (02's) fitted on real world images; each is
blind to the other's factor, so a shape judgement does not lean on colour. Their own top-1 on real test
images (``judges.real_top1``) bounds what a perfect clone can score.

**Diversity.** The world's objects are saturated and its backgrounds grey, so a saturation threshold finds the
object: its area (size), its centroid (position), its brightness, and the background's mean brightness and texture
(the standard deviation of the background pixels' brightness: 0 on flat backgrounds, larger on noise and blobs).
The spread (standard deviation) of each over a set of images, against the same on real images, says whether a
clone varies as much as the world does (a collapsed clone, every object the same size in the middle of a flat
background, has spreads near 0); the mean size and brightness say whether its objects drifted (high guidance
grows and brightens them).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.device import pick_device
from ..core.files import cache_dir, config_hash, load_tensors, save_json, save_tensors
from ..data import load_data, world, world_fingerprint
from ..data.folders import image_files
from ..models import build_teachers
from ..probing import Encoder, LinearClassifier, encode_images, fit_linear_probe, model_fingerprint, split_features
from .prompts import STRATEGIES, WORLD_CLASSES, is_world, prompt_strategy, stable_seed

JUDGES = {"shape": "world_shape", "colour": "world_colour"}


@dataclass
class ImageSet:
    """uint8 images (N, 3, 32, 32) and their world class (index into ``WORLD_CLASSES``: shape * 6 + colour)."""

    pixels: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def class_index(shape: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """The world class of shape and colour indices (``WORLD_CLASSES`` is shape-major)."""
    return shape * len(world.COLOURS) + colour


def read_world_folder(folder) -> ImageSet:
    """A generated world clone (class folders named like ``red_circle``) as an image set."""
    pixels, labels = [], []
    for class_dir in sorted(Path(folder).iterdir()):
        if not class_dir.is_dir() or class_dir.name not in WORLD_CLASSES:
            continue
        for path in image_files(class_dir):
            with Image.open(path) as im:
                pixels.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))
            labels.append(WORLD_CLASSES.index(class_dir.name))
    if not pixels:
        raise ValueError(f"{folder} holds no image of a world class (folders such as red_circle/)")
    return ImageSet(torch.stack(pixels), torch.tensor(labels))


def real_world_set(images_per_class: int, seed: int, backgrounds=world.TRAIN_BACKGROUNDS) -> ImageSet:
    """Real world images, ``images_per_class`` of each of the 36 classes (the first a seeded render draws)."""
    cfg, n_classes = world.WorldConfig(backgrounds=tuple(backgrounds)), len(WORLD_CLASSES)
    picked: dict[int, list[torch.Tensor]] = {k: [] for k in range(n_classes)}
    chunk = 0
    while any(len(v) < images_per_class for v in picked.values()):
        split = world.make_split(cfg, 40 * n_classes, seed=[41_000, seed, chunk])
        for image, label in zip(split.images, class_index(split.labels["shape"], split.labels["colour"]).tolist()):
            if len(picked[label]) < images_per_class:
                picked[label].append(image)
        chunk += 1
    return ImageSet(torch.stack([im for k in range(n_classes) for im in picked[k]]),
                    torch.arange(n_classes).repeat_interleave(images_per_class))


@dataclass
class WorldJudges:
    encoders: dict  # factor -> specialist teacher
    heads: dict  # factor -> LinearClassifier on its pooled features
    real_top1: dict  # factor -> top-1 (%) on real test images
    device: torch.device

    @classmethod
    def load(cls, n_train: int = 6000, n_test: int = 2000, device="auto", log=print) -> WorldJudges:
        """The specialists (trained on first use and cached) and linear probes fitted on real world images
        (fitted once, then cached under ``$WORKBENCH_CACHE/judges``, keyed by the specialist's weights and the data)."""
        device, t0 = pick_device(device) if isinstance(device, str) else torch.device(device), time.time()
        data = None  # the real images are rendered only when a probe is to be fitted
        encoders, heads, real = {}, {}, {}
        specialists = build_teachers(list(JUDGES.values()), device=device)
        for factor, name in JUDGES.items():
            model = specialists[name]
            key = config_hash({"judge": name, "weights": model_fingerprint(model),
                               "data": world_fingerprint(n_train, n_test)})
            folder = cache_dir("judges", f"{name}-{key}")
            if (folder / "head.safetensors").is_file():
                saved = load_tensors(folder / "head.safetensors")
                heads[factor] = LinearClassifier(saved["weight"], saved["bias"])
                real[factor] = round(float(saved["real_top1"]), 2)
            else:
                data = data or load_data("world", n_train=n_train, n_test=n_test)
                encoder = Encoder(name, lambda x, m=model: m(x).cls, model)
                train, test = split_features(encoder, data, device=device, log=log)
                heads[factor], _ = fit_linear_probe(train.x, train.labels[factor], len(data.tasks[factor]))
                real[factor] = round(heads[factor].accuracy(test.x, test.labels[factor]), 2)
                save_tensors({"weight": heads[factor].weight.data, "bias": heads[factor].bias.data,
                              "real_top1": torch.tensor(real[factor])}, folder / "head.safetensors")
                save_json({"judge": name, "factor": factor, "real_top1": real[factor], "n_train": n_train},
                          folder / "judge.json")
            encoders[factor] = model
            heads[factor] = heads[factor].to(device)
        log(f"judges ready in {time.time() - t0:.0f}s: top-1 on real test images, shape {real['shape']}%, "
            f"colour {real['colour']}%")
        return cls(encoders, heads, real, device)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted shape and colour indices of uint8 images (N, 3, 32, 32)."""
        out = {}
        for factor, model in self.encoders.items():
            head: LinearClassifier = self.heads[factor]
            feats = encode_images(lambda x, m=model: m(x).cls, images, self.device)
            out[factor] = head(feats).argmax(1)
        return out

    def fidelity(self, images: ImageSet) -> dict[str, float]:
        """Share (%) of images whose judged shape, colour, and both, are the prompted ones."""
        pred, n = self.predict(images.pixels), len(world.COLOURS)
        shape_ok = pred["shape"] == images.labels // n
        colour_ok = pred["colour"] == images.labels % n
        return {"shape": percent(shape_ok), "colour": percent(colour_ok), "both": percent(shape_ok & colour_ok)}

    def fidelity_of_pipeline(self, pipe, images_per_class: int = 4, guidance_scales=(2.0,), steps: int = 20,
                             prompt: str = "name_hypernym_background", seed: int = 0) -> dict[str, float]:
        """Fidelity of images sampled from ``pipe`` for every world class, per guidance scale (``g2_shape`` ...)."""
        out = {}
        for g in guidance_scales:
            images = sample_world(pipe, prompt, g, images_per_class, steps, seed)
            out.update({f"g{g:g}_{k}": v for k, v in self.fidelity(images).items()})
        return out


def percent(mask: torch.Tensor) -> float:
    """The share (%) of true entries of a boolean mask, to two decimals."""
    return round(100.0 * mask.float().mean().item(), 2)


def sample_world(pipe, prompt: str, guidance_scale: float, images_per_class: int, steps: int,
                 seed: int = 0) -> ImageSet:
    """``images_per_class`` images of every world class, in memory, prompted with a strategy (or template)."""
    classes = [c for c in WORLD_CLASSES for _ in range(images_per_class)]
    strategy = prompt_strategy(prompt)
    prompts = [strategy(c, k % images_per_class, seed) for k, c in enumerate(classes)]
    seeds = [stable_seed(seed, "sweep", k) for k in range(len(prompts))]
    images = sample(pipe, prompts, guidance_scale, steps, seeds)
    return ImageSet(images, torch.tensor([WORLD_CLASSES.index(c) for c in classes]))


@torch.no_grad()
def sample(pipe, prompts: list[str], guidance_scale: float, steps: int, seeds: list[int],
           batch_size: int = 72) -> torch.Tensor:
    """uint8 images (N, 3, H, W) from a pipeline, one seeded CPU generator per image (as ``generate`` does)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds[i : i + batch_size]]
        arr = pipe(prompt=prompts[i : i + batch_size], guidance_scale=guidance_scale, num_inference_steps=steps,
                   generator=gens, output_type="np").images
        out.append(torch.from_numpy((arr * 255).round().astype(np.uint8)).permute(0, 3, 1, 2))
    return torch.cat(out)


# ----------------------------------------------------------------------------- diversity

SATURATION = 0.35  # object pixels are at least 0.7 * 0.55 saturated-ish; backgrounds stay below ~0.15


def object_statistics(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: object area (pixels), centroid (x, y), object brightness (its mean largest channel), background
    brightness and texture (std of brightness)."""
    x = images.float().numpy() / 255  # (N, 3, H, W)
    hi, lo = x.max(1), x.min(1)
    sat = (hi - lo) / np.maximum(hi, 1e-6)
    mask = sat > SATURATION
    area = mask.sum((1, 2)).astype(float)
    n, h, w = mask.shape
    yy, xx = np.mgrid[:h, :w]
    denom = np.maximum(area, 1)
    cx, cy = (mask * xx).sum((1, 2)) / denom, (mask * yy).sum((1, 2)) / denom
    luma = x.mean(1)
    bg = ~mask
    bg_n = np.maximum(bg.sum((1, 2)), 1)
    bg_mean = (luma * bg).sum((1, 2)) / bg_n
    bg_std = np.sqrt(np.maximum(((luma - bg_mean[:, None, None]) ** 2 * bg).sum((1, 2)) / bg_n, 0))
    value = (hi * mask).sum((1, 2)) / denom
    return {"area": area, "x": cx, "y": cy, "value": value, "bg_level": bg_mean, "bg_texture": bg_std}


def diversity(images: torch.Tensor) -> dict[str, float]:
    """The spread (standard deviation) of each object statistic over a set of images, and the mean object size and
    brightness (``area_mean``, ``value_mean``): a spread alone does not say that every object grew."""
    stats = object_statistics(images)
    return {**{k: round(float(v.std()), 4) for k, v in stats.items()},
            "area_mean": round(float(stats["area"].mean()), 2), "value_mean": round(float(stats["value"].mean()), 4)}


# ----------------------------------------------------------------------------- the report of 01

SWEEP_GUIDANCE = (2.0, 7.5)  # ImageNet-SD's low guidance, and Stable Diffusion's usual one


def clone_report(cfg, out_dir, pipe, judges, sweep_images_per_class: int = 2, sweep_guidance=SWEEP_GUIDANCE,
                 log=print) -> dict | None:
    """Fidelity and diversity of the world clone in ``out_dir`` (a ``GenerateConfig``'s), against real images;
    then of a sample of every prompt strategy at every guidance scale (``sweep_guidance`` and the clone's own).
    ``judges``: a ``WorldJudges``, or a function that loads them (called only for a world clone). None for a
    clone of ImageNet classes: the judges know the world only."""
    if not is_world(cfg.classes):
        return None
    judges = judges if isinstance(judges, WorldJudges) else judges(device=pipe.device, log=log)
    t0 = time.time()
    clone = read_world_folder(out_dir)
    real = real_world_set(max(1, len(clone) // len(WORLD_CLASSES)), seed=cfg.seed)
    guidance = sorted({*sweep_guidance, cfg.guidance_scale})
    sweep = {}
    for prompt in STRATEGIES:
        for g in guidance:
            images = sample_world(pipe, prompt, g, sweep_images_per_class, cfg.steps, cfg.seed)
            sweep.setdefault(prompt, {})[f"{g:g}"] = {**judges.fidelity(images), "diversity": diversity(images.pixels)}
    log(f"clone measured in {time.time() - t0:.0f}s ({len(clone)} images, then {len(STRATEGIES) * len(guidance)} "
        f"samples of {sweep_images_per_class * len(WORLD_CLASSES)} images)")
    return {"judges_real_top1": judges.real_top1,
            "clone": {"prompt": cfg.prompt, "guidance_scale": cfg.guidance_scale, "images": len(clone),
                      **judges.fidelity(clone)},
            "diversity": {"clone": diversity(clone.pixels), "real": diversity(real.pixels)},
            "sweep": sweep, "sweep_images_per_class": sweep_images_per_class}


# The fidelity and diversity columns of a table row (``fidelity_cells``), with their markdown alignment.
FIDELITY_COLUMNS = ("| shape (%) | colour (%) | both (%) | object size: mean, spread | position spread | "
                    "object brightness: mean, spread | background texture spread |")
FIDELITY_ALIGN = "---:|" * 7


def fidelity_cells(f: dict, d: dict) -> str:
    """The cells under ``FIDELITY_COLUMNS``: judged fidelity ``f`` and diversity ``d`` (``diversity()``)."""
    return f"| {f['shape']:.1f} | {f['colour']:.1f} | {f['both']:.1f} | {spreads(d)} |"


def spreads(d: dict) -> str:
    """Table cells: object size (mean, spread), position spread, brightness (mean, spread), background texture."""
    return (f"{d['area_mean']:.0f}, {d['area']:.0f} | {(d['x'] + d['y']) / 2:.2f} | {d['value_mean']:.2f}, "
            f"{d['value']:.3f} | {d['bg_texture']:.3f}")


def report_tables(report: dict | None) -> str:
    """Markdown: fidelity of the clone and of every strategy x guidance sample; diversity against real images."""
    if report is None:
        return ("*Fidelity and diversity are measured for clones of the offline world's classes (`classes = "
                "\"world\"`): the judges are classifiers of the world.*")
    c = report["clone"]
    lines = [f"**The clone** ({c['images']} images, `{c['prompt']}`, guidance {c['guidance_scale']:g}): shape "
             f"{c['shape']:.1f} %, colour {c['colour']:.1f} %, both {c['both']:.1f} % (the judges on real test "
             f"images: shape {report['judges_real_top1']['shape']:.1f} %, colour "
             f"{report['judges_real_top1']['colour']:.1f} %)", "",
             f"| prompt | guidance {FIDELITY_COLUMNS}", f"|---|---:|{FIDELITY_ALIGN}"]
    real = report["diversity"]["real"]
    for prompt, by_g in report["sweep"].items():
        for g, r in by_g.items():
            lines.append(f"| `{prompt}` | {g} {fidelity_cells(r, r['diversity'])}")
    lines.append(f"| *real images* | | | | | {spreads(real)} |")
    return "\n".join(lines)
