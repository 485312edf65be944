"""Can augmentation starve a distillation step? Augmentation throughput beside the step's, in images/s.

Distillation augments on the training device (``workbench.data.augment``: torchvision v2 on tensors, image by
image, each image's draws seeded by its place in the batch); the official UNIC code augments in its loader's
worker processes instead. Prints, for one configuration:

1. augmentation on the step's device, in the training process (what ``distill`` does): ``unic`` and ``light``;
2. the same transforms in DataLoader worker processes (the official placement), with this machine's cores;
3. the distillation step (fused ladder, teachers, student forward and backward, AdamW), on the same device;

and the share of a step that augmenting its batch takes. Inputs are decoded images already in memory (the
loader's side, decoding, is not counted: it is the same whichever way augmentation is done).

    python benchmarks/augment.py                       # ViT-S/16 student, two ViT-S/16 teachers, 224 px
    python benchmarks/augment.py --student wb_vitc_tiny_patch8_32 --teachers world_colour,world_shape \
        --image-size 32 --batch 64                     # the offline world's default 03 run
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader, Dataset

from workbench import create_teacher
from workbench.core.device import pick_device
from workbench.core.precision import autocast
from workbench.core.training import configure_optimizer
from workbench.data.augment import Augmentation, augmentation_pipeline
from workbench.distillation import UNIC, distill_forward, teacher_feature_shapes
from workbench.layers.standardize import batch_weight
from workbench.models import Student


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: torch.device) -> float:
    """The fastest of ``repeats`` calls, after one warm-up, in seconds."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


class Views(Dataset):
    """Decoded images in memory, augmented one by one in the worker that reads them (the official placement)."""

    def __init__(self, images: torch.Tensor, kind: str, size: int):
        self.images, self.pipeline = images, augmentation_pipeline(kind, size)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.pipeline(self.images[i])


def in_workers(images: torch.Tensor, kind: str, size: int, batch: int, workers: int) -> float:
    """Images/s of augmentation in ``workers`` DataLoader processes (started once, as a training run does)."""
    loader = DataLoader(Views(images, kind, size), batch_size=batch, num_workers=workers, persistent_workers=True)
    for _ in loader:  # warm-up: the workers start
        pass
    t0 = time.perf_counter()
    n = 0
    for views in loader:
        n += len(views)
    return n / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", default="vit_small_patch16_224")
    parser.add_argument("--teachers", default="vit_small_patch16_224,deit3_small_patch16_224")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device, size = pick_device(args.device), args.image_size
    decoded = round(size * 1.5)  # image folders are decoded at 1.5x the input side, then cropped (distill)
    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, decoded, decoded)
    print(f"device        {device} ({torch.get_num_threads()} threads; {args.workers} loader workers)")
    print(f"config        student {args.student}, teachers {args.teachers}, batch {args.batch}, {size} px "
          f"(decoded at {decoded} px)")

    # 1-2. augmentation: on the step's device, and in worker processes
    rates = {}
    on_device = images.to(device)
    for kind in ("unic", "light"):
        augment = Augmentation(kind, size)
        rates[(kind, "device")] = args.batch / timed(lambda a=augment: a(on_device, step=0), args.repeats, device)
        rates[(kind, "workers")] = in_workers(images.repeat(4, 1, 1, 1), kind, size, args.batch, args.workers)

    # 3. the distillation step, its inputs already augmented
    teachers = {n: create_teacher(n, pretrained=False).to(device) for n in args.teachers.split(",")}
    views = Augmentation("unic", size)(on_device)
    dims, grids = teacher_feature_shapes(teachers, views[:2])
    model = UNIC(Student(args.student, img_size=size), dims, grids).to(device)
    opt = configure_optimizer(model, 1e-4, 0.05)
    gen, amp = torch.Generator().manual_seed(0), autocast("bf16" if device.type == "cuda" else "fp32", device)

    def step():
        loss, _, _ = distill_forward(model, teachers, views, batch_weight(1, 100), 0.5, gen, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step_rate = args.batch / timed(step, args.repeats, device)

    print(f"\n{'':48s}{'images/s':>10s}{'share of a step':>18s}")
    for kind in ("unic", "light"):
        share = step_rate / rates[(kind, "device")]
        print(f"{f'augment {kind}, on {device.type} in the training process':48s}"
              f"{rates[(kind, 'device')]:10.1f}{share:17.0%}")
        print(f"{f'augment {kind}, {args.workers} loader workers':48s}{rates[(kind, 'workers')]:10.1f}")
    print(f"{'distillation step (fused ladder)':48s}{step_rate:10.1f}")
    print("(share of a step: the time to augment a batch on the step's device over the time of the step itself)")


if __name__ == "__main__":
    main()
