"""Training augmentations, applied to a batch on the training device: one random view of each image.

    augment = Augmentation("unic", size=224, seed=0)
    views = augment(images, step, positions)   # (B, 3, H, W) in [0, 1] on any device -> (B, 3, 224, 224)

``unic`` is the official UNIC training pipeline (naver/unic, ``main_unic.py``), in its order:

    RandomResizedCrop(size, scale=(0.08, 1), bicubic, antialiased), RandomHorizontalFlip(0.5),
    ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8, Grayscale with p 0.2, GaussianBlur(9, sigma 0.1 to 5) with
    p 0.2, RandomSolarize(0.5) with p 0.2

``light`` is a crop (scale 0.35 to 1) and a flip; ``none`` resizes only. The transforms are torchvision's (v2),
run image by image on tensors where the batch already is (a GPU's, not the loader's processes): decoding is
all the loader does. Each image's random draws are seeded by (seed, step, its position in the global batch),
so the views do not depend on how many processes share the batch, and a resumed run draws the same ones.
Student and teachers see the same view; each model then resizes and normalises it its own way. Unlike the
official pipeline, which crops each full image (and jitters colours in uint8), the crops are drawn from the
image the loader decoded (its central square, for a batch of one size) and every step works on floats.
"""
from __future__ import annotations

import hashlib

import torch
from torchvision.transforms import v2

AUGMENTATIONS = ("unic", "light", "none")


def augmentation_pipeline(kind: str, size: int) -> v2.Compose:
    """The transforms of one augmentation, for float images in [0, 1] (one image at a time)."""
    bicubic = v2.InterpolationMode.BICUBIC
    if kind == "unic":
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=bicubic, antialias=True),
            ClampToUnit(),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            v2.RandomApply([v2.Grayscale(num_output_channels=3)], p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel_size=9, sigma=(0.1, 5.0))], p=0.2),
            v2.RandomSolarize(threshold=0.5, p=0.2),
        ])
    if kind == "light":
        return v2.Compose([v2.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=bicubic, antialias=True),
                           ClampToUnit(), v2.RandomHorizontalFlip(p=0.5)])
    if kind == "none":
        return v2.Compose([v2.Resize((size, size), interpolation=bicubic, antialias=True), ClampToUnit()])
    raise ValueError(f"augment must be one of {list(AUGMENTATIONS)}, got {kind!r}")


class ClampToUnit(torch.nn.Module):
    """Bicubic resizing overshoots [0, 1] near edges, and colour jitter's HSV conversion turns a negative value
    into NaN; the official pipeline resizes uint8 images, which saturate instead. So do these."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.clamp(0, 1)


class Augmentation:
    """One random view of each image of a batch, at ``size`` x ``size``."""

    def __init__(self, kind: str, size: int, seed: int = 0):
        self.kind, self.size, self.seed = kind, size, seed
        self.pipeline = augmentation_pipeline(kind, size)

    def __call__(self, images: torch.Tensor, step: int = 0, positions=None) -> torch.Tensor:
        """``positions``: each image's place in the step's global batch (default 0, 1, ...); a rank of a
        distributed run passes its own (rank r of N holds r, r + N, ...)."""
        if self.kind == "none" and tuple(images.shape[-2:]) == (self.size, self.size):
            return images
        positions = range(len(images)) if positions is None else positions
        threads = torch.get_num_threads()
        if images.device.type == "cpu":  # one small image at a time: more threads only add their overhead (20x)
            torch.set_num_threads(1)
        try:
            views = []
            for image, position in zip(images, positions):
                with torch.random.fork_rng(devices=[]):  # the transforms draw from torch's CPU generator alone
                    torch.default_generator.manual_seed(view_seed(self.seed, step, int(position)))
                    views.append(self.pipeline(image))
        finally:
            torch.set_num_threads(threads)
        return torch.stack(views)


def view_seed(seed: int, step: int, position: int) -> int:
    """The seed of one image's view: a function of the run's seed, the step and the image's place in the batch."""
    digest = hashlib.sha256(f"view/{seed}/{step}/{position}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
