"""ImageFolders: ``<class>/<image>`` folders, with ``train/`` and ``val/`` (ImageNet layout) or split here.

Real folders hold bad files. Images of any size and mode (grayscale, 16-bit, palette, RGBA, CMYK)
are converted to RGB (transparency over white) and resized; unreadable or truncated files are
skipped and listed in each batch for the caller to count and report (``skipped_report``); class
folders without images are reported (``Data.empty_classes``), and only a folder with no image at all
is an error.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset

from ..core.errors import DataError, MissingFile
from ..core.files import config_hash
from .datasets import Data

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}
# What PIL raises for a file that is not a readable image (broken, truncated, too large): skipped and reported.
UNREADABLE_IMAGE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageFolderSplit(Dataset):
    """Files listed up front; decoded on access, then ``transform`` (PIL image -> tensor in [0, 1]), by default
    the shorter side resized to ``image_size`` and the centre cropped."""

    def __init__(self, samples: list[tuple[Path, int]], image_size: int, task: str, transform: Callable | None = None):
        self.samples, self.image_size, self.task = samples, image_size, task
        self.transform = transform or ResizeCrop(image_size)
        self.labels = {task: torch.tensor([y for _, y in samples])}

    def with_transform(self, transform: Callable) -> ImageFolderSplit:
        """The same files, decoded with another transform (a model's own evaluation preprocessing)."""
        return ImageFolderSplit(self.samples, self.image_size, self.task, transform)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, y = self.samples[i]
        try:
            with Image.open(path) as img:
                image = self.transform(to_rgb(img))
        except UNREADABLE_IMAGE as err:
            return None, f"{path}: {type(err).__name__}: {err}"  # unreadable or truncated: skipped and reported
        return image, {self.task: torch.tensor(y)}


class ResizeCrop:
    """The default decoding: the shorter side to ``size`` (bilinear, antialiased), the centre crop, [0, 1]."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img) -> torch.Tensor:
        return TF.to_tensor(TF.center_crop(TF.resize(img, self.size, antialias=True), self.size))


def to_rgb(img):
    """Any PIL image as 8-bit RGB: transparency composited over white, 16/32-bit grey scaled, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit or float grey: scale to 8 bits, not clip
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


def image_files(folder) -> list[Path]:
    """Every image file below ``folder`` (any depth), sorted; hidden files (temporaries) are left out."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def scan_folder(folder: Path) -> tuple[list[str], list[tuple[Path, int]], list[str]]:
    """Class names, (file, class index) samples, and the class folders that hold no image file."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} has no class folders: expected <class>/<image> (or train/ and val/ holding them)")
    samples, empty = [], []
    for k, c in enumerate(classes):
        files = sorted(p for p in (folder / c).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            empty.append(c)
        samples += [(p, k) for p in files]
    if not samples:
        raise DataError(f"{folder}: no image files in any class folder (extensions {sorted(IMAGE_EXTENSIONS)})")
    if empty:
        warnings.warn(f"{folder}: {len(empty)} class folder(s) with no images: {', '.join(empty[:10])}"
                      f"{' ...' if len(empty) > 10 else ''}. They stay in the label set; add images or remove them.",
                      stacklevel=4)
    return classes, samples, empty


MINIMUM = ("one class folder with 2 images (one to train on, one to test), or train/ and val/ class folders "
           "with an image each")  # what the smallest folder a run accepts holds, as the messages state it


def split_folder(root: Path, seed: int, what: str = "data") -> tuple[list[str], list, list, list[str], list[str]]:
    """An ImageFolder's classes and its (file, class) train and test samples: train/ and val/ where it has them,
    else a fifth of each class's images (at least one, for a class of two or more) held out with ``seed``. Raises
    ``DataError`` (naming the parameter ``what``) for a folder a run cannot use, stating the minimum."""
    if not root.exists():
        raise MissingFile(f"{what} {str(root)!r} does not exist; use data='world' for the built-in offline world, or "
                          "the path of an ImageFolder (<class>/<image>)")
    if not root.is_dir():
        raise DataError(f"{what} {str(root)!r} is a file; give the folder of an ImageFolder (<class>/<image>)")
    try:
        if (root / "train").is_dir() and (root / "val").is_dir():
            classes, train, empty_train = scan_folder(root / "train")
            val_classes, test, empty_test = scan_folder(root / "val")
            if val_classes != classes:
                raise DataError(f"{root}: train/ and val/ hold different class folders")
        else:
            classes, samples, empty_train = scan_folder(root)
            empty_test = list(empty_train)
            rng = random.Random(seed)
            train, test = [], []
            for k in range(len(classes)):
                items = [s for s in samples if s[1] == k]
                rng.shuffle(items)
                cut = max(1, round(0.2 * len(items))) if len(items) > 1 else 0
                test += items[:cut]
                train += items[cut:]
    except DataError as err:
        raise DataError(f"{what}: {err}. The smallest folder a run takes: {MINIMUM}") from None
    except OSError as err:
        raise DataError(f"{what} {str(root)!r} cannot be read ({err}); check its permissions") from err
    if not train or not test:
        raise DataError(f"{what} {str(root)!r} has {len(train)} training and {len(test)} test images: a run needs "
                        f"both. The smallest folder a run takes: {MINIMUM}")
    return classes, train, test, empty_train, empty_test


def check_image_folder(root: Path, what: str = "data") -> tuple[int, int, int, int]:
    """The ImageFolder a run will read, checked before it claims its out_dir: (classes, training images, test
    images, training images of the smallest class). Warns where a result cannot mean anything: one class, fewer
    test images than classes."""
    classes, train, test, _, _ = split_folder(root, seed=0, what=what)
    if len(classes) == 1:
        warnings.warn(f"{what} {str(root)!r} holds one class ({classes[0]!r}): every classifier is right on every "
                      "image, so accuracies say nothing. Add a second class folder.", stacklevel=2)
    elif len(test) < len(classes):
        warnings.warn(f"{what} {str(root)!r} has {len(test)} test images for {len(classes)} classes: some classes "
                      "are never tested, and one image more or less moves an accuracy by "
                      f"{100 / len(test):.0f} points.", stacklevel=2)
    per_class = [0] * len(classes)
    for _, y in train:
        per_class[y] += 1
    return len(classes), len(train), len(test), min(per_class)


def load_image_folder(root: Path, image_size: int, seed: int, what: str = "data") -> Data:
    classes, train, test, empty_train, empty_test = split_folder(root, seed, what)
    listing = [(str(p), y, p.stat().st_size, p.stat().st_mtime_ns) for p, y in train + test]
    fingerprint = config_hash({"root": str(root.resolve()), "files": listing, "size": image_size, "split": len(train)})
    return Data(root.name, ImageFolderSplit(train, image_size, "classes"),
                ImageFolderSplit(test, image_size, "classes"),
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
