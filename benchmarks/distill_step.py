"""Throughput and memory of one UNIC distillation step; fused vs per-block ladder; bf16 vs fp32 on a GPU.

The official UNIC training step against the workbench's (default), or the workbench's ladder layouts.

    python benchmarks/distill_step.py --unic /tmp/unic [--preset offline|vits|all] [--device auto] [--quick]
    # a working copy of naver/unic: git -C <mirror> archive HEAD | tar -x -C /tmp/unic (imported, never copied)

Default: the official step (its model, ladder, teacher standardization, loss with teacher dropping and AdamW step,
as main_unic.py assembles them) and the workbench's in fp32 and in bf16 autocast, alternating in one process on
the same student architecture, teachers, batch and inputs, the workbench student given the official weights:
seconds per step, images/s, official / workbench, the two losses on the same inputs, FLOP/s against the fp32 and
bf16 matmul peak of the process, memory, host reads per step; for 03's offline world and for ViT-S/16 at 224 px
(``compare_main`` below; README "Benchmarks"). Without ``--unic`` the workbench side alone.

``--ladder-report`` (the issue-2 benchmark, below):
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

    python benchmarks/distill_step.py --ladder-report [--batch 32] [--steps 3] [--repeats 1] [--device auto]
    # the offline world's default 03 run (what a CPU runs here): small student, 32 px, batch 64
    python benchmarks/distill_step.py --ladder-report --student wb_vitc_tiny_patch8_32 \
        --teachers world_colour,world_shape --image-size 32 --batch 64
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings
from contextlib import nullcontext
from functools import partial

import psutil
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from workbench import create_teacher
from workbench.core.device import pick_device
from workbench.core.precision import autocast, resolve_precision
from workbench.core.training import configure_optimizer, set_lr
from workbench.distillation import UNIC, distill_forward, distillation_loss, teacher_feature_shapes, teacher_losses
from workbench.distillation.train import precision_trial
from workbench.layers.standardize import batch_weight
from workbench.models import Student
from workbench.models.preprocess import Preprocessing


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
    amp = autocast(precision, device)
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
    cmd = [sys.executable, __file__, "--ladder-report",
           "--batch", str(args.batch), "--steps", str(args.steps), "--student", args.student,
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


def ladder_main(args):
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


# ------------------------------------------------------------------------ the official UNIC step vs the workbench's

# Each preset: the workbench student (a timm ViT the official DinoVisionTransformer can also build: plain patch
# embedding), the teachers, input side and batch. 03's own student, wb_vitc_tiny_patch8_32, has a convolutional stem
# and a 4x4 token grid; the official code builds neither the stem nor a ladder whose patch grid differs from the
# teachers' (8x8 for the world specialists at 32 px; it has no resampling), so the shared student of the offline line
# is the closest it can build: the plain ViT of the same width, depth, heads and MLP ratio with 4-pixel patches (8x8).
# The 03 default student is timed on the workbench side alone, beside it.
PRESETS = {
    "offline": {"student": "wb_vit_tiny_patch4_32", "teachers": "world_colour,world_shape", "size": 32, "batch": 64,
                "workbench_only": "wb_vitc_tiny_patch8_32"},
    "vits": {"student": "vit_small_patch16_224", "teachers": "vit_small_patch16_224,vit_small_patch16_224",
             "size": 224, "batch": 8, "workbench_only": None},
}
LR, WEIGHT_DECAY, BETAS = 1e-4, 0.03, (0.9, 0.99)  # the same on both sides (main_unic.py's wd and betas)
SYNC_METHODS = ("item", "cpu", "tolist", "__bool__", "__float__", "__int__")  # tensor -> host: a device sync on CUDA


def import_official(path: str):
    """The official modules, from a working copy given on the command line (never part of the workbench)."""
    sys.path.insert(0, str(path))
    warnings.filterwarnings("ignore", message="xFormers is not available")
    warnings.filterwarnings("ignore", message="Importing from timm.models.layers is deprecated")
    import modeling.losses as unic_losses  # noqa: E402 (the official package layout: top-level modules)
    import modeling.unic as unic_model
    import teachers as unic_teachers
    import utils as unic_utils
    from dinov2.layers import MemEffAttention
    from dinov2.layers import NestedTensorBlock as Block
    from dinov2.models.vision_transformer import DinoVisionTransformer
    return {"UNIC": unic_model.UNIC, "LP": unic_model.LP, "unic_loss": unic_losses.unic_loss,
            "get_teacher_output": unic_teachers.get_teacher_output, "get_params_groups": unic_utils.get_params_groups,
            "ViT": DinoVisionTransformer, "Block": Block, "MemEffAttention": MemEffAttention}


class OfficialTeacherView(nn.Module):
    """A workbench teacher as the official ``get_teacher_output`` calls it: ``forward_features`` -> its dict."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher

    def forward_features(self, images):
        f = self.teacher(images)
        return {"x_norm_clstoken": f.cls, "x_norm_patchtokens": f.patch}


def vit_shape(vit) -> dict:
    """Width, depth, heads, MLP ratio, patch and input side of a timm ViT: what DinoVisionTransformer is given."""
    block = vit.blocks[0]
    return {"embed_dim": vit.embed_dim, "depth": len(vit.blocks), "num_heads": block.attn.num_heads,
            "mlp_ratio": block.mlp.fc1.out_features / vit.embed_dim, "patch_size": vit.patch_embed.patch_size[0],
            "img_size": vit.patch_embed.img_size[0]}


def official_weights_into_workbench(official, wb_model) -> None:
    """Copy the official model's weights into the workbench UNIC: encoder (block chunk 0 -> blocks) and ladder
    (``LP.heads[t][kind][i].layers`` -> the per-block ``Ladder`` layout, which ``FusedLadder`` loads too)."""
    enc = {k.replace("blocks.0.", "blocks."): v for k, v in official.encoder.state_dict().items()
           if k != "mask_token"}
    missing, unexpected = wb_model.student.vit.load_state_dict(enc, strict=False)
    missing = [k for k in missing if not k.endswith(("fc_norm.weight", "fc_norm.bias"))]
    if missing or unexpected:
        raise RuntimeError(f"encoder weights do not map: missing {missing}, unexpected {unexpected}")
    ladder = {}
    for t, heads in official.lp.heads.items():
        for kind in ("cls", "patch"):
            for i, head in enumerate(heads[kind]):
                for j in (0, 2):
                    ladder[f"{kind}.{t}.mlps.{i}.{j}.weight"] = head.layers[j].weight
                    ladder[f"{kind}.{t}.mlps.{i}.{j}.bias"] = head.layers[j].bias
    wb_model.ladder.load_state_dict(ladder)


class Side:
    """One side of the comparison: a model, its optimizer and ``step(i)``, one training step as its code makes it."""

    name: str
    model: nn.Module

    def step(self, i: int) -> None:
        raise NotImplementedError


class OfficialSide(Side):
    """main_unic.py's step: the lr and wd set per step, the student forward and the teachers' (no_grad) with their
    standardization inside CUDA autocast (fp16 with a GradScaler on a GPU, its default; a no-op on CPU tensors),
    ``unic_loss`` with teacher dropping, the finiteness check on ``loss.item()``, zero_grad, backward, step."""

    def __init__(self, off, teachers, shape, drop_path, device, drop_p, total):
        self.name, self.device, self.drop_p, self.total, self.off = "official", device, drop_p, total, off
        encoder = off["ViT"](**shape, drop_path_rate=drop_path,
                             block_fn=partial(off["Block"], attn_class=off["MemEffAttention"]))
        dims = {t: m.embed_dim for t, m in teachers.items()}
        # --lp_args as main_unic.py takes it, set to the workbench's hidden widths (the student's width, 4x for the
        # last block) so that both ladders are the same function; its default is 768 and 3072 whatever the width.
        lp = off["LP"](input_dim=encoder.embed_dim, head_dims=dims, n_encoder_blocks=encoder.n_blocks,
                       hidden_dim=encoder.embed_dim, last_hidden_dim=4 * encoder.embed_dim, std=0.02)
        self.model = off["UNIC"](encoder, lp).to(device)
        self.teachers = {t: OfficialTeacherView(teachers[t]) for t in sorted(teachers)}  # build_teachers sorts them
        self.stats = {t: {"cls": {"mean": torch.zeros(1, d, device=device), "std": torch.ones(1, d, device=device)},
                          "patch": {"mean": torch.zeros(1, 1, d, device=device),
                                    "std": torch.ones(1, 1, d, device=device)}} for t, d in dims.items()}
        self.opt = torch.optim.AdamW(off["get_params_groups"](self.model), lr=0, betas=BETAS, eps=1e-8)
        self.fp16 = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.fp16 else None
        self.images = None

    def amp(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.fp16 else nullcontext()

    def forward(self, images, momentum, drop_p):
        with self.amp():
            student_output = self.model(images)
            with torch.no_grad():
                teacher_output = self.off["get_teacher_output"](images, self.teachers, self.stats, momentum)
            loss, _ = self.off["unic_loss"](student_output, teacher_output, 0.5, 0.5, drop_p, metric_dict={})
        return loss, student_output, teacher_output

    def step(self, i):
        for k, group in enumerate(self.opt.param_groups):
            group["lr"] = LR
            if k == 0:
                group["weight_decay"] = WEIGHT_DECAY
        loss, _, _ = self.forward(self.images, batch_weight(i, self.total), self.drop_p)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"official loss {loss.item()}")
        self.opt.zero_grad()
        if self.scaler is None:
            loss.backward()
            self.opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()


class WorkbenchSide(Side):
    """The workbench's training step as ``distillation.train`` makes it (one process): the lr set, ``distill_forward``
    (teachers under inference_mode, running standardization, fused ladder, teacher dropping), the finiteness check,
    zero_grad, backward, the AdamW step of ``configure_optimizer``."""

    def __init__(self, student_name, teachers, drop_path, device, drop_p, total, precision, name=None):
        self.name = name or f"workbench {precision}"
        self.device, self.drop_p, self.total, self.precision = device, drop_p, total, precision
        self.teachers = teachers
        self.images = None
        identity = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # the official student takes x as is
        student = Student(student_name, drop_path_rate=drop_path, preprocessing=identity)
        self.probe = torch.rand(2, 3, *student.img_size, device=device)
        dims, grids = teacher_feature_shapes(teachers, self.probe)
        self.model = UNIC(student, dims, grids).to(device)
        self.opt = configure_optimizer(self.model, LR, WEIGHT_DECAY, BETAS)
        self.gen = torch.Generator().manual_seed(0)

    def amp(self):
        return autocast(self.precision, self.device)

    def step(self, i):
        set_lr(self.opt, LR)
        loss, losses, _ = distill_forward(self.model, self.teachers, self.images, batch_weight(i, self.total),
                                          self.drop_p, self.gen, self.amp())
        if not torch.isfinite(loss.detach()):
            raise RuntimeError(f"workbench loss {loss.item()}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class RssSampler:
    """The process's resident set, sampled every ``interval`` seconds in a thread: the peak since ``reset``."""

    def __init__(self, interval: float = 0.002):
        self.proc, self.interval, self.peak, self.done = psutil.Process(), interval, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def reset(self) -> int:
        now = self.proc.memory_info().rss
        self.peak = now
        return now

    def stop(self):
        self.done.set()
        self.thread.join()


class SyncCounter:
    """Counts the calls that bring a tensor's value to the host (``.item()``, ``.cpu()``, ``bool(t)``, ...) outside
    the optimizer: each is a device sync on a GPU (on a CPU, Python overhead only)."""

    def __enter__(self):
        self.count, self.saved = 0, {m: getattr(torch.Tensor, m) for m in SYNC_METHODS}

        def wrap(fn):
            def counted(*a, **k):
                # the optimizer's own reads of its CPU step counters (one per parameter) are no device sync: skipped
                if "torch/optim" not in sys._getframe(1).f_code.co_filename:
                    self.count += 1
                return fn(*a, **k)
            return counted
        for m, fn in self.saved.items():
            setattr(torch.Tensor, m, wrap(fn))
        return self

    def __exit__(self, *exc):
        for m, fn in self.saved.items():
            setattr(torch.Tensor, m, fn)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 6) -> float:
    """FLOP/s of a dense n x n matrix product in ``dtype``: the best of ``reps``."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def loss_check(official: OfficialSide, wb: WorkbenchSide, images) -> dict:
    """The loss of both steps on the same inputs and weights, and their gradients: copies of both models in eval mode
    (no stochastic depth), the standardization statistics at their start (mean 0, std 1; the first step's weight 1),
    no teacher dropping (the two draw it from different generators: Python's ``random`` and a torch Generator)."""
    off_model, wb_model = copy.deepcopy(official.model).eval(), copy.deepcopy(wb.model).eval()
    off = copy.copy(official)
    off.model, off.stats = off_model, copy.deepcopy(official.stats)
    loss_o, s_out, t_out = off.forward(images, 1.0, 0.0)
    with torch.no_grad():
        from modeling.losses import loss_per_teacher  # the official per-(teacher, image) losses
        per_o = loss_per_teacher(s_out, t_out, 0.5, 0.5, metric_dict={})
    loss_o.backward()
    loss_w, per_w, _ = distill_forward(wb_model, wb.teachers, images, 1.0, 0.0, None, wb.amp())
    loss_w.backward()
    per_diff = max((per_o[t].float() - row.detach().float()).abs().max().item() for t, row in zip(wb.teachers, per_w))
    g_o = off_model.encoder.patch_embed.proj.weight.grad.float()
    g_w = wb_model.student.vit.patch_embed.proj.weight.grad.float()
    return {"official": loss_o.item(), "workbench": loss_w.item(), "per_pair_max_diff": per_diff,
            "grad_rel_diff": ((g_o - g_w).norm() / g_o.norm()).item()}


def measure_sides(sides: list[Side], images, args, device, rss: RssSampler | None) -> dict[str, dict]:
    """Alternate the sides: per round, ``args.steps`` timed steps of each. The first (untimed) step of each is
    counted with FlopCounterMode (unless --quick), then one more untimed one; host syncs are counted on a later one."""
    out = {s.name: {"times": [], "cpu": [], "rise": 0, "peak": 0} for s in sides}
    i = {s.name: 0 for s in sides}
    for s in sides:
        s.images = images
        if not args.quick:
            with FlopCounterMode(display=False) as counter:
                s.step(i[s.name])
            out[s.name]["flops"] = counter.get_total_flops()
            i[s.name] += 1
        with SyncCounter() as syncs:
            s.step(i[s.name])
        out[s.name]["syncs"] = syncs.count
        i[s.name] += 1
    for _ in range(1 if args.quick else args.repeats):
        for s in sides:
            r = out[s.name]
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = rss.reset() if rss else 0
            for _ in range(1 if args.quick else args.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                s.step(i[s.name])
                sync(device)
                r["times"].append(time.perf_counter() - t0)
                r["cpu"].append(time.process_time() - c0)
                i[s.name] += 1
            if device.type == "cuda":
                r["peak"] = max(r["peak"], torch.cuda.max_memory_allocated())
            elif rss:
                r["peak"], r["rise"] = max(r["peak"], rss.peak), max(r["rise"], rss.peak - start)
    for r in out.values():
        r["step_s"] = statistics.median(r["times"])
        r["cpu_s"] = statistics.median(r["cpu"])
    return out


def load() -> str:
    return "load " + "/".join(f"{x:.2f}" for x in os.getloadavg())


def run_preset(name: str, args, off, device, rss) -> dict:
    p = PRESETS[name]
    batch = args.batch or p["batch"]
    torch.manual_seed(0)
    random.seed(0)  # the official teacher dropping draws from Python's random
    teachers = {}
    for k, t in enumerate(p["teachers"].split(",")):
        key = t if t not in teachers else f"{t}_{k}"  # two teachers of one architecture: two random instances
        teachers[key] = create_teacher(t, pretrained=False, log=None).to(device).eval().requires_grad_(False)
    images = torch.rand(batch, 3, p["size"], p["size"], device=device)
    total, drop_path = 1000, 0.0
    variants = [WorkbenchSide(p["student"], teachers, drop_path, device, args.drop_p, total, prec)
                for prec in ("fp32", "bf16")]
    sides: list[Side] = list(variants)
    auto = resolve_precision("auto", device, trial=auto_trial(variants[0], batch), log=lambda *_: None,
                             shapes={"benchmark": "distill_step", "preset": name, "batch": batch})
    check = {}
    if off is not None:
        official = OfficialSide(off, teachers, vit_shape(variants[0].model.student.vit), drop_path, device,
                                args.drop_p, total)
        for v in variants:
            official_weights_into_workbench(official.model, v.model)
            check[v.precision] = loss_check(official, v, images)
        sides.insert(0, official)
    if p["workbench_only"] and not args.quick:
        sides.append(WorkbenchSide(p["workbench_only"], teachers, drop_path, device, args.drop_p, total, auto,
                                   name=f"workbench {auto} {p['workbench_only']}"))
    before = load()
    results = measure_sides(sides, images, args, device, rss)
    return {"preset": name, "student": p["student"], "teachers": p["teachers"], "size": p["size"], "batch": batch,
            "auto": auto, "check": check, "results": results, "load_before": before, "load_after": load(),
            "shape": vit_shape(variants[0].model.student.vit)}


def auto_trial(side: WorkbenchSide, batch: int):
    """What ``distillation.train.pick_precision`` times: its ``precision_trial`` on a batch of the line's size."""
    images = side.probe[:1].expand(batch, -1, -1, -1).contiguous()
    return precision_trial(side.model, side.teachers, images, side.drop_p)


def report(r: dict, args, peaks: dict, device) -> None:
    res = r["results"]
    print(f"\n== {r['preset']}: student {r['student']} ({r['shape']['embed_dim']} wide, {r['shape']['depth']} blocks, "
          f"patch {r['shape']['patch_size']}), teachers {r['teachers']}, {r['size']} px, batch {r['batch']}; "
          f"{r['load_before']} before, {r['load_after']} after")
    print(f"   workbench precision='auto' resolves to {r['auto']} here")
    mem = "peak alloc" if device.type == "cuda" else "RSS rise"
    print(f"   {'variant':44s}{'s/step':>8s}{'img/s':>8s}{'cpu s':>8s}{'GFLOP':>8s}{'GFLOP/s':>9s}"
          f"{'%fp32pk':>8s}{'%bf16pk':>8s}{mem:>11s}{'syncs':>6s}{'off/this':>9s}")
    ref = res.get("official")
    for name, m in res.items():
        flops = m.get("flops")
        rate = flops / m["step_s"] if flops else None
        cells = [f"{m['step_s']:8.3f}", f"{r['batch'] / m['step_s']:8.1f}", f"{m['cpu_s']:8.2f}",
                 f"{flops / 1e9:8.1f}" if flops else f"{'-':>8s}", f"{rate / 1e9:9.1f}" if rate else f"{'-':>9s}",
                 f"{100 * rate / peaks['fp32']:7.0f}%" if rate else f"{'-':>8s}",
                 f"{100 * rate / peaks['bf16']:7.0f}%" if rate else f"{'-':>8s}",
                 f"{gib(m['peak'] if device.type == 'cuda' else m['rise']):>11s}", f"{m['syncs']:6d}",
                 f"{ref['step_s'] / m['step_s']:8.2f}x" if ref else f"{'-':>9s}"]
        print(f"   {name:44s}" + "".join(cells))
    for prec, c in r["check"].items():
        print(f"   loss, same weights and inputs (eval mode, no dropping): official {c['official']:.6f}, workbench "
              f"{prec} {c['workbench']:.6f}; max |diff| per (teacher, image) {c['per_pair_max_diff']:.1e}; "
              f"patch-embed grad rel. diff {c['grad_rel_diff']:.1e}")


def compare_main(args) -> None:
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":  # what main_unic.py sets for its run (process-wide: the workbench side gets it too)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    off = import_official(args.unic) if args.unic else None
    rss = RssSampler() if device.type == "cpu" else None
    peaks = {"fp32": matmul_peak(device, torch.float32), "bf16": matmul_peak(device, torch.bfloat16)}
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; {load()}")
    print(f"dense 2048^3 matmul peak in this process: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    if off is None:
        print("official side skipped: no --unic PATH (a working copy of naver/unic)")
    print(f"timing: {1 if args.quick else args.repeats} round(s) alternating the variants, "
          f"{1 if args.quick else args.steps} timed step(s) each per round, median; cpu s = process CPU seconds")
    for name in (PRESETS if args.preset == "all" else [args.preset]):
        report(run_preset(name, args, off, device, rss), args, peaks, device)
    if rss:
        rss.stop()
    if off is not None:
        print("\nofficial: its DinoVisionTransformer + LP ladder (hidden widths set to the workbench's), "
              "get_teacher_output, unic_loss, AdamW of get_params_groups; fp16 autocast + GradScaler on CUDA, "
              "fp32 on CPU (its autocast is CUDA's). Both: the same teachers (workbench modules, random weights), "
              "images, threads, lr, wd, betas; no stochastic depth; no DDP (one process).")


# ----------------------------------------------------------------------------- entry point

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unic", help="a working copy of the official UNIC code (naver/unic); without it only the "
                                       "workbench side runs")
    parser.add_argument("--preset", default="all", choices=[*PRESETS, "all"],
                        help="offline: 03's world (32 px, batch 64); vits: ViT-S/16 at 224 px, batch 8; all: both")
    parser.add_argument("--batch", type=int, help="images per step (default: the preset's; 32 with --ladder-report)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps of each variant per round")
    parser.add_argument("--repeats", type=int, default=2, help="rounds that alternate the variants")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--drop-p", type=float, default=0.5, help="teacher dropping probability (both sides)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="one timed step, one round, no FLOP count (tests)")
    parser.add_argument("--ladder-report", action="store_true",
                        help="instead: the workbench's fused vs per-block ladder and bf16 vs fp32 (one process each)")
    parser.add_argument("--student", default="vit_small_patch16_224", help="--ladder-report only")
    parser.add_argument("--teachers", default="vit_small_patch16_224,deit3_small_patch16_224",
                        help="--ladder-report only")
    parser.add_argument("--ladder", default="all", help="--ladder-report only")
    parser.add_argument("--image-size", type=int, default=224, help="--ladder-report only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ladder_report:
        args.batch = args.batch or 32
        ladder_main(args)
    else:
        compare_main(args)


if __name__ == "__main__":
    main()
