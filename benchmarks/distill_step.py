"""Throughput of one UNIC distillation step, and how much of the machine's matmul speed it reaches.

Config (issue 2): ViT-S/16 student, two ViT-S/16 teachers, 224 px, batch 32, full ladder, running
standardization, teacher dropping. FLOPs are counted by torch's FlopCounterMode over one whole step
(teacher forwards, student and ladder forward and backward); the reference is a dense fp32 matmul
timed in the same process. Prints images/s, achieved FLOP/s, and their ratio (target >= 0.5 on CPU).

    python benchmarks/distill_step.py [--batch 32] [--steps 3] [--device auto]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from workbench import create_teacher
from workbench.distill import UNIC, autocast_for, distill_step, pick_device, teacher_feature_shapes
from workbench.standardize import batch_weight
from workbench.students import Student


def matmul_flops_per_s(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--student", default="vit_small_patch16_224")
    parser.add_argument("--teachers", default="vit_small_patch16_224,deit3_small_patch16_224")
    parser.add_argument("--ladder", default="all")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.manual_seed(0)
    teachers = {n: create_teacher(n, pretrained=False).to(device) for n in args.teachers.split(",")}
    images = torch.rand(args.batch, 3, 224, 224, device=device)
    dims, grids = teacher_feature_shapes(teachers, images[:2])
    model = UNIC(Student(args.student), dims, grids, ladder=args.ladder).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = autocast_for(device)
    gen = torch.Generator().manual_seed(0)

    def step(i):
        loss, _, _ = distill_step(model, teachers, images, batch_weight(i, 100), 0.5, gen, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step(0)
    flops_per_step = counter.get_total_flops()
    step(1)  # warm-up
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(2 + i)
    sync(device)
    seconds = (time.perf_counter() - t0) / args.steps
    peak = matmul_flops_per_s(device)

    achieved = flops_per_step / seconds
    print(f"device                 {device} ({torch.get_num_threads()} threads)")
    print(f"config                 student {args.student}, teachers {args.teachers}, batch {args.batch}, 224px, "
          f"ladder {args.ladder}")
    print(f"step time              {seconds:.3f} s")
    print(f"images/s               {args.batch / seconds:.1f}")
    print(f"FLOPs per step         {flops_per_step / 1e9:.1f} GFLOP")
    print(f"achieved               {achieved / 1e9:.1f} GFLOP/s")
    print(f"dense fp32 matmul      {peak / 1e9:.1f} GFLOP/s")
    print(f"fraction of matmul     {achieved / peak:.2f}  (target >= 0.5 on CPU)")
    if device.type == "cuda":
        print(f"peak memory            {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
