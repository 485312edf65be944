"""Datasets as the notebooks see them: a train and a test split, and one or more labelled tasks.

A ``Data`` holds two splits of images as float tensors in [0, 1] (every model applies its own resizing
and normalisation) and, per task, the class names. ``workbench.data.load_data`` builds one: the
offline world (``InMemorySplit``) or an ImageFolder (``workbench.data.folders``). Unreadable images
come out of a split as ``(None, reason)`` and are set aside in each batch (``Batch.skipped``) for the
caller to count and report.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.distributed import ShardSampler
from ..core.files import config_hash
from ..core.preemption import ignore_stop_signals


class InMemorySplit(Dataset):
    """uint8 images (N, 3, H, W) and a label vector per task, all in memory."""

    def __init__(self, images: torch.Tensor, labels: dict[str, torch.Tensor]):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i].float() / 255, {t: y[i] for t, y in self.labels.items()}


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
    """Two splits and their tasks. A task's labels are one class index per image (-1: outside the task), or for a
    ``dense`` task a map per image: class indices (255: ignored) for segmentation, metres (0: no value) for depth."""

    name: str
    train: Dataset
    test: Dataset
    tasks: dict[str, tuple[str, ...]]  # task -> class names (a depth task: ("depth",))
    image_size: int
    fingerprint: str  # identifies the exact images and labels: keys the feature cache
    empty_classes: dict[str, list[str]] = field(default_factory=dict)  # split -> class folders without images
    dense: dict[str, str] = field(default_factory=dict)  # dense tasks: task -> "segmentation" or "depth"
    notes: list[str] = field(default_factory=list)  # what a reader should know (a partial copy of a benchmark)

    def with_transform(self, transform, key: str, splits: tuple[str, ...] = ("train", "test")) -> Data:
        """The same data, the files of ``splits`` decoded by ``transform`` (PIL image -> tensor in [0, 1]), e.g. a
        model's evaluation preprocessing; ``key`` (what the transform is) joins the fingerprint, so features of
        one transform never stand for another's. Splits held in memory (the offline world) are unchanged."""
        changed = {s: getattr(self, s).with_transform(transform) for s in splits
                   if hasattr(getattr(self, s), "with_transform")}
        if not changed:
            return self
        fingerprint = config_hash({"data": self.fingerprint, "transform": key, "splits": sorted(changed)})
        return replace(self, fingerprint=fingerprint, **changed)

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0, workers: int | None = None,
               epoch: int = 0, start: int = 0, rank: int = 0, world_size: int = 1):
        """Batches of (images, {task: labels}); files are decoded in worker processes, memory needs none.

        With ``shuffle`` the order is a function of (``seed``, ``epoch``); ``start`` skips that many
        samples of the epoch's order (a resumed run continues where it stopped). ``rank``/``world_size``:
        this process's share of a distributed run (``ShardSampler``: rank r takes positions r, r + N, ...
        of the order after ``start``), ``batch_size`` then being the per-rank batch. On CUDA batches come
        in pinned memory, so that ``.to(device, non_blocking=True)`` overlaps the copy with compute."""
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
                          collate_fn=collate, drop_last=False, pin_memory=torch.cuda.is_available(),
                          worker_init_fn=ignore_stop_signals if workers else None)  # the trainer stops after its step

    def describe(self) -> str:
        tasks = ", ".join(f"{t} ({len(c)} classes)" for t, c in self.tasks.items())
        text = (f"{self.name}: {len(self.train)} train / {len(self.test)} test images of {self.image_size}px; "
                f"tasks: {tasks}")
        for split, classes in self.empty_classes.items():
            if classes:
                text += f"; {len(classes)} class folder(s) without {split} images: {', '.join(classes[:10])}" + (
                    " ..." if len(classes) > 10 else "")
        return "; ".join([text, *self.notes])

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


def collate(items) -> Batch:
    """A DataLoader batch of ``(image or None, labels or reason)`` items: unreadable ones are set aside as
    ``skipped``."""
    good = [(x, y) for x, y in items if x is not None]
    skipped = [y for x, y in items if x is None]
    if not good:
        return Batch(None, {}, skipped)
    images = torch.stack([x for x, _ in good])
    labels = {t: torch.stack([y[t] for _, y in good]) for t in good[0][1]}
    return Batch(images, labels, skipped)
