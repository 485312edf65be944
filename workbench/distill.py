"""Multi-teacher distillation (UNIC: Sariyildiz et al., ECCV 2024), one teacher being the special case.

    cfg = DistillConfig(teachers=["world_colour", "world_shape"])
    run = distill(cfg, data, teachers, out_dir="runs/03")   # trains, checkpoints, returns history

The training loop reads top to bottom: teachers encode the batch without autograd; their CLS and
patch features are standardized with running statistics; the student's blocks feed the ladder of
projectors; the per-(teacher, image) losses go through teacher dropping; one optimizer step.

Under torchrun (``python -m workbench distill``, which joins the process group) the same loop runs on
every rank (``workbench.distributed``): ``batch_size`` is the global batch, split evenly over the ranks;
statistics, teacher dropping and metrics are computed over the global batch, so N ranks train as one
process would; rank 0 alone writes checkpoints, ``metrics.jsonl`` and logs.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .io import load_tensors, save_json, save_tensors
from .distributed import current_world, wrap_ddp
from .ladder import make_ladder, select_blocks
from .live import MetricsLog
from .losses import distillation_loss, teacher_losses
from .standardize import batch_weight, make_standardizer
from .students import Student
from .teachers import Teacher


@dataclass
class DistillConfig:
    teachers: list[str] = field(default_factory=lambda: ["world_colour", "world_shape"])
    student: str = "wb_vitc_tiny_patch8_32"
    data: str = "world"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    tdrop_p: float = 0.5
    ladder: str | list[int] = "all"
    standardize: str = "running"
    seed: int = 0
    device: str = "auto"
    fused_ladder: bool = True  # the ladder as batched matrix products (same function as one MLP per block)
    torch_compile: bool = False  # torch.compile student + ladder (worth it for long GPU runs; compiling takes minutes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_params(cls, **params) -> "DistillConfig":
        """Validate notebook / command-line parameters (strings from ``papermill -p`` included)."""
        from .params import as_bool, as_choice, as_float, as_int, as_ladder, as_list
        from .standardize import STANDARDIZERS
        from .students import check_student_name
        from .teachers import check_teacher_names

        known = {f for f in cls.__dataclass_fields__}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown distillation parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        p = {**asdict(cls()), **params}
        cfg = cls(
            teachers=check_teacher_names(as_list(p["teachers"], "teachers")),
            student=check_student_name(str(p["student"])),
            data=str(p["data"]),
            epochs=as_int(p["epochs"], "epochs", minimum=1),
            batch_size=as_int(p["batch_size"], "batch_size", minimum=1),
            lr=as_float(p["lr"], "lr", low=0.0),
            weight_decay=as_float(p["weight_decay"], "weight_decay", low=0.0),
            warmup_frac=as_float(p["warmup_frac"], "warmup_frac", low=0.0, high=1.0),
            grad_clip=as_float(p["grad_clip"], "grad_clip", low=0.0),
            tdrop_p=as_float(p["tdrop_p"], "tdrop_p", low=0.0, high=1.0),
            ladder=as_ladder(p["ladder"]),
            standardize=as_choice(p["standardize"], "standardize", STANDARDIZERS),
            seed=as_int(p["seed"], "seed", minimum=0),
            device=str(p["device"]),
            fused_ladder=as_bool(p["fused_ladder"], "fused_ladder"),
            torch_compile=as_bool(p["torch_compile"], "torch_compile"),
        )
        if cfg.lr == 0:
            raise ValueError("lr must be > 0")
        pick_device(cfg.device)
        return cfg


def pick_device(device: str = "auto") -> torch.device:
    """Pick the device once: ``auto`` is CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu' or 'auto'")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None


class UNIC(nn.Module):
    """Student encoder + expendable ladder + per-teacher, per-token-type standardizers."""

    def __init__(self, student: Student, teacher_dims: dict[str, int], teacher_grids: dict[str, tuple[int, int]],
                 ladder: str | list[int] = "all", standardize: str = "running", fused_ladder: bool = True):
        super().__init__()
        self.student = student
        self.teacher_grids = dict(teacher_grids)
        self.ladder = make_ladder(student.embed_dim, student.depth, teacher_dims, select_blocks(ladder, student.depth),
                                  fused=fused_ladder)
        self.std_cls = nn.ModuleDict({t: make_standardizer(standardize, d) for t, d in teacher_dims.items()})
        self.std_patch = nn.ModuleDict({t: make_standardizer(standardize, d) for t, d in teacher_dims.items()})

    def forward(self, images):
        return self.ladder(self.student(images), self.student.grid, self.teacher_grids)

    @torch.no_grad()
    def targets(self, teacher_feats: dict, update_weight: float | None, all_sum: Callable | None = None):
        """Standardize teacher features; update the running statistics first when training (over every
        rank's batch with ``all_sum``, the sum over ranks)."""
        out = {}
        for t, f in teacher_feats.items():
            if update_weight is not None:
                self.std_cls[t].update(f.cls, update_weight, all_sum)
                self.std_patch[t].update(f.patch, update_weight, all_sum)
            out[t] = (self.std_cls[t](f.cls.float()), self.std_patch[t](f.patch.float()))
        return out


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class DistillRun:
    model: UNIC
    history: list[dict]
    checkpoint: Path | None
    runtime_s: float


def _lr_at(step: int, total: int, cfg: DistillConfig) -> float:
    warmup = max(1, int(cfg.warmup_frac * total))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def teacher_feature_shapes(teachers: dict[str, Teacher], images: torch.Tensor) -> tuple[dict, dict]:
    with torch.inference_mode():
        feats = {t: m(images) for t, m in teachers.items()}
    return {t: f.cls.shape[-1] for t, f in feats.items()}, {t: f.grid for t, f in feats.items()}


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def distill_step(model: UNIC, teachers: dict[str, Teacher], images: torch.Tensor, stats_weight: float,
                 drop_p: float, generator: torch.Generator | None, amp, world=None, forward=None):
    """Forward half of one training step: returns the loss, the (T, B) losses and the coefficients.

    Distributed: ``world`` (``workbench.distributed.World``) and ``forward``, the model wrapped in
    DistributedDataParallel (its gradients are averaged over the ranks)."""
    with torch.inference_mode(), amp:  # teachers never build autograd state
        feats = {t: m(images) for t, m in teachers.items()}
    targets = model.targets(feats, update_weight=stats_weight, all_sum=world.all_sum if world else None)
    with amp:
        preds = (forward or model)(images)
    losses = teacher_losses(preds, targets)  # (T, B), float32
    loss, coeffs = distillation_loss(losses, drop_p, generator, world)
    return loss, losses, coeffs


def distill(cfg: DistillConfig, data, teachers: dict[str, Teacher], out_dir: str | Path | None = None,
            callback: Callable[[dict], None] | None = None, log_every: int = 10, log=print) -> DistillRun:
    device = pick_device(cfg.device)
    world = current_world()
    if cfg.batch_size % world.size:
        raise ValueError(f"batch_size {cfg.batch_size} (the global batch) does not split evenly over {world.size} "
                         f"processes: use a multiple of {world.size}")
    log = log if world.main else (lambda *_: None)
    torch.manual_seed(cfg.seed)
    loader = data.loader("train", cfg.batch_size // world.size, shuffle=True, seed=cfg.seed, rank=world.rank,
                         world_size=world.size)
    if len(loader) == 0:
        raise ValueError(f"the training split of {data.name!r} is empty")
    teachers = {t: m.to(device) for t, m in teachers.items()}
    first = next((b.images for b in loader if b.images is not None), None)
    if first is None:
        raise ValueError(f"no readable image in the training split of {data.name!r}")
    dims, grids = teacher_feature_shapes(teachers, first[:2].to(device))
    student = Student(cfg.student)
    model = UNIC(student, dims, grids, cfg.ladder, cfg.standardize, cfg.fused_ladder).to(device)
    if cfg.torch_compile:
        model.compile()  # in place: the state dict keeps its keys
    forward = wrap_ddp(model, device, world)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    amp = autocast_for(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    out_dir = Path(out_dir) if out_dir is not None else None
    ckpt_dir = out_dir / "checkpoint" if out_dir is not None and world.main else None
    metrics = MetricsLog(out_dir / "metrics.jsonl") if out_dir is not None and world.main else None
    saved = None

    total = cfg.epochs * len(loader)
    history, step, t0 = [], 0, time.time()
    model.train()
    for epoch in range(cfg.epochs):
        for batch in loader:
            if batch.images is None:
                if world.size > 1:  # the other ranks would wait for this one's gradients forever
                    raise ValueError(f"rank {world.rank}: no image of a batch is readable ({'; '.join(batch.skipped[:3])}); "
                                     "a distributed run needs a readable image in every batch: remove the broken files")
                continue
            images = batch.images.to(device, non_blocking=True)
            lr = _lr_at(step, total, cfg)
            for group in opt.param_groups:
                group["lr"] = lr

            loss, losses, coeffs = distill_step(model, teachers, images, batch_weight(step, total), cfg.tdrop_p, gen, amp,
                                                world, forward)
            global_loss = world.all_sum(loss.detach().clone()) / world.size  # a NaN on any rank stops every rank

            if not torch.isfinite(global_loss):
                bad = [t for t, row in zip(teachers, losses) if not torch.isfinite(row).all()]
                raise NonFiniteLoss(
                    f"non-finite loss at step {step} (epoch {epoch + 1}), teacher(s) {bad or list(teachers)}; "
                    f"last good checkpoint: {saved or 'none yet'}. Lower lr or check the teachers' features."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()

            if step % log_every == 0 or step == total - 1:
                n = len(teachers)  # over the global batch: sums of every rank
                sums = world.all_sum(torch.cat([losses.detach().sum(1), coeffs.sum(1), losses.new_tensor([losses.shape[1]])]))
                per_teacher, alphas = (sums[:n] / sums[-1]).tolist(), sums[n:2 * n].tolist()
                record = {"step": step, "epoch": step / len(loader), "lr": lr, "loss": global_loss.item(),
                          "time_s": time.time() - t0,
                          **{f"loss/{t}": v for t, v in zip(teachers, per_teacher)},
                          **{f"alpha/{t}": a for t, a in zip(teachers, alphas)}}
                history.append(record)
                if metrics is not None:
                    metrics.append(record)
                if callback is not None and world.main:
                    callback(record)
            step += 1
        if ckpt_dir is not None:
            saved = save_checkpoint(model, cfg, ckpt_dir, extra={"epoch": epoch + 1, "step": step})
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['loss']:.4f} ({time.time() - t0:.0f}s)")

    model.eval()
    if out_dir is not None and world.main:
        with open(out_dir / "history.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)
    return DistillRun(model, history, saved, time.time() - t0)


def save_checkpoint(model: UNIC, cfg: DistillConfig, folder: Path, extra: dict | None = None) -> Path:
    """``student.safetensors`` (the encoder you keep), ``projectors.safetensors`` (ladder and
    standardization statistics, dropped after training) and ``config.json``. Each file is atomic;
    config.json is written last, so a folder with a config always holds complete weights."""
    folder = Path(folder)
    state = model.state_dict()
    save_tensors({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}, folder / "student.safetensors")
    save_tensors({k: v for k, v in state.items() if not k.startswith("student.")}, folder / "projectors.safetensors")
    save_json({"config": cfg.to_dict(), "teacher_grids": model.teacher_grids, **(extra or {})}, folder / "config.json")
    return folder


def load_student(folder: str | Path, device: str | torch.device = "cpu") -> Student:
    """Rebuild the distilled student encoder from a checkpoint folder (projectors are not needed)."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"no distillation checkpoint in {folder} (expected config.json and student.safetensors)")
    cfg = json.loads((folder / "config.json").read_text())["config"]
    student = Student(cfg["student"])
    student.load_state_dict(load_tensors(folder / "student.safetensors"))
    return student.to(device).eval()
