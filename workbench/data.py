"""Datasets as the notebooks see them: a train and a test split, and one or more labelled tasks.

``load_data("world")`` gives the built-in offline world (tasks ``shape`` and ``colour``);
``load_data("path/to/folder")`` reads an ImageFolder (``<class>/<image>``), either with ``train/``
and ``val/`` sub-folders (ImageNet layout) or a single folder split 80/20 per class. Images come
out as float tensors in [0, 1]; every model applies its own resizing and normalisation.

Real folders hold bad files. Images of any size and mode (grayscale, 16-bit, palette, RGBA, CMYK)
are converted to RGB (transparency over white) and resized; unreadable or truncated files are
skipped and listed in each batch (``Batch.skipped``) for the caller to count and report
(``skipped_report``); class folders without images are reported (``Data.empty_classes``), and only a
folder with no image at all is an error.
"""
from __future__ import annotations

import hashlib
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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
                img = to_rgb(img)
                img = TF.center_crop(TF.resize(img, self.image_size, antialias=True), self.image_size)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
            return None, f"{path}: {type(err).__name__}: {err}"  # unreadable or truncated: skipped and reported
        return TF.to_tensor(img), {self.task: torch.tensor(y)}


def to_rgb(img):
    """Any PIL image as 8-bit RGB: transparency composited over white, 16/32-bit grey scaled, CMYK converted."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit or float grey: scale to 8 bits, not clip
        import numpy as np

        a = np.asarray(img, dtype=np.float64)
        peak = float(a.max()) if a.size else 0.0
        # the range the format implies: 16-bit files (PIL may open them as "I"), floats in [0, 1] or [0, 255]
        top = next(t for t in (1.0, 255.0, 65535.0, peak) if peak <= t) if img.mode in ("I", "F") else 65535.0
        top = 255.0 if img.mode == "I" and top == 1.0 else top
        img = Image.fromarray((np.clip(a / top, 0, 1) * 255).round().astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


class EpochSampler(Sampler[int]):
    """The indices of one epoch, from position ``start`` on: a permutation decided by (seed, epoch) alone.

    torch's RandomSampler draws each epoch's order from a generator it advances, so epoch 5 can only
    be rebuilt by replaying epochs 0-4. Here any epoch can be rebuilt after a restart, and ``start``
    skips the samples already seen: a resumed run continues at the exact next batch.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, epoch: int = 0, start: int = 0):
        self.n, self.shuffle, self.seed, self.epoch, self.start = n, shuffle, seed, epoch, start

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        key = hashlib.sha256(f"epoch-order/{self.seed}/{self.epoch}".encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2**63 - 1))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        return iter(self.order()[self.start :])

    def __len__(self):
        return max(0, self.n - self.start)


@dataclass
class Data:
    name: str
    train: Dataset
    test: Dataset
    tasks: dict[str, tuple[str, ...]]  # task -> class names
    image_size: int
    fingerprint: str  # identifies the exact images and labels: keys the feature cache
    empty_classes: dict[str, list[str]] = field(default_factory=dict)  # split -> class folders without images

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0, workers: int | None = None,
               epoch: int = 0, start: int = 0, rank: int = 0, world_size: int = 1):
        """Batches of (images, {task: labels}); files are decoded in worker processes, memory needs none.

        With ``shuffle`` the order is a function of (``seed``, ``epoch``); ``start`` skips that many
        samples of the epoch's order (a resumed run continues where it stopped). ``rank``/``world_size``:
        this process's share of a distributed run (``ShardSampler``: rank r takes positions r, r + N, ...
        of the order after ``start``), ``batch_size`` then being the per-rank batch. On CUDA batches come
        in pinned memory, so that ``.to(device, non_blocking=True)`` overlaps the copy with compute."""
        from .distributed import ShardSampler

        ds = self.train if split == "train" else self.test
        if workers is None:  # the machine's cores, shared by its ranks
            local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size)) if world_size > 1 else 1
            workers = 0 if isinstance(ds, InMemorySplit) else min(8, max(1, (os.cpu_count() or 1) // local))
        sampler = EpochSampler(len(ds), shuffle=shuffle, seed=seed, epoch=epoch, start=start)
        if world_size > 1:
            sampler = ShardSampler(sampler, rank, world_size)
        # the generator only seeds worker processes; without it each new iterator would draw from torch's global RNG
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, generator=gen, num_workers=workers,
                          collate_fn=_collate, drop_last=False, pin_memory=torch.cuda.is_available())

    def describe(self) -> str:
        tasks = ", ".join(f"{t} ({len(c)} classes)" for t, c in self.tasks.items())
        text = f"{self.name}: {len(self.train)} train / {len(self.test)} test images of {self.image_size}px; tasks: {tasks}"
        for split, classes in self.empty_classes.items():
            if classes:
                text += f"; {len(classes)} class folder(s) without {split} images: {', '.join(classes[:10])}" + (
                    " ..." if len(classes) > 10 else "")
        return text

    def first_image(self, split: str = "train") -> torch.Tensor:
        """The first readable image of a split, (1, 3, H, W), read without touching any random generator."""
        ds = self.train if split == "train" else self.test
        for i in range(len(ds)):
            x, _ = ds[i]
            if x is not None:
                return x.unsqueeze(0)
        raise ValueError(f"no readable image in the {split} split of {self.name!r}")


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


def _scan(folder: Path) -> tuple[list[str], list[tuple[Path, int]], list[str]]:
    """Class names, (file, class index) samples, and the class folders that hold no image file."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{folder} has no class folders: expected <class>/<image> (or train/ and val/ holding them)")
    samples, empty = [], []
    for k, c in enumerate(classes):
        files = sorted(p for p in (folder / c).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            empty.append(c)
        samples += [(p, k) for p in files]
    if not samples:
        raise ValueError(f"{folder}: no image files in any class folder (extensions {sorted(IMAGE_EXTENSIONS)})")
    if empty:
        warnings.warn(f"{folder}: {len(empty)} class folder(s) with no images: {', '.join(empty[:10])}"
                      f"{' ...' if len(empty) > 10 else ''}. They stay in the label set; add images or remove them.",
                      stacklevel=4)
    return classes, samples, empty


def _load_image_folder(root: Path, image_size: int, seed: int) -> Data:
    if not root.exists():
        raise FileNotFoundError(f"data path {str(root)!r} does not exist; use data='world' for the built-in offline "
                                "world, or the path of an ImageFolder (<class>/<image>)")
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes, train, empty_train = _scan(root / "train")
        val_classes, test, empty_test = _scan(root / "val")
        if val_classes != classes:
            raise ValueError(f"{root}: train/ and val/ hold different class folders")
    else:
        classes, samples, empty_train = _scan(root)
        empty_test = list(empty_train)
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
    if not train:
        raise ValueError(f"{root}: no training images (every class has a single image, which goes to the test split)")
    return Data(root.name, ImageFolderSplit(train, image_size, "classes"), ImageFolderSplit(test, image_size, "classes"),
                {"classes": tuple(classes)}, image_size, fingerprint, {"train": empty_train, "test": empty_test})


def skipped_report(data: Data, split: str, skipped: list[str]) -> dict:
    """Count unreadable files (``"path: reason"`` entries, each once) per class; name the classes left with no
    readable image in the split."""
    ds = data.train if split == "train" else data.test
    files = sorted({s.split(": ", 1)[0] for s in skipped})
    report = {"count": len(files), "files": files, "by_class": {}, "classes_without_readable_images": []}
    if isinstance(ds, ImageFolderSplit):
        names = data.tasks[ds.task]
        label = {str(p): y for p, y in ds.samples}
        total = {}
        for _, y in ds.samples:
            total[y] = total.get(y, 0) + 1
        for f in files:
            c = names[label[f]] if f in label else "?"
            report["by_class"][c] = report["by_class"].get(c, 0) + 1
        report["classes_without_readable_images"] = [names[y] for y in sorted(total)
                                                     if report["by_class"].get(names[y], 0) == total[y]]
    return report
