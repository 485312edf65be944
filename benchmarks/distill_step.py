"""Throughput and memory of one UNIC distillation step; fused vs per-block ladder; bf16 vs fp32 on a GPU.

Config (issue 2): ViT-S/16 student, two ViT-S/16 teachers, 224 px, batch 32, full ladder, running
standardization, teacher dropping. Prints:

1. the whole step (fused ladder, the default): images/s, FLOPs counted by torch's FlopCounterMode over
   one step (teacher forwards, student and ladder forward and backward), achieved FLOP/s as a fraction
   of a dense fp32 matmul timed in the same process (target >= 0.5 on CPU), peak memory;
2. the ladder of projectors as batched matrix products (``FusedLadder``) vs one MLP call per block,
   teacher and token type (``Ladder``): images/s of the ladder alone (forward, loss, backward, on the
   student's block outputs) and of the whole step, and peak memory of each;
3. on a GPU: the whole step in bf16 autocast vs fp32 (skipped, and said so, without one).

Each measurement runs in its own process, so that peak memory is its own: on CUDA the peak of
``torch.cuda.max_memory_allocated``; on CPU the process's peak resident set (``getrusage``; torch's
allocations are invisible to tracemalloc), and its rise over the resident set before the first step.
``--repeats R`` alternates the variants R times and keeps each one's best (the machine may be shared).

    python benchmarks/distill_step.py [--batch 32] [--steps 3] [--repeats 1] [--device auto]
    # the offline world's default 03 run (what a CPU runs here): small student, 32 px, batch 64
    python benchmarks/distill_step.py --student wb_vitc_tiny_patch8_32 --teachers world_colour,world_shape \
        --image-size 32 --batch 64
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from workbench import create_teacher
from workbench.core.device import autocast_for, pick_device
from workbench.distillation import UNIC, distill_forward, distillation_loss, teacher_feature_shapes, teacher_losses
from workbench.layers.standardize import batch_weight
from workbench.models import Student


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


def rss_bytes() -> int:
    """Current resident set size (Linux /proc), for the rise of the peak over the start."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


# ----------------------------------------------------------------------------- one measurement (child process)

def build_step(args, what: str, fused: bool, precision: str):
    """(step, device): ``step(i)`` runs training step ``i`` of ``what``: "step" (the whole training step) or
    "ladder" (the ladder alone on fixed block outputs)."""
    device = pick_device(args.device)
    torch.manual_seed(0)
    teachers = {n: create_teacher(n, pretrained=False).to(device) for n in args.teachers.split(",")}
    images = torch.rand(args.batch, 3, args.image_size, args.image_size, device=device)
    dims, grids = teacher_feature_shapes(teachers, images[:2])
    model = UNIC(Student(args.student), dims, grids, ladder=args.ladder, fused_ladder=fused).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = autocast_for(device) if precision == "bf16" else torch.autocast(device.type, enabled=False)
    gen = torch.Generator().manual_seed(0)

    if what == "step":
        def step(i):
            loss, _, _ = distill_forward(model, teachers, images, batch_weight(i, 100), 0.5, gen, amp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        with torch.no_grad(), amp:
            outputs = model.student(images)
            targets = model.targets({t: m(images) for t, m in teachers.items()}, update_weight=1.0)
        outputs = [(c.detach().requires_grad_(), p.detach().requires_grad_()) for c, p in outputs]

        def step(i):
            with amp:
                preds = model.ladder(outputs, model.student.grid, model.teacher_grids)
            loss, _ = distillation_loss(teacher_losses(preds, targets), 0.5, gen)
            model.ladder.zero_grad(set_to_none=True)
            loss.backward()

    return step, device


def measure(args, what: str, fused: bool, precision: str) -> dict:
    """``what``: "step" (the whole training step) or "ladder" (the ladder alone on fixed block outputs)."""
    step, device = build_step(args, what, fused, precision)
    result = {"what": what, "fused": fused, "precision": precision, "device": str(device)}
    sync(device)
    rss_start = rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.flops and what == "step":
        with FlopCounterMode(display=False) as counter:
            step(0)
        result["flops_per_step"] = counter.get_total_flops()
    step(1)  # warm-up (and the first allocation of every buffer)
    sync(device)
    times, cpu_times = [], []
    for i in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step(2 + i)
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    result["step_s"] = min(times)
    result["cpu_s"] = min(cpu_times)  # CPU seconds of all threads: less sensitive than wall time to a shared machine
    result["images_per_s"] = args.batch / result["step_s"]
    if device.type == "cuda":
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        result["peak_bytes"] = peak_rss_bytes()
        result["rise_bytes"] = result["peak_bytes"] - rss_start
    if args.flops and what == "step":
        result["matmul_flops_per_s"] = matmul_flops_per_s(device)
    return result


# ----------------------------------------------------------------------------- the report (parent process)

def run_child(args, what: str, fused: bool, precision: str, flops: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--batch", str(args.batch), "--steps", str(args.steps), "--student", args.student,
           "--teachers", args.teachers, "--ladder", args.ladder, "--device", args.device,
           "--image-size", str(args.image_size),
           "--child", json.dumps({"what": what, "fused": fused, "precision": precision})]
    cmd += ["--flops"] if flops else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        layout = "fused" if fused else "per-block"
        raise RuntimeError(f"measurement {what}/{layout}/{precision} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of(args, variants: list[tuple]) -> list[dict]:
    """Alternate the variants ``args.repeats`` times; keep each one's fastest run (and its largest peak)."""
    runs = [[] for _ in variants]
    for _ in range(args.repeats):
        for k, v in enumerate(variants):
            runs[k].append(run_child(args, *v))
    best = []
    for rs in runs:
        b = dict(min(rs, key=lambda r: r["step_s"]))
        for key in ("peak_bytes", "rise_bytes"):
            if key in b:
                b[key] = max(r[key] for r in rs)
        best.append(b)
    return best


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def memory(r: dict) -> str:
    if r["device"].startswith("cuda"):
        return f"{gib(r['peak_bytes'])} allocated"
    return f"{gib(r['peak_bytes'])} RSS (+{gib(r['rise_bytes'])})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the variants this many times, keep the best")
    parser.add_argument("--student", default="vit_small_patch16_224")
    parser.add_argument("--teachers", default="vit_small_patch16_224,deit3_small_patch16_224")
    parser.add_argument("--ladder", default="all")
    parser.add_argument("--image-size", type=int, default=224, help="input images of this side, in pixels")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(args, spec["what"], spec["fused"], spec["precision"])))
        return

    device = pick_device(args.device)
    default_precision = "bf16" if device.type == "cuda" else "fp32"
    print(f"device                 {device} ({torch.get_num_threads()} threads)")
    print(f"config                 student {args.student}, teachers {args.teachers}, batch {args.batch}, "
          f"{args.image_size}px, ladder {args.ladder}; {args.steps} timed steps, best of {args.repeats}")

    whole = run_child(args, "step", True, default_precision, flops=True)
    achieved = whole["flops_per_step"] / whole["step_s"]
    print("\n-- whole step (fused ladder, " + ("bf16 autocast" if default_precision == "bf16" else "fp32") + ")")
    print(f"step time              {whole['step_s']:.3f} s")
    print(f"images/s               {whole['images_per_s']:.2f}")
    print(f"FLOPs per step         {whole['flops_per_step'] / 1e9:.1f} GFLOP")
    print(f"achieved               {achieved / 1e9:.1f} GFLOP/s")
    print(f"dense fp32 matmul      {whole['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s")
    print(f"fraction of matmul     {achieved / whole['matmul_flops_per_s']:.2f}  (target >= 0.5 on CPU)")
    print(f"peak memory            {memory(whole)}")

    print("\n-- ladder of projectors: per-block MLPs (Ladder) vs batched matrix products (FusedLadder)")
    print(f"{'':44s}{'per-block':>14s}{'fused':>14s}{'speedup':>10s}")
    for what, label in (("ladder", "ladder alone (fwd+loss+bwd)"), ("step", "whole step")):
        per_block, fused = best_of(args, [(what, False, default_precision), (what, True, default_precision)])
        print(f"{label + ' images/s':44s}{per_block['images_per_s']:14.2f}{fused['images_per_s']:14.2f}"
              f"{fused['images_per_s'] / per_block['images_per_s']:9.2f}x")
        if device.type != "cuda":
            print(f"{label + ' CPU s per step':44s}{per_block['cpu_s']:14.2f}{fused['cpu_s']:14.2f}"
                  f"{per_block['cpu_s'] / fused['cpu_s']:9.2f}x")
        kind = "peak allocated" if device.type == "cuda" else "peak RSS"
        print(f"{label + ' ' + kind:44s}{gib(per_block['peak_bytes']):>14s}{gib(fused['peak_bytes']):>14s}")
        if device.type != "cuda":
            rises = gib(per_block["rise_bytes"]), gib(fused["rise_bytes"])
            print(f"{label + ' RSS rise in steps':44s}{rises[0]:>14s}{rises[1]:>14s}")
    print("(target: fused >= 1.3x per-block on CPU)")

    print("\n-- bf16 autocast vs fp32 (whole step, fused ladder; fp32 matmuls without TF32, torch's default)")
    if device.type != "cuda":
        print(f"skipped: no CUDA device here ({device}); bf16 autocast is used on CUDA only (run this on a GPU)")
        return
    fp32, bf16 = best_of(args, [("step", True, "fp32"), ("step", True, "bf16")])
    print(f"{'':44s}{'fp32':>14s}{'bf16':>14s}{'speedup':>10s}")
    print(f"{'images/s':44s}{fp32['images_per_s']:14.2f}{bf16['images_per_s']:14.2f}"
          f"{bf16['images_per_s'] / fp32['images_per_s']:9.2f}x")
    print(f"{'peak memory':44s}{gib(fp32['peak_bytes']):>14s}{gib(bf16['peak_bytes']):>14s}")


if __name__ == "__main__":
    main()
