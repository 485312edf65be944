"""Tiny copies of the field's benchmarks, written in each dataset's published on-disk layout (the files torchvision's
classes, the SUN partitions, the iNaturalist annotations, ADE20K, VOC and the NYU toolbox read).

Every image is flat: red encodes its class (``RED[k]``), green its split (``GREEN_TRAIN`` or ``GREEN_TEST``), and the
files are PNG-encoded whatever their extension (PIL reads by content), so a read-back can check each image's class
and split exactly. ``write(name, root)`` returns what a correct reader must find: the class names as the dataset
reports them, and per split the class name of every image.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

RED = [20 + 20 * k for k in range(12)]
GREEN_TRAIN, GREEN_TEST = 60, 200
SIZE = (12, 10)  # width, height: not square, so the centre crop is exercised


def image(path: Path, k: int, split: str, size=SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixel = (RED[k], GREEN_TRAIN if split == "train" else GREEN_TEST, 128)
    Image.new("RGB", size, pixel).save(path, format="PNG")


def _lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _per_class(classes, n_train=2, n_test=1):
    """(class index, split, image number) of every image: ``n_train`` training and ``n_test`` test images a class."""
    return [(k, s, i) for k in range(len(classes)) for s, n in (("train", n_train), ("test", n_test))
            for i in range(n)]


def aircraft(root: Path):
    classes = ["707-320", "A300B4", "Falcon 900"]  # a variant name with a space: lines split at the first one
    data = root / "fgvc-aircraft-2013b" / "data"
    _lines(data / "variants.txt", classes)
    split = {"train": [], "test": []}
    for n, (k, s, _) in enumerate(_per_class(classes)):
        name = f"{1000001 + n:07d}"
        image(data / "images" / f"{name}.jpg", k, s)
        split[s].append(f"{name} {classes[k]}")
    _lines(data / "images_variant_trainval.txt", split["train"])
    _lines(data / "images_variant_test.txt", split["test"])
    return classes


def cars(root: Path):
    classes = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012"]
    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(classes, dtype=object)[None]})
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    for s, folder, annos in (("train", "cars_train", base / "devkit" / "cars_train_annos.mat"),
                             ("test", "cars_test", base / "cars_test_annos_withlabels.mat")):
        items = [k for k, split, _ in _per_class(classes) if split == s]
        records = np.zeros((1, len(items)), dtype=fields)
        for n, k in enumerate(items):
            fname = f"{n + 1:05d}.jpg"
            image(base / folder / fname, k, s)
            records[0, n] = (1, 1, 10, 8, k + 1, fname)  # classes count from 1 in the annotations
        scipy.io.savemat(annos, {"annotations": records})
    return classes


def dtd(root: Path):
    classes = ["banded", "blotchy", "braided"]
    base = root / "dtd" / "dtd"
    parts = {"train": [], "val": [], "test": []}
    for k, c in enumerate(classes):
        for i, part in enumerate(("train", "val", "test")):
            name = f"{c}/{c}_{i + 1:04d}.jpg"
            image(base / "images" / name, k, "test" if part == "test" else "train")
            parts[part].append(name)
    for part, names in parts.items():
        _lines(base / "labels" / f"{part}1.txt", names)
    _lines(base / "labels" / "test2.txt", parts["train"])  # another partition: not the one read
    return classes


def eurosat(root: Path):
    classes = ["AnnualCrop", "Forest", "Highway"]
    for k, c in enumerate(classes):
        for i in range(5):
            # which files become test images is the reader's seeded draw: green can't tell, so all are "train"
            image(root / "eurosat" / "2750" / c / f"{c}_{i + 1}.jpg", k, "train")
    return classes


def flowers(root: Path):
    from torchvision.datasets import Flowers102

    base = root / "flowers-102"
    labels, ids = [], {"trnid": [], "valid": [], "tstid": []}
    for n, (k, s, i) in enumerate(_per_class(range(3), n_train=2, n_test=2)):
        image(base / "jpg" / f"image_{n + 1:05d}.jpg", k, s)
        labels.append(k + 1)
        ids["tstid" if s == "test" else ("trnid" if i == 0 else "valid")].append(n + 1)  # train + val: training
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([labels])})
    scipy.io.savemat(base / "setid.mat", {k: np.array([v]) for k, v in ids.items()})
    return list(Flowers102.classes[:3])


def food101(root: Path):
    classes = ["apple_pie", "baby_back_ribs", "baklava"]
    base = root / "food-101"
    meta = {"train": {}, "test": {}}
    for n, (k, s, _) in enumerate(_per_class(classes)):
        image(base / "images" / classes[k] / f"{n + 100}.jpg", k, s)
        meta[s].setdefault(classes[k], []).append(f"{classes[k]}/{n + 100}")
    for s, content in meta.items():
        (base / "meta").mkdir(parents=True, exist_ok=True)
        (base / "meta" / f"{s}.json").write_text(json.dumps(content))
    return classes


def pets(root: Path):
    breeds = ["Abyssinian", "american_bulldog", "basset_hound"]  # cats capitalised, dogs not, as the files are
    base = root / "oxford-iiit-pet"
    split = {"train": [], "test": []}
    for n, (k, s, _) in enumerate(_per_class(breeds)):
        name = f"{breeds[k]}_{n + 1}"
        image(base / "images" / f"{name}.jpg", k, s)
        split[s].append(f"{name} {k + 1} {1 if k == 0 else 2} {k + 1}")
    _lines(base / "annotations" / "trainval.txt", split["train"])
    _lines(base / "annotations" / "test.txt", split["test"])
    return ["Abyssinian", "American Bulldog", "Basset Hound"]


def sun397(root: Path):
    scenes = ["/a/abbey", "/b/bedroom", "/k/kitchen"]
    base = root / "SUN397"
    _lines(base / "ClassName.txt", scenes)
    split = {"train": [], "test": []}
    for n, (k, s, _) in enumerate(_per_class(scenes)):
        name = f"{scenes[k]}/sun_{n:04d}aaaa.jpg"
        image(base / name.lstrip("/"), k, s)
        split[s].append(name)
    image(base / "a" / "abbey" / "sun_zzzzextra.jpg", 0, "test")  # in no partition: left out
    _lines(root / "Training_01.txt", split["train"])  # Partitions.zip, unpacked beside SUN397/
    _lines(root / "Testing_01.txt", split["test"])
    return ["abbey", "bedroom", "kitchen"]


def _inat(year: str):
    def write(root: Path):
        supers = ["Animalia", "Plantae", "Plantae"]  # category ids 0, 1, 2 under their super-categories
        content = {"train": {"images": [], "annotations": []}, "val": {"images": [], "annotations": []}}
        for n, (k, s, _) in enumerate(_per_class(supers)):
            rel = f"{supers[k]}/{k}/{n:032x}.jpg"
            image(root / year / rel, k, s)
            part = content["train" if s == "train" else "val"]
            part["images"].append({"id": n, "file_name": f"train_val{year}/{rel}", "width": 12, "height": 10})
            part["annotations"].append({"id": n, "image_id": n, "category_id": k})
        for kind, part in content.items():
            part["categories"] = [{"id": k, "name": f"species {k}", "supercategory": s} for k, s in enumerate(supers)]
            (root / f"{kind}{year}.json").write_text(json.dumps(part))
        return [f"{s}/{k}" for k, s in enumerate(supers)]
    return write


def _cifar(folder: str, train_files: list[str], test_file: str, meta_file: str, label_key: str, names_key: str,
           n_classes: int):
    def write(root: Path):
        base = root / folder
        base.mkdir(parents=True)
        classes = [f"class_{k}" for k in range(n_classes)]

        def batch(items, split):
            data = np.zeros((len(items), 3072), dtype=np.uint8)
            for row, k in enumerate(items):
                data[row, :1024], data[row, 1024:2048] = RED[k], GREEN_TRAIN if split == "train" else GREEN_TEST
                data[row, 2048:] = 128
            return {"data": data, label_key: list(items), "filenames": [f"{i}.png" for i in range(len(items))]}

        parts = np.array_split(np.repeat(np.arange(n_classes), 2), len(train_files))
        for name, items in zip(train_files, parts):
            (base / name).write_bytes(pickle.dumps(batch(items.tolist(), "train")))
        (base / test_file).write_bytes(pickle.dumps(batch(list(range(n_classes)), "test")))
        (base / meta_file).write_bytes(pickle.dumps({names_key: classes}))
        return classes
    return write


def in1k(root: Path):
    classes = ["n01440764", "n01443537", "n01484850"]
    for n, (k, s, _) in enumerate(_per_class(classes)):
        image(root / ("train" if s == "train" else "val") / classes[k] / f"ILSVRC2012_{n:08d}.JPEG", k, s)
    return classes


# ----------------------------------------------------------------------------- dense: (image, map) pairs

def _halves(left: int, right: int, size=(16, 12)) -> np.ndarray:
    w, h = size
    a = np.full((h, w), left, dtype=np.uint8)
    a[:, w // 2 :] = right
    return a


def ade20k(root: Path):
    base = root / "ADEChallengeData2016"
    maps = {}
    for s, folder in (("train", "training"), ("test", "validation")):
        for i in range(3):
            name = f"ADE_{folder[:5]}_{i + 1:08d}"
            image(base / "images" / folder / f"{name}.jpg", i, s, size=(16, 12))
            ann = _halves(i + 1, 0 if i == 2 else i + 2)  # 0: "other", not scored
            (base / "annotations" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(ann, "L").save(base / "annotations" / folder / f"{name}.png")
            maps[(s, i)] = np.where(ann == 0, 255, ann.astype(np.int64) - 1)
    _lines(base / "objectInfo150.txt", ["Idx\tRatio\tTrain\tVal\tName", "1\t0.1\t1\t1\twall",
                                        "2\t0.1\t1\t1\tbuilding;edifice"])
    return maps


def voc2012(root: Path):
    base = root / "VOCdevkit" / "VOC2012"
    maps, ids = {}, {"train": [], "val": []}
    palette = [v for k in range(256) for v in (k, 255 - k, (7 * k) % 256)]
    for s, part in (("train", "train"), ("test", "val")):
        for i in range(3):
            name = f"2007_{len(ids['train']) + len(ids['val']):06d}"
            image(base / "JPEGImages" / f"{name}.jpg", i, s, size=(16, 12))
            ann = _halves(0, i + 1)
            ann[0, :] = 255  # an object border: ignored
            img = Image.fromarray(ann, "P")
            img.putpalette(palette)
            (base / "SegmentationClass").mkdir(parents=True, exist_ok=True)
            img.save(base / "SegmentationClass" / f"{name}.png")
            ids[part].append(name)
            maps[(s, i)] = ann.astype(np.int64)
    for part, names in ids.items():
        _lines(base / "ImageSets" / "Segmentation" / f"{part}.txt", names)
    return maps


def nyud(root: Path):
    base = root / "nyu"
    maps, lines = {}, {"train": [], "test": []}
    for s in ("train", "test"):
        for i in range(3):
            scene = f"kitchen_{i:04d}" if s == "train" else "bathroom"
            rgb, depth = f"{scene}/rgb_{i:05d}.jpg", f"{scene}/sync_depth_{i:05d}.png"
            image(base / rgb, i, s, size=(16, 12))
            mm = _halves(0, 0).astype(np.uint16)
            mm[:, :8] = 1000 * (i + 1)  # metres 1, 2, 3
            mm[:, 8:] = 1500
            mm[0, :] = 0  # no depth measured
            mm[1, :] = 12000  # beyond 10 m: not scored
            Image.fromarray(mm).save(base / depth)
            # the toolbox's training lines start with a slash, its test lines do not
            lines[s].append(f"{'/' if s == 'train' else ''}{rgb} {'/' if s == 'train' else ''}{depth} 518.8579")
            maps[(s, i)] = np.where((mm > 0) & (mm < 10000), mm / 1000.0, 0.0)
    lines["train"].append("/kitchen_0000/rgb_99999.jpg None 518.8579")  # a line without depth: left out
    _lines(base / "nyu_train.txt", lines["train"])
    _lines(base / "nyu_test.txt", lines["test"])
    return maps


WRITERS = {
    "aircraft": aircraft, "cars": cars, "dtd": dtd, "eurosat": eurosat, "flowers": flowers, "food101": food101,
    "pets": pets, "sun397": sun397, "inat2018": _inat("2018"), "inat2019": _inat("2019"),
    "cifar10": _cifar("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                      "labels", "label_names", 10),
    "cifar100": _cifar("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names", 12),
    "in1k": in1k, "ade20k": ade20k, "voc2012": voc2012, "nyud": nyud,
}


def write(name: str, root: Path):
    root.mkdir(parents=True, exist_ok=True)
    return WRITERS[name](root)
