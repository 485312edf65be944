"""A small labelled training set held in memory, as a supervised student sees it: endless random batches, each
image flipped and shifted at random.

One concept, a few labelled images trained on for many steps, shared by every student classifier of the
workbench (05's students and fine-tuned teachers, 06's students): they are few, so they are kept as uint8
(they were decoded from 8 bits) and seen again every few steps; the light augmentation keeps the student from
memorising their exact pixels. Every draw comes from the caller's ``torch.Generator``: a seeded student sees the
same batches and views every time. (``augment`` here is this flip and shift; ``workbench.data.augment`` is the
UNIC pipeline of 03's distillation.)
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Labelled:
    """The few labelled training images of a task, held in memory as uint8 (they were decoded from 8 bits)."""

    pixels: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the training split

    @property
    def images(self) -> torch.Tensor:
        return self.pixels.float() / 255

    def batches(self, batch_size: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless random batches of float images in [0, 1], every image once per pass."""
        batch_size = min(batch_size, len(self.labels))
        while True:
            order = torch.randperm(len(self.labels), generator=gen)
            for i in range(0, len(order) - batch_size + 1, batch_size):
                idx = order[i : i + batch_size]
                yield self.pixels[idx].float() / 255, self.labels[idx]


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 1/16 of the side (reflected border)."""
    n, _, h, w = images.shape
    pad = max(1, h // 16)
    flip = torch.rand(n, generator=gen) < 0.5
    images = torch.where(flip.view(n, 1, 1, 1), images.flip(-1), images)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
