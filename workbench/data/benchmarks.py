"""The field's transfer benchmarks by name, read from a local copy in each dataset's own published layout.

    root = benchmark_root("flowers", data_root="/data")          # /data/flowers (one folder per dataset)
    data = load_benchmark("flowers", root, image_size=224)     # Data: the official train / test split

Nothing is downloaded: each dataset is read through torchvision's own dataset class (``download=False``), so
the folder a ``torchvision.datasets.<Class>(root, download=True)`` call leaves on a machine with network is what
``root`` must hold. A root that is missing or incomplete fails at once (``DatasetNotFound``), naming the dataset,
the files it lacks, the layout expected and how to get it.

**Splits.** Each dataset takes the split t-ReX and UNIC report (Sariyildiz et al., ICLR 2023; ECCV 2024; their
``transfer/data`` code): train + val of the official split as training set where a dataset has both, the official
test set as test set; DTD's first of its ten partitions; SUN397's first partition (``Training_01.txt`` /
``Testing_01.txt``); EuroSAT, which has none, the 13,500 / 5,400 / 8,100 split of Feng et al. (ICLR 2022) that
t-ReX draws (810 test and 540 validation images per class, seeded here); iNaturalist's ``train<year>.json`` /
``val<year>.json``; ImageNet-1K's train and val folders. Every split is listed in ``BENCHMARKS`` (``split``).

**Reading.** torchvision's classes take a ``loader``; given one that returns the path, indexing a dataset lists
its (file, label) pairs without opening a file, and the files are then decoded like any ImageFolder
(``workbench.data.folders``: any image mode, unreadable files skipped and reported). The classes that check
md5 sums of their annotation files (Flowers102, CIFAR) are read without the check: a re-packed or partial
copy reads too, and a copy whose size differs from the official one is reported (``Data.describe``).
"""
from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd

from ..core.errors import DatasetNotFound, ParameterError
from ..core.files import config_hash
from .cog import WNID as COG_WNID
from .cog import CogRules, cog_selection, load_cog_level
from .datasets import Data, InMemorySplit
from .dense import DenseSplit, decode_ade20k, decode_nyu, decode_voc, read_ade20k, read_nyu, read_voc2012
from .folders import ImageFolderSplit

LABEL = "classes"  # the label of a benchmark's images, as of an ImageFolder


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    folder: str  # what the root holds: the folder torchvision's class reads ("" when the root itself is it)
    required: tuple[str, ...]  # paths below the root that must exist
    layout: str  # the expected tree, one entry a line, below the root
    source: str  # how to get it
    split: str  # the train / test split used
    official: tuple[int, int] | None  # training and test images of the whole dataset
    n_classes: int
    read: Callable[[Path], tuple[tuple[str, ...], list, list]]  # root -> (classes, train, test)
    kind: str = "classification"  # or "segmentation", "depth": a dense task, read as (image, annotation) pairs
    decode: Callable | None = None  # dense: an annotation image -> its map (``workbench.data.dense``)

    @property
    def label(self) -> str:
        """The name of its labels in the ``Data``: ``classes``, or the dense kind."""
        return LABEL if self.kind == "classification" else self.kind


def _path(path):
    """A torchvision ``loader`` that returns the path: indexing the dataset then lists it without opening a file."""
    return Path(path)


def _listing(ds) -> list[tuple[Path, int]]:
    return [(Path(p), int(y)) for p, y in (ds[i] for i in range(len(ds)))]


def _same_classes(name: str, *datasets) -> tuple[str, ...]:
    classes = [tuple(ds.classes) for ds in datasets]
    if any(c != classes[0] for c in classes[1:]):
        raise DatasetNotFound(f"{name}: its split files name different classes ({[len(c) for c in classes]}); the "
                              "copy is incomplete")
    return classes[0]


# ----------------------------------------------------------------------------- readers, one per dataset

def _aircraft(root: Path):
    train, test = (tvd.FGVCAircraft(root, split=s, annotation_level="variant", loader=_path)
                   for s in ("trainval", "test"))
    return tuple(train.classes), _listing(train), _listing(test)


def _cars(root: Path):
    train, test = (tvd.StanfordCars(root, split=s, loader=_path) for s in ("train", "test"))
    return tuple(train.classes), _listing(train), _listing(test)


def _dtd(root: Path):
    parts = {s: tvd.DTD(root, split=s, partition=1, loader=_path) for s in ("train", "val", "test")}
    classes = _same_classes("dtd", *parts.values())
    return classes, _listing(parts["train"]) + _listing(parts["val"]), _listing(parts["test"])


def _eurosat(root: Path):
    ds = tvd.EuroSAT(root, loader=_path)
    train, test = [], []
    for label in range(len(ds.classes)):
        files = sorted(Path(p) for p, y in ds.samples if y == label)
        random.Random(f"eurosat/{ds.classes[label]}").shuffle(files)
        # t-ReX: 810 test, 540 validation, the rest training images per class (of 2,000-3,000); a partial copy 30 %
        n_test = 810 if len(files) >= 1350 else round(0.3 * len(files))
        test += [(p, label) for p in files[:n_test]]
        train += [(p, label) for p in files[n_test:]]
    return tuple(ds.classes), train, test


class _Flowers102(tvd.Flowers102):
    """Flowers102 without the md5 check of its two .mat files (a re-packed copy reads too)."""

    _file_dict = {key: (name, None) for key, (name, _) in tvd.Flowers102._file_dict.items()}


def _flowers(root: Path):
    parts = {s: _Flowers102(root, split=s, loader=_path) for s in ("train", "val", "test")}
    return tuple(tvd.Flowers102.classes), _listing(parts["train"]) + _listing(parts["val"]), _listing(parts["test"])


def _food101(root: Path):
    train, test = (tvd.Food101(root, split=s, loader=_path) for s in ("train", "test"))
    return tuple(train.classes), _listing(train), _listing(test)


def _pets(root: Path):
    train, test = (tvd.OxfordIIITPet(root, split=s) for s in ("trainval", "test"))
    # OxfordIIITPet opens its images itself (it takes no loader): its file list and labels are read from the instance
    listing = [list(zip(ds._images, ds._labels)) for ds in (train, test)]
    return tuple(train.classes), *[[(Path(p), int(y)) for p, y in part] for part in listing]


def _sun397(root: Path):
    ds = tvd.SUN397(root, loader=_path)
    base = root / "SUN397"
    partitions = {}
    for kind in ("Training", "Testing"):
        found = [f for f in (root / f"{kind}_01.txt", base / f"{kind}_01.txt") if f.is_file()]
        partitions[kind] = {line.strip().strip("/") for line in found[0].read_text().splitlines() if line.strip()}
    train, test = [], []
    for path, label in _listing(ds):
        key = path.relative_to(base).as_posix()
        if key in partitions["Training"]:
            train.append((path, label))
        elif key in partitions["Testing"]:
            test.append((path, label))
    return tuple(ds.classes), train, test


def _inat(year: str):
    def read(root: Path):
        ds = tvd.INaturalist(root, version=year, target_type="full", loader=_path)
        base = root / year
        by_file = {p.relative_to(base).as_posix(): (p, y) for p, y in _listing(ds)}
        splits = []
        for kind in ("train", "val"):
            images = json.loads((root / f"{kind}{year}.json").read_text())["images"]
            # file_name is "train_val<year>/<super-category>/<id>/<file>": torchvision's folder is <year>/
            names = [im["file_name"].split("/", 1)[1] for im in images]
            missing = [n for n in names if n not in by_file]
            if missing:
                raise DatasetNotFound(f"inat{year}: {len(missing)} images of {kind}{year}.json are not under {base} "
                                      f"(e.g. {missing[0]}); the copy is incomplete")
            splits.append([by_file[n] for n in names])
        return tuple(ds.all_categories), splits[0], splits[1]
    return read


class _CIFAR10(tvd.CIFAR10):
    """CIFAR-10 without the md5 check of its pickled batches (a re-packed copy reads too)."""

    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100(tvd.CIFAR100):
    """CIFAR-100 without the md5 check of its pickled batches."""

    train_list = [[name, None] for name, _ in tvd.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


def _cifar(cls):
    def read(root: Path):
        # CIFAR is 32x32 arrays in memory: (uint8 images (N, 3, 32, 32), labels) instead of a file list
        parts = [cls(root, train=flag) for flag in (True, False)]
        arrays = [(torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))), torch.tensor(ds.targets))
                  for ds in parts]
        return tuple(parts[0].classes), arrays[0], arrays[1]
    return read


def _in1k(root: Path):
    train, val = (tvd.ImageFolder(root / s, loader=_path) for s in ("train", "val"))
    classes = _same_classes("in1k", train, val)
    return classes, [(Path(p), y) for p, y in train.samples], [(Path(p), y) for p, y in val.samples]


# ----------------------------------------------------------------------------- the registry

def _torchvision(cls: str, args: str) -> str:
    return (f"on a machine with network, `torchvision.datasets.{cls}(<root>{args}, download=True)` writes this "
            "layout under <root>; copy <root> here")


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("aircraft", "FGVC-Aircraft (variants)", "fgvc-aircraft-2013b",
              ("fgvc-aircraft-2013b/data/images", "fgvc-aircraft-2013b/data/variants.txt",
               "fgvc-aircraft-2013b/data/images_variant_trainval.txt",
               "fgvc-aircraft-2013b/data/images_variant_test.txt"),
              "fgvc-aircraft-2013b/data/images/<id>.jpg\nfgvc-aircraft-2013b/data/variants.txt\n"
              "fgvc-aircraft-2013b/data/images_variant_{trainval,test}.txt",
              _torchvision("FGVCAircraft", ""), "trainval / test, 100 variants", (6667, 3333), 100, _aircraft),
    Benchmark("cars", "Stanford Cars", "stanford_cars",
              ("stanford_cars/devkit/cars_meta.mat", "stanford_cars/devkit/cars_train_annos.mat",
               "stanford_cars/cars_train", "stanford_cars/cars_test", "stanford_cars/cars_test_annos_withlabels.mat"),
              "stanford_cars/devkit/{cars_meta.mat,cars_train_annos.mat}\nstanford_cars/cars_train/<file>.jpg\n"
              "stanford_cars/cars_test/<file>.jpg\nstanford_cars/cars_test_annos_withlabels.mat",
              "the original URL is gone (torchvision cannot download it): copy Stanford Cars from a mirror (e.g. "
              "Kaggle's 'stanford-cars-dataset') into this layout", "train / test", (8144, 8041), 196, _cars),
    Benchmark("dtd", "Describable Textures", "dtd",
              ("dtd/dtd/images", "dtd/dtd/labels/train1.txt", "dtd/dtd/labels/val1.txt", "dtd/dtd/labels/test1.txt"),
              "dtd/dtd/images/<class>/<file>.jpg\ndtd/dtd/labels/{train,val,test}1.txt",
              _torchvision("DTD", ""), "partition 1: train + val / test", (3760, 1880), 47, _dtd),
    Benchmark("eurosat", "EuroSAT (RGB)", "eurosat", ("eurosat/2750",), "eurosat/2750/<class>/<file>.jpg",
              _torchvision("EuroSAT", ""), "per class 810 test images, the rest (train + val) training (t-ReX, "
              "after Feng et al. 2022), drawn with a fixed seed", (18900, 8100), 10, _eurosat),
    Benchmark("flowers", "Oxford 102 Flowers", "flowers-102",
              ("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
              "flowers-102/jpg/image_<nnnnn>.jpg\nflowers-102/imagelabels.mat\nflowers-102/setid.mat",
              _torchvision("Flowers102", ""), "train + val / test", (2040, 6149), 102, _flowers),
    Benchmark("food101", "Food-101", "food-101",
              ("food-101/images", "food-101/meta/train.json", "food-101/meta/test.json"),
              "food-101/images/<class>/<id>.jpg\nfood-101/meta/{train,test}.json",
              _torchvision("Food101", ""), "train / test", (75750, 25250), 101, _food101),
    Benchmark("pets", "Oxford-IIIT Pets", "oxford-iiit-pet",
              ("oxford-iiit-pet/images", "oxford-iiit-pet/annotations/trainval.txt",
               "oxford-iiit-pet/annotations/test.txt"),
              "oxford-iiit-pet/images/<breed>_<n>.jpg\noxford-iiit-pet/annotations/{trainval,test}.txt",
              _torchvision("OxfordIIITPet", ""), "trainval / test, 37 breeds", (3680, 3669), 37, _pets),
    Benchmark("sun397", "SUN397", "SUN397", ("SUN397/ClassName.txt",),
              "SUN397/ClassName.txt\nSUN397/<letter>/<scene>/sun_<id>.jpg\n"
              "Training_01.txt and Testing_01.txt (the official partitions), here or in SUN397/",
              _torchvision("SUN397", "") + "; the partitions are Partitions.zip of the SUN database site "
              "(vision.princeton.edu/projects/2010/SUN/download/Partitions.zip)",
              "partition 1: Training_01 / Testing_01 (50 + 50 images per class)", (19850, 19850), 397, _sun397),
    Benchmark("inat2018", "iNaturalist 2018", "2018", ("2018", "train2018.json", "val2018.json"),
              "2018/<super-category>/<category id>/<file>.jpg (train_val2018.tar.gz, renamed 2018/ as torchvision "
              "does)\ntrain2018.json\nval2018.json",
              _torchvision("INaturalist", ", version='2018'") + ", then add train2018.json and val2018.json (the "
              "competition's annotations)", "train2018.json / val2018.json", (437513, 24426), 8142, _inat("2018")),
    Benchmark("inat2019", "iNaturalist 2019", "2019", ("2019", "train2019.json", "val2019.json"),
              "2019/<super-category>/<category id>/<file>.jpg (train_val2019.tar.gz, renamed 2019/ as torchvision "
              "does)\ntrain2019.json\nval2019.json",
              _torchvision("INaturalist", ", version='2019'") + ", then add train2019.json and val2019.json (the "
              "competition's annotations)", "train2019.json / val2019.json", (265213, 3030), 1010, _inat("2019")),
    Benchmark("cifar10", "CIFAR-10", "cifar-10-batches-py",
              tuple(f"cifar-10-batches-py/{n}" for n in ("data_batch_1", "data_batch_2", "data_batch_3",
                                                          "data_batch_4", "data_batch_5", "test_batch",
                                                          "batches.meta")),
              "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
              _torchvision("CIFAR10", ""), "train / test", (50000, 10000), 10, _cifar(_CIFAR10)),
    Benchmark("cifar100", "CIFAR-100", "cifar-100-python",
              tuple(f"cifar-100-python/{n}" for n in ("train", "test", "meta")),
              "cifar-100-python/{train,test,meta}", _torchvision("CIFAR100", ""), "train / test", (50000, 10000), 100,
              _cifar(_CIFAR100)),
    Benchmark("in1k", "ImageNet-1K (ILSVRC-2012)", "", ("train", "val"),
              "train/<wnid>/<file>.JPEG\nval/<wnid>/<file>.JPEG (the validation images sorted into class folders)",
              "download ILSVRC-2012 from image-net.org (an account is needed) and sort val/ into class folders",
              "train / val", (1281167, 50000), 1000, _in1k),
    Benchmark("ade20k", "ADE20K (SceneParsing, 150 classes)", "ADEChallengeData2016",
              ("ADEChallengeData2016/images/training", "ADEChallengeData2016/images/validation",
               "ADEChallengeData2016/annotations/training", "ADEChallengeData2016/annotations/validation"),
              "ADEChallengeData2016/images/{training,validation}/<name>.jpg\n"
              "ADEChallengeData2016/annotations/{training,validation}/<name>.png\n"
              "ADEChallengeData2016/objectInfo150.txt (optional: the class names)",
              "download ADEChallengeData2016.zip (MIT Scene Parsing, sceneparsing.csail.mit.edu) and unzip it here",
              "training / validation", (20210, 2000), 150, read_ade20k, "segmentation", decode_ade20k),
    Benchmark("voc2012", "Pascal VOC 2012 segmentation", "VOCdevkit",
              ("VOCdevkit/VOC2012/JPEGImages", "VOCdevkit/VOC2012/SegmentationClass",
               "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt",
               "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"),
              "VOCdevkit/VOC2012/JPEGImages/<id>.jpg\nVOCdevkit/VOC2012/SegmentationClass/<id>.png\n"
              "VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt",
              _torchvision("VOCSegmentation", ", year='2012'"), "train / val", (1464, 1449), 21, read_voc2012,
              "segmentation", decode_voc),
    Benchmark("nyud", "NYU Depth v2", "nyu", ("nyu/nyu_train.txt", "nyu/nyu_test.txt"),
              "nyu/nyu_train.txt and nyu/nyu_test.txt (lines: <rgb> <depth png> <focal>, paths below nyu/)\n"
              "nyu/<scene>/rgb_<n>.jpg and nyu/<scene>/sync_depth_<n>.png (16-bit, millimetres)",
              "the BTS / Monocular-Depth-Estimation-Toolbox preparation of NYU Depth v2 (sync/ training scenes, "
              "official_splits/test, and the two split files), unpacked into nyu/",
              "the toolbox's nyu_train.txt / nyu_test.txt (24,231 / 654)", (24231, 654), 1, read_nyu, "depth",
              decode_nyu),
)}


def benchmark_root(name: str, data_root: str | Path | None = None, override: str | Path | None = None,
                   folder: str | None = None) -> Path:
    """Where a named dataset is read from: ``override`` when given, else ``<data_root>/<folder or name>``.
    A root that is the dataset's own inner folder (``/data/flowers-102`` for flowers), its parent holding the whole
    layout, is taken as that parent."""
    if override:
        root = Path(override).expanduser()
    elif data_root:
        root = Path(data_root).expanduser() / (folder or name)
    else:
        raise DatasetNotFound(f"{name}: no folder to read it from; give data_root (one folder per dataset: "
                              f"<data_root>/{folder or name}) or {name}=/path/to/it")
    spec = BENCHMARKS.get(name)
    if spec is not None and spec.folder and root.name == spec.folder and not (root / spec.folder).exists() \
            and all((root.parent / p).exists() for p in spec.required):
        return root.parent
    return root


def check_root(spec, root: Path) -> None:
    """Fail at once, naming what is missing, when ``root`` does not hold the dataset's layout."""
    missing = [p for p in spec.required if not (root / p).exists()]
    if spec.name == "sun397":  # its partitions may sit beside SUN397/ or inside it
        missing += [f"{k}_01.txt" for k in ("Training", "Testing")
                    if not ((root / f"{k}_01.txt").is_file() or (root / "SUN397" / f"{k}_01.txt").is_file())]
    if not root.is_dir() or missing:
        what = "no such folder" if not root.is_dir() else "missing " + ", ".join(missing)
        tree = "\n".join(f"    {line}" for line in spec.layout.splitlines())
        raise DatasetNotFound(f"{spec.name} ({spec.title}): nothing to read at {root} ({what}).\n"
                              f"  Expected layout under {root}:\n{tree}\n"
                              f"  How to get it: {spec.source}.\n"
                              f"  Point to it with data_root (then it is read from <data_root>/{spec.name}) or with "
                              f"{spec.name}=/path/to/it in tasks.")


def load_benchmark(name: str, root: str | Path, image_size: int = 224) -> Data:
    """A named dataset from ``root``, official train / test split, label ``classes`` (a dense one: ``segmentation``
    or ``depth`` maps); files decoded at ``image_size`` (shorter side, centre crop), CIFAR kept at its own 32 px."""
    if name not in BENCHMARKS:
        raise ParameterError(f"unknown dataset {name!r}; known: {', '.join(BENCHMARKS)}")
    spec, root = BENCHMARKS[name], Path(root)
    check_root(spec, root)
    try:
        classes, train, test = spec.read(root)
    except DatasetNotFound:
        raise
    except (RuntimeError, OSError, ValueError, KeyError, IndexError) as err:
        raise DatasetNotFound(f"{name} ({spec.title}): torchvision could not read {root}: {type(err).__name__}: "
                              f"{err}. The copy is incomplete or not in the expected layout:\n    "
                              + spec.layout.replace("\n", "\n    ")) from err
    for part, what in ((train, "training"), (test, "test")):
        if not len(part if isinstance(part, list) else part[1]):
            raise DatasetNotFound(f"{name}: {root} holds no image of the {what} split; the copy is incomplete")
    index = [root / p for p in spec.required if (root / p).is_file()]
    key = {"benchmark": name, "root": str(root.resolve()), "size": image_size,
           "index": [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in index]}
    if isinstance(train, list):
        key["files"] = config_hash({"train": [tuple(map(str, s)) for s in train],
                                    "test": [tuple(map(str, s)) for s in test]})
        if spec.kind == "classification":
            splits = (ImageFolderSplit(train, image_size, LABEL), ImageFolderSplit(test, image_size, LABEL))
        else:
            splits = (DenseSplit(train, image_size, spec.label, spec.decode),
                      DenseSplit(test, image_size, spec.label, spec.decode))
        size = image_size
    else:  # in memory (CIFAR)
        key["arrays"] = [int(t.sum()) for pair in (train, test) for t in pair] + [len(train[0]), len(test[0])]
        splits = tuple(InMemorySplit(images, {LABEL: labels}) for images, labels in (train, test))
        size = int(train[0].shape[-1])
    dense = {} if spec.kind == "classification" else {spec.label: spec.kind}
    data = Data(name, *splits, {spec.label: tuple(str(c) for c in classes)}, size, config_hash(key), dense=dense)
    n_train, n_test = len(splits[0]), len(splits[1])
    if spec.official is not None and (n_train, n_test) != spec.official:
        data.notes.append(f"{n_train} / {n_test} images where the official split has {spec.official[0]} / "
                          f"{spec.official[1]}: a partial copy")
    if spec.kind == "classification":
        labels = {int(y) for _, y in train} if isinstance(train, list) else set(train[1].tolist())
        if len(labels) != spec.n_classes:
            data.notes.append(f"{len(labels)} classes in its training images where the dataset has {spec.n_classes}")
    return data


# ----------------------------------------------------------------------------- tasks by name (02 and 04)

COG_TASK = re.compile(r"cog_l(\d)(?:_(\d+)shot)?")  # cog_l3, cog_l3_16shot
COG_FOLDER = "imagenet21k"  # <data_root>/imagenet21k: the ImageNet-21K copy the CoG levels are drawn from
COG_MAX_SHOTS = 128


@dataclass(frozen=True)
class NamedDataset:
    """A task given by name: which dataset, read from where, with which label and protocol."""

    task: str  # the name as written: flowers, cog_l3, cog_l3_16shot, ade20k
    dataset: str  # the benchmark's name, or cog_l<k>
    root: Path
    label: str  # classes, segmentation or depth
    kind: str  # classification, segmentation or depth
    shots: int | None = None  # CoG few-shot: training images per concept
    description: str = ""

    def check(self) -> None:
        """Fail at once when the root does not hold the dataset (``DatasetNotFound``)."""
        if self.dataset in BENCHMARKS:
            check_root(BENCHMARKS[self.dataset], self.root)
        elif not self.root.is_dir() or not any(COG_WNID.fullmatch(p.name) for p in self.root.iterdir()):
            raise DatasetNotFound(f"{self.task} (ImageNet-CoG level): no ImageNet-21K copy at {self.root} (one folder "
                                  "per synset: <root>/n01440764/<image>.JPEG ...). Download the full ImageNet release "
                                  "from image-net.org (an account is needed), unpack it there, and point to it with "
                                  f"data_root (<data_root>/{COG_FOLDER}) or {self.task}=/path/to/imagenet21k in tasks")

    def load(self, image_size: int = 224, cog_rules: CogRules | None = None, log=print) -> Data:
        self.check()
        if self.dataset in BENCHMARKS:
            return load_benchmark(self.dataset, self.root, image_size)
        selection = cog_selection(self.root, cog_rules or CogRules(), log=log)
        return load_cog_level(selection, int(self.dataset[len("cog_l"):]), image_size)


def is_named_dataset(name: str) -> bool:
    return name in BENCHMARKS or COG_TASK.fullmatch(name) is not None


def named_dataset(item: str, data_root: str | Path | None = None) -> NamedDataset:
    """``flowers``, ``flowers=/data/flowers102``, ``cog_l3``, ``cog_l3_16shot=/data/in21k``, ``ade20k``, ...: what
    to read and from where (``<data_root>/<name>``, ``<data_root>/imagenet21k`` for CoG, or the path given)."""
    name, _, path = (part.strip() for part in item.partition("="))
    if name in BENCHMARKS:
        spec = BENCHMARKS[name]
        return NamedDataset(name, name, benchmark_root(name, data_root, path or None), spec.label, spec.kind,
                            description=f"{spec.title}, {spec.split}")
    match = COG_TASK.fullmatch(name)
    if match is None:
        raise ParameterError(f"{name!r} is not a named dataset; known: {', '.join(BENCHMARKS)}, and the ImageNet-CoG "
                         f"levels cog_l1 ... cog_l5 (few-shot: cog_l3_16shot, 1 to {COG_MAX_SHOTS} images per concept)")
    level, shots = int(match.group(1)), int(match.group(2)) if match.group(2) else None
    rules = CogRules()
    if not 1 <= level <= rules.n_levels:
        raise ParameterError(f"{name}: ImageNet-CoG has levels cog_l1 to cog_l{rules.n_levels}")
    if shots is not None and not 1 <= shots <= COG_MAX_SHOTS:
        raise ParameterError(f"{name}: few-shot CoG takes 1 to {COG_MAX_SHOTS} images per concept, got {shots}")
    root = benchmark_root(name, data_root, path or None, folder=COG_FOLDER)
    what = f"{shots} training images per concept" if shots else "all training images"
    return NamedDataset(name, f"cog_l{level}", root, LABEL, "classification", shots,
                        f"ImageNet-CoG level {level} ({rules.per_level} concepts of ImageNet-21K), {what}")
