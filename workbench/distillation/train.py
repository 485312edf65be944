"""Multi-teacher distillation (UNIC: Sariyildiz et al., ECCV 2024), one teacher being the special case.

    cfg = DistillConfig(teachers=["world_colour", "world_shape"])
    run = distill(cfg, data, teachers, out_dir="runs/03")   # trains, checkpoints, returns history
    run = distill(cfg, data, teachers, out_dir="runs/03")   # after a crash: resumes where it stopped

With an ``out_dir`` the run checkpoints every ``ckpt_every`` steps (or every epoch) into
``out_dir/checkpoints/step_<n>/`` (``workbench.distillation.checkpoint``), and a rerun with the same
``out_dir`` resumes from the newest one: on CPU the resumed run ends with the very same weights as an
uninterrupted one. Another configuration in that ``out_dir`` is refused unless ``overwrite=True``.
The finished student goes to ``out_dir/checkpoint/`` (``load_student``).

Under torchrun (``python -m workbench distill``, which joins the process group) the same loop runs on
every rank (``workbench.core.distributed``): ``batch_size`` is the global batch, split evenly over the
ranks; statistics, teacher dropping and metrics are computed over the global batch, so N ranks train as
one process would; rank 0 alone writes checkpoints, ``metrics.jsonl`` and logs.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..core.device import autocast_for, pick_device
from ..core.distributed import World, current_world, wrap_ddp
from ..core.params import ParameterError
from ..core.training import NonFiniteLoss, configure_optimizer, get_lr, set_lr
from ..layers.standardize import batch_weight
from ..models import Student, Teacher
from .checkpoint import RunOutput
from .config import DistillConfig, check_batch_size
from .unic import UNIC, distill_step, teacher_feature_shapes


@dataclass
class DistillRun:
    model: UNIC
    history: list[dict]
    checkpoint: Path | None  # out_dir/checkpoint: the finished student (None without out_dir)
    runtime_s: float  # training time, over every (re)start
    skipped: list[str] = field(default_factory=list)  # unreadable training files, each once ("path: reason")
    resumed_from: int | None = None  # the step this call resumed from, None for a fresh start

    def describe(self) -> str:
        return describe_run(f"distilled in {self.runtime_s:.0f}s of training", self)


def describe_run(head: str, run) -> str:
    """One line about a finished run (a ``DistillRun`` or a ``LaunchedRun``): ``head``, then where it resumed,
    what it skipped and where the student is."""
    return (head + (f", resumed from step {run.resumed_from}" if run.resumed_from is not None else "")
            + (f", {len(run.skipped)} unreadable training images skipped" if run.skipped else "")
            + f"; student: {run.checkpoint}")


def check_global_batch(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise ParameterError(f"batch_size {batch_size} (the global batch) does not split evenly over {world.size} "
                             f"processes: use a multiple of {world.size}")


def distill(cfg: DistillConfig, data, teachers: dict[str, Teacher], out_dir: str | Path | None = None,
            callback: Callable[[dict], None] | None = None, log_every: int = 10, log=print,
            overwrite: bool = False) -> DistillRun:
    """Train the student; with ``out_dir``, checkpoint and resume (``overwrite=True`` starts over instead)."""
    # Where and with whom: this rank's device, and a global batch that splits evenly over the ranks.
    device, world = pick_device(cfg.device), current_world()
    usable = len(data.train) - len(data.train) % world.size  # every rank must make the same steps
    check_global_batch(cfg.batch_size, world)
    check_batch_size(cfg.batch_size, usable, data.name)
    log = log if world.main else (lambda *_: None)

    # The model: the student, and a ladder and standardizers shaped by the teachers' features.
    torch.manual_seed(cfg.seed)
    teachers = {t: m.to(device) for t, m in teachers.items()}
    dims, grids = teacher_feature_shapes(teachers, data.first_image("train").to(device))
    model = UNIC(Student(cfg.student, img_size=cfg.image_size), dims, grids, cfg.ladder, cfg.standardize,
                 cfg.fused_ladder).to(device)
    if cfg.torch_compile:
        model.compile()  # in place: the state dict keeps its keys
    forward = wrap_ddp(model, device, world)
    opt = configure_optimizer(model, cfg.lr, cfg.weight_decay)
    amp, generators = autocast_for(device), {"teacher_drop": torch.Generator().manual_seed(cfg.seed)}
    steps_per_epoch = math.ceil(usable / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch

    # Resume last: loading restores every random generator, so nothing may draw from them after it.
    # Every rank loads the same checkpoint; rank 0 first, which alone removes leftovers (and the old run).
    output = RunOutput(out_dir, cfg, {"config": cfg.to_dict(), "teacher_grids": grids, "data": data.fingerprint},
                       writes=world.main)
    with world.main_first():
        state, resumed_from = output.resume(model, opt, generators, overwrite, log)
    if callback is not None and world.main:
        for record in state.history:  # a resumed run's plot starts with what was recorded before
            callback(record)

    def checkpoint() -> None:
        state.train_s = time.time() - t0
        output.checkpoint(model, state, opt, generators)

    t0 = time.time() - state.train_s
    model.train()
    while state.epoch < cfg.epochs:
        loader = data.loader("train", cfg.batch_size // world.size, shuffle=True, seed=cfg.seed, epoch=state.epoch,
                             start=state.batch * cfg.batch_size, rank=world.rank, world_size=world.size)
        for batch in loader:
            # A batch whose files are all unreadable is skipped, and counted; under torchrun the other ranks
            # would wait for this one's gradients forever, so there it is an error.
            state.batch += 1
            state.note_skipped(batch.skipped)
            if batch.images is None:
                if world.size > 1:
                    raise ValueError(f"rank {world.rank}: no image of a batch is readable "
                                     f"({'; '.join(batch.skipped[:3])}); "
                                     "a distributed run needs a readable image in every batch: remove the broken files")
                continue
            step, lr = state.step, get_lr(state.step, total, cfg.lr, cfg.warmup_frac, cfg.min_lr)
            set_lr(opt, lr)

            # Forward: standardized teacher targets, the ladder's predictions, teacher dropping (unic.py).
            loss, losses, coeffs = distill_step(model, teachers, batch.images.to(device, non_blocking=True),
                                                batch_weight(step, total), cfg.tdrop_p, generators["teacher_drop"],
                                                amp, world, forward)
            global_loss = world.all_sum(loss.detach().clone()) / world.size  # a NaN on any rank stops every rank
            if not torch.isfinite(global_loss):
                bad = [t for t, row in zip(teachers, losses) if not torch.isfinite(row).all()]
                raise NonFiniteLoss(
                    f"non-finite loss at step {step} (epoch {state.epoch + 1}), teacher(s) {bad or list(teachers)}; "
                    f"last good checkpoint: {output.latest() or 'none yet'}. Lower lr or check the teachers' features "
                    f"(a rerun in the same out_dir would resume from that checkpoint: change the configuration "
                    f"with overwrite=True or another out_dir).")

            # Backward and update.
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            state.step += 1

            # Metrics over the global batch (sums of every rank), and the periodic checkpoint.
            if step % log_every == 0 or step == total - 1:
                n = len(teachers)
                sums = world.all_sum(torch.cat([losses.detach().sum(1), coeffs.sum(1),
                                                losses.new_tensor([losses.shape[1]])]))
                per_teacher, alphas = (sums[:n] / sums[-1]).tolist(), sums[n:2 * n].tolist()
                record = {"step": step, "epoch": step / steps_per_epoch, "lr": lr, "loss": global_loss.item(),
                          "time_s": time.time() - t0,
                          **{f"loss/{t}": v for t, v in zip(teachers, per_teacher)},
                          **{f"alpha/{t}": a for t, a in zip(teachers, alphas)}}
                state.history.append(record)
                output.record(record)
                if callback is not None and world.main:
                    callback(record)
            if cfg.ckpt_every and state.step % cfg.ckpt_every == 0:
                checkpoint()
        state.epoch, state.batch = state.epoch + 1, 0
        if not cfg.ckpt_every or state.epoch == cfg.epochs:
            checkpoint()
        last_loss = f"loss {state.history[-1]['loss']:.4f}" if state.history else "no readable batch"
        unreadable = f"; {len(state.skipped)} unreadable image(s) skipped so far" if state.skipped else ""
        log(f"epoch {state.epoch}/{cfg.epochs}: {last_loss} ({time.time() - t0:.0f}s){unreadable}")

    model.eval()
    return DistillRun(model, state.history, output.finish(model, state), time.time() - t0, state.skipped, resumed_from)
