"""Frozen features: a model encodes a split once; the features are cached on disk, keyed by weights and data.

    train, test = split_features(encoder, data, ("train", "test"), device)  # cached under $WORKBENCH_CACHE/features
    train, test = split_features(encoder, data, cache=False)                # or computed afresh

Unreadable images are skipped and listed (``FeatureSet.skipped``), never fatal.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from safetensors import safe_open

from ..core.files import cache_dir, config_hash, load_tensors, save_tensors
from ..core.progress import progress
from ..models import Features


@dataclass
class Encoder:
    """A model as the probes see it: a name, images in [0, 1] -> pooled features, and the module (its weights
    key the feature cache). ``cache_key`` tells apart several features of one model (``name/patch_mean``);
    ``features``, images -> ``Features`` (CLS and patch tokens on their grid), is what the dense probes read.
    Image files are decoded by the module's ``preprocessing`` (teachers and students have one), so each model
    reads them as its authors' evaluation does."""

    name: str
    encode: Callable[[torch.Tensor], torch.Tensor]
    module: torch.nn.Module
    cache_key: str = ""
    features: Callable[[torch.Tensor], Features] | None = None
    preprocessing: object = None  # how image files are decoded for it (a ``Preprocessing``); default: the module's

    def decoded(self, data):
        """``data`` with its image files decoded as this model's release evaluates (in-memory data unchanged)."""
        p = self.preprocessing or getattr(self.module, "preprocessing", None)
        return data if p is None else data.with_transform(p.image_transform(), key=f"eval-{p}")

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.module)


@dataclass
class FeatureSet:
    x: torch.Tensor  # (N, D) float32, CPU
    labels: dict[str, torch.Tensor]
    skipped: list[str] = field(default_factory=list)  # unreadable images (path: reason)


PROGRESS_MIN_IMAGES = 10_000  # a split this large gets a progress bar while it is encoded


@torch.no_grad()
def extract_features(encode: Callable[[torch.Tensor], torch.Tensor], data, split: str, device,
                     batch_size: int = 256) -> FeatureSet:
    """Run ``encode`` over a split (the labels of its image-level tasks kept beside). Unreadable images are skipped
    and listed, never fatal."""
    feats, labels, skipped = [], {}, []
    loader = data.loader(split, batch_size)
    bar = progress(loader, desc=f"features of {data.name}/{split}", unit="batch",
                   disable=len(loader.dataset) < PROGRESS_MIN_IMAGES)
    for images, ys, bad in bar:
        skipped += bad
        if images is None:
            continue
        with torch.inference_mode():
            feats.append(encode(images.to(device)).float().cpu())
        for t, y in ys.items():
            if t not in data.dense:  # maps are for the dense probes, which read patch tokens
                labels.setdefault(t, []).append(y)
    if not feats:
        raise ValueError(f"no readable image in the {split} split of {data.name!r}")
    return FeatureSet(torch.cat(feats), {t: torch.cat(v) for t, v in labels.items()}, skipped)


def model_fingerprint(model: torch.nn.Module) -> str:
    """Cheap identity of a model's weights: names, shapes and two moments of every tensor."""
    parts = []
    for k, v in model.state_dict().items():
        v = v.detach().float()
        parts.append((k, tuple(v.shape), round(v.sum().item(), 4), round(v.abs().sum().item(), 4)))
    return config_hash({"weights": parts})


def cached_features(name: str, fingerprint: str, encode, data, split: str, device, kind: str = "cls",
                    log=print) -> FeatureSet:
    """Features from ``$WORKBENCH_CACHE/features``, keyed by model, data and feature kind; built when absent.

    A file whose recorded model, data, kind or size do not match (or that cannot be read) is rebuilt.
    """
    key = {"model": name, "weights": fingerprint, "data": data.fingerprint, "split": split, "kind": kind}
    path = cache_dir("features") / f"{name.replace('/', '_')}-{split}-{config_hash(key)}.safetensors"
    if path.exists():
        try:
            tensors = load_tensors(path)
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            expected = len(data.train if split == "train" else data.test)
            if meta.get("key") == config_hash(key) and int(meta.get("n_total", -1)) == expected:
                labels = {k[len("label/"):]: v for k, v in tensors.items() if k.startswith("label/")}
                skipped = [s for s in meta.get("skipped", "").split("\n") if s]
                return FeatureSet(tensors["x"], labels, skipped)
            log(f"  feature cache {path.name} does not match this model/data: rebuilding")
        except Exception as err:  # unreadable or truncated cache file: rebuild it
            log(f"  feature cache {path.name} unreadable ({type(err).__name__}): rebuilding")
    fs = extract_features(encode, data, split, device)
    total = len(data.train if split == "train" else data.test)
    save_tensors({"x": fs.x, **{f"label/{t}": y for t, y in fs.labels.items()}}, path,
                 metadata={"key": config_hash(key), "n_total": str(total), "skipped": "\n".join(fs.skipped)})
    return fs


def split_features(encoder: Encoder, data, splits=("train", "test"), device="cpu", cache: bool = True,
                   log=print) -> list[FeatureSet]:
    """The features of each split: from the cache (built when absent), or computed afresh with ``cache=False``."""
    data = encoder.decoded(data)
    if not cache:
        return [extract_features(encoder.encode, data, split, device) for split in splits]
    fingerprint = encoder.fingerprint  # the weights, hashed once for every split
    name = encoder.cache_key or encoder.name
    return [cached_features(name, fingerprint, encoder.encode, data, split, device, log=log) for split in splits]


@torch.no_grad()
def encode_images(encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device,
                  batch_size: int = 256) -> torch.Tensor:
    """Features (float32, CPU) of images held in memory: uint8 (divided by 255 a batch at a time) or in [0, 1]."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(device)
            out.append(encode(x.float() / 255 if x.dtype == torch.uint8 else x).float().cpu())
    return torch.cat(out)
