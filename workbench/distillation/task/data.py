"""The images of task-specific distillation: a few labelled ones, extra ones without labels, the test split.

Labelled images are few (``labels_per_class``), so they are held in memory and seen again every few
steps (``workbench.data.labelled``, the set every student classifier trains on); extra distillation images
carry the teacher's knowledge to the student, fresh ones every step where possible: rendered by the offline
world, the rest of the training split with labels hidden, or a folder of images such as 01's synthetic clone.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import torch

from ...core.preemption import ignore_stop_signals
from ...data import IMAGE_EXTENSIONS, Data, ImageFolderSplit, InMemorySplit, collate, image_files, world
from ...data.labelled import Labelled
from ...probing import few_shot_indices


def labelled_subset(data: Data, task: str, per_class: int, seed: int) -> Labelled:
    """``per_class`` random training images of each class of ``task`` (unreadable files are skipped)."""
    indices = few_shot_indices(data.train.labels[task], per_class, seed)
    images, labels, kept = [], [], []
    for i in indices.tolist():
        x, y = data.train[i]
        if x is not None:
            images.append(x)
            labels.append(y[task])
            kept.append(i)
    if not images:
        raise ValueError(f"no readable labelled image in the training split of {data.name!r}")
    pixels = (torch.stack(images) * 255).round().to(torch.uint8)
    return Labelled(pixels, torch.stack(labels).long(), torch.tensor(kept))


def extra_images(source: str, data: Data, labelled: Labelled, batch_size: int,
                 seed: int) -> Iterator[torch.Tensor] | None:
    """Endless batches of distillation images without labels, or None for ``source="none"``."""
    if source == "none":
        return None
    if source == "world":
        if data.name != "world":
            raise ValueError(f"extra='world' renders offline-world images, but the data is {data.name!r}; give a "
                             "folder of extra images (e.g. the synthetic clone from 01), 'unlabelled' or 'none'")
        return _rendered(batch_size, seed)
    if source == "unlabelled":
        rest = sorted(set(range(len(data.train))) - set(labelled.indices.tolist()))
        if not rest:
            raise ValueError("extra='unlabelled' but every training image is labelled; lower labels_per_class")
        return _loaded(torch.utils.data.Subset(data.train, rest), batch_size, seed)
    files = image_files(source)
    if not files:
        raise ValueError(f"no image ({', '.join(sorted(IMAGE_EXTENSIONS))}) under the extra folder {source!r}")
    return _loaded(ImageFolderSplit([(p, 0) for p in files], data.image_size, "none"), batch_size, seed)


def _rendered(batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Fresh offline-world images every call, from seeds no split of ``load_data`` uses."""
    cfg, i = world.WorldConfig(), 0
    while True:
        images, _ = world.render(cfg, batch_size, seed=[50_000, seed, i])
        yield images.float() / 255
        i += 1


def _loaded(dataset, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    in_memory = isinstance(getattr(dataset, "dataset", dataset), InMemorySplit)  # a Subset, or the split itself
    workers = 0 if in_memory else min(8, os.cpu_count() or 1)  # image files are decoded in worker processes
    loader = torch.utils.data.DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=True,
                                         generator=torch.Generator().manual_seed(seed), num_workers=workers,
                                         collate_fn=collate, drop_last=True, persistent_workers=workers > 0,
                                         worker_init_fn=ignore_stop_signals if workers else None)
    while True:
        for batch in loader:
            if batch.images is not None:
                yield batch.images


def eval_batches(data: Data, task: str, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The task's test split, streamed (unreadable files skipped)."""
    for batch in data.loader("test", batch_size):
        if batch.images is not None:
            yield batch.images, batch.labels[task]
