"""Dense benchmarks: a label per pixel (semantic segmentation) or a depth per pixel, in the published layouts.

    classes, train, test = read_ade20k(root)     # [(image, annotation)] pairs of the official splits
    DenseSplit(train, 224, "segmentation", "segmentation", decode_ade20k)

- **ADE20K** (SceneParsing, ``ADEChallengeData2016``): 150 classes; annotation value 0 ("other") is ignored and
  the rest shift down by one (mmsegmentation's ``reduce_zero_label``, as in DINOv2's evaluation).
- **Pascal VOC 2012** (torchvision's ``VOCSegmentation``): 21 classes with background; 255 (object borders) is
  ignored; the official ``train`` / ``val`` image sets.
- **NYU Depth v2** (the layout of the Monocular-Depth-Estimation-Toolbox that DINOv2 evaluates with:
  ``nyu/nyu_train.txt`` and ``nyu/nyu_test.txt`` listing RGB and 16-bit depth PNGs in millimetres): depth in
  metres, valid between 1e-3 and 10 m and inside the Eigen crop (rows 45-471, columns 41-601 of a 480x640 frame);
  invalid pixels are 0.

Images and maps go through the same geometry: the shorter side resized to ``image_size`` (maps with nearest
neighbour), then the centre crop. The papers evaluate at full resolution (sliding windows); here every image is
one ``image_size`` square, so figures are for comparing models with each other, not with the papers' tables.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset

from .folders import UNREADABLE_IMAGE, ResizeCrop, to_rgb

IGNORE = 255  # a segmentation label that no class has: not scored
NYU_MAX_DEPTH = 10.0
NYU_MIN_DEPTH = 1e-3
EIGEN_CROP = (45, 471, 41, 601)  # rows, columns of the Eigen et al. evaluation crop of a 480x640 NYU frame
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train",
               "tv monitor")


def decode_ade20k(img: Image.Image) -> np.ndarray:
    """ADE20K annotation values 0-150 -> class 0-149, 0 ("other") ignored."""
    a = np.asarray(img, dtype=np.int64)
    return np.where(a == 0, IGNORE, a - 1).astype(np.uint8)


def decode_voc(img: Image.Image) -> np.ndarray:
    """VOC palette indices: 0-20 the classes, 255 the ignored object borders."""
    return np.asarray(img, dtype=np.uint8)


def decode_nyu(img: Image.Image) -> np.ndarray:
    """16-bit PNG in millimetres -> metres; 0 outside the valid range and outside the Eigen crop."""
    depth = np.asarray(img, dtype=np.float32) / 1000.0
    depth = np.where((depth > NYU_MIN_DEPTH) & (depth < NYU_MAX_DEPTH), depth, 0.0).astype(np.float32)
    if depth.shape == (480, 640):
        crop = np.zeros_like(depth)
        r0, r1, c0, c1 = EIGEN_CROP
        crop[r0:r1, c0:c1] = depth[r0:r1, c0:c1]
        depth = crop
    return depth


class DenseSplit(Dataset):
    """(image, annotation) file pairs, decoded on access to the same ``image_size`` square."""

    def __init__(self, samples: list[tuple[Path, Path]], image_size: int, task: str,
                 decode: Callable[[Image.Image], np.ndarray]):
        self.samples, self.image_size, self.task, self.decode = samples, image_size, task, decode
        self.resize_crop = ResizeCrop(image_size)  # the image as image folders decode it; the map below alike

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        image_path, target_path = self.samples[i]
        try:
            with Image.open(image_path) as img:
                image = to_rgb(img)
            with Image.open(target_path) as ann:
                target = self.decode(ann)
        except UNREADABLE_IMAGE as err:
            return None, f"{image_path}: {type(err).__name__}: {err}"  # unreadable: skipped and reported
        if target.shape != (image.height, image.width):
            return None, f"{target_path}: annotation is {target.shape[1]}x{target.shape[0]}, image {image.size}"
        size = self.image_size
        mode = "F" if target.dtype == np.float32 else "L"
        target = Image.fromarray(target, mode)
        target = TF.center_crop(TF.resize(target, size, interpolation=TF.InterpolationMode.NEAREST), size)
        dtype = torch.float32 if mode == "F" else torch.long
        return self.resize_crop(image), {self.task: torch.as_tensor(np.array(target), dtype=dtype)}


def _pairs(root: Path, images: str, annotations: str, image_ext: str, ann_ext: str) -> list[tuple[Path, Path]]:
    files = sorted((root / images).glob(f"*{image_ext}"))
    return [(f, root / annotations / f"{f.stem}{ann_ext}") for f in files]


def read_ade20k(root: Path):
    """(class names, train pairs, validation pairs) of ``<root>/ADEChallengeData2016``."""
    base = root / "ADEChallengeData2016"
    names = [f"class {k}" for k in range(1, 151)]
    info = base / "objectInfo150.txt"  # Idx Ratio Train Val Name (tab-separated), shipped with the release
    if info.is_file():
        for line in info.read_text().splitlines()[1:]:
            cols = line.split("\t")
            if len(cols) >= 5 and cols[0].strip().isdigit() and 1 <= int(cols[0]) <= 150:
                names[int(cols[0]) - 1] = cols[4].split(";")[0].strip()
    splits = [_pairs(base, f"images/{s}", f"annotations/{s}", ".jpg", ".png") for s in ("training", "validation")]
    return tuple(names), *splits


def read_voc2012(root: Path):
    """(class names, train pairs, val pairs) through torchvision's ``VOCSegmentation`` (year 2012)."""
    parts = [tvd.VOCSegmentation(root, year="2012", image_set=s) for s in ("train", "val")]
    return VOC_CLASSES, *[[(Path(i), Path(m)) for i, m in zip(ds.images, ds.masks)] for ds in parts]


def read_nyu(root: Path):
    """(("depth",), train pairs, test pairs) of ``<root>/nyu`` and its split files (lines without depth left out)."""
    base = root / "nyu"
    splits = []
    for name in ("nyu_train.txt", "nyu_test.txt"):
        pairs = []
        for line in (base / name).read_text().splitlines():
            cols = line.split()
            if len(cols) >= 2 and cols[1] != "None":
                pairs.append((base / cols[0].lstrip("/\\"), base / cols[1].lstrip("/\\")))
        splits.append(sorted(pairs))
    return ("depth",), *splits
