"""Datasets as the notebooks see them: a train and a test split, and one or more labelled tasks.

``load_data("world")`` gives the built-in offline world (tasks ``shape`` and ``colour``);
``load_data("path/to/folder")`` reads an ImageFolder (``<class>/<image>``), either with ``train/``
and ``val/`` sub-folders (ImageNet layout) or a single folder split 80/20 per class. Images come
out as float tensors in [0, 1]; every model applies its own resizing and normalisation.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from . import world
from .io import config_hash

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


class InMemorySplit(Dataset):
    """uint8 images (N, 3, H, W) and a label vector per task, all in memory."""

    def __init__(self, images: torch.Tensor, labels: dict[str, torch.Tensor]):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i].float() / 255, {t: y[i] for t, y in self.labels.items()}


class ImageFolderSplit(Dataset):
    """Files listed up front; decoded, resized (shorter side) and centre-cropped on access."""

    def __init__(self, samples: list[tuple[Path, int]], image_size: int, task: str):
        self.samples, self.image_size, self.task = samples, image_size, task
        self.labels = {task: torch.tensor([y for _, y in samples])}

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image
        import torchvision.transforms.functional as TF

        path, y = self.samples[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                img = TF.center_crop(TF.resize(img, self.image_size, antialias=True), self.image_size)
        except (OSError, ValueError) as err:  # unreadable or truncated: skipped and counted by the collate
            return None, f"{path}: {err}"
        return TF.to_tensor(img), {self.task: torch.tensor(y)}


@dataclass
class Data:
    name: str
    train: Dataset
    test: Dataset
    tasks: dict[str, tuple[str, ...]]  # task -> class names
    image_size: int
    fingerprint: str  # identifies the exact images and labels: keys the feature cache

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0, workers: int | None = None,
               rank: int = 0, world_size: int = 1):
        """Batches of (images, {task: labels}); files are decoded in worker processes, memory needs none.

        ``rank``/``world_size``: this process's share of a distributed run (``ShardSampler``):
        ``batch_size`` is then the per-rank batch. On CUDA, batches come in pinned memory, so that
        ``.to(device, non_blocking=True)`` overlaps the copy with compute."""
        from torch.utils.data import RandomSampler, SequentialSampler

        from .distributed import ShardSampler

        ds = self.train if split == "train" else self.test
        if workers is None:  # the node's cores, shared by its ranks
            local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size)) if world_size > 1 else 1
            workers = 0 if isinstance(ds, InMemorySplit) else min(8, max(1, (os.cpu_count() or 1) // local))
        gen = torch.Generator().manual_seed(seed)
        # ShardSampler reads each epoch's order whole, so the generator advances by the same draws per epoch
        # whatever the number of processes and however far a consumer iterates: every rank, and a one-process
        # run, see the same sequence of epoch orders
        sampler = ShardSampler(RandomSampler(ds, generator=gen) if shuffle else SequentialSampler(ds), rank, world_size)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, generator=gen, num_workers=workers,
                          collate_fn=_collate, drop_last=False, pin_memory=torch.cuda.is_available(),
                          persistent_workers=workers > 0)

    def describe(self) -> str:
        tasks = ", ".join(f"{t} ({len(c)} classes)" for t, c in self.tasks.items())
        return f"{self.name}: {len(self.train)} train / {len(self.test)} test images of {self.image_size}px; tasks: {tasks}"


class Batch(NamedTuple):
    images: torch.Tensor | None  # (B, 3, H, W) in [0, 1]; None when no image of the batch was readable
    labels: dict[str, torch.Tensor]
    skipped: list[str]  # unreadable files, with the reason


def _collate(items) -> Batch:
    good = [(x, y) for x, y in items if x is not None]
    skipped = [y for x, y in items if x is None]
    if not good:
        return Batch(None, {}, skipped)
    images = torch.stack([x for x, _ in good])
    labels = {t: torch.stack([y[t] for _, y in good]) for t in good[0][1]}
    return Batch(images, labels, skipped)


def load_data(data: str = "world", n_train: int = 6000, n_test: int = 2000, image_size: int = 224, seed: int = 0) -> Data:
    """``"world"`` for the offline world, or the path of an ImageFolder."""
    if data == "world":
        cfg = world.WorldConfig()
        tr = world.make_split(cfg, n_train, seed=20_000 + seed)
        te = world.make_split(cfg, n_test, seed=30_000 + seed)
        tasks = {t: tr.classes[t] for t in ("shape", "colour")}
        keep = lambda s: {t: s.labels[t] for t in tasks}  # noqa: E731
        fingerprint = config_hash({"world": world.config_dict(cfg), "version": world.VERSION, "n": [n_train, n_test],
                                   "seed": seed})
        return Data("world", InMemorySplit(tr.images, keep(tr)), InMemorySplit(te.images, keep(te)), tasks,
                    cfg.image_size, fingerprint)
    return _load_image_folder(Path(data), image_size, seed)


def _scan(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{folder} has no class folders: expected <class>/<image> (or train/ and val/ holding them)")
    samples, empty = [], []
    for k, c in enumerate(classes):
        files = sorted(p for p in (folder / c).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            empty.append(c)
        samples += [(p, k) for p in files]
    if empty:
        raise ValueError(f"{folder}: class folder(s) with no images: {', '.join(empty[:10])}"
                         f"{' ...' if len(empty) > 10 else ''}. Remove them or add images.")
    return classes, samples


def _load_image_folder(root: Path, image_size: int, seed: int) -> Data:
    if not root.exists():
        raise FileNotFoundError(f"data path {str(root)!r} does not exist; use data='world' for the built-in offline "
                                "world, or the path of an ImageFolder (<class>/<image>)")
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes, train = _scan(root / "train")
        val_classes, test = _scan(root / "val")
        if val_classes != classes:
            raise ValueError(f"{root}: train/ and val/ hold different class folders")
    else:
        classes, samples = _scan(root)
        rng = random.Random(seed)
        train, test = [], []
        for k in range(len(classes)):
            items = [s for s in samples if s[1] == k]
            rng.shuffle(items)
            cut = max(1, round(0.2 * len(items))) if len(items) > 1 else 0
            test += items[:cut]
            train += items[cut:]
    listing = [(str(p), y, p.stat().st_size, p.stat().st_mtime_ns) for p, y in train + test]
    fingerprint = config_hash({"root": str(root.resolve()), "files": listing, "size": image_size, "split": len(train)})
    return Data(root.name, ImageFolderSplit(train, image_size, "classes"), ImageFolderSplit(test, image_size, "classes"),
                {"classes": tuple(classes)}, image_size, fingerprint)
