"""Multi-teacher distillation (UNIC: Sariyildiz et al., ECCV 2024), one teacher being the special case.

    cfg = DistillConfig(teachers=["world_colour", "world_shape"])
    run = distill(cfg, data, teachers, out_dir="runs/03")   # trains, checkpoints, returns history
    run = distill(cfg, data, teachers, out_dir="runs/03")   # after a crash: resumes where it stopped

With an ``out_dir`` the run checkpoints every ``ckpt_every`` steps (or every epoch) into
``out_dir/checkpoints/step_<n>/`` (``workbench.distillation.checkpoint``), and a rerun with the same
``out_dir`` resumes from the newest one: on CPU the resumed run ends with the very same weights as an
uninterrupted one. Another configuration in that ``out_dir`` is refused unless ``overwrite=True``.
The finished student goes to ``out_dir/student/`` (``load_student``).

Under torchrun (``python -m workbench distill``, which joins the process group) the same loop runs on
every rank (``workbench.core.distributed``): ``batch_size`` is the global batch, split evenly over the
ranks; statistics, teacher dropping and metrics are computed over the global batch, so N ranks train as
one process would; rank 0 alone writes checkpoints, ``metrics.jsonl`` (and the same records to the config's
``logger``: TensorBoard, W&B) and logs.

Preemption (``workbench.core.preemption``): on SIGTERM or SIGUSR1 every rank finishes the step it is in,
rank 0 writes a full checkpoint at once (the others wait for it) and ``preempted.json`` beside it, and the
run raises ``Preempted``: exit code 75 for a process, a stopped cell in a notebook. The ranks agree on the
step to stop after through the all-reduce of the loss they make anyway, so a signal that reaches them at
different moments still stops them all after the same step. While it runs, rank 0 holds the out_dir's lock
(``workbench.core.lock``): a second run on the same out_dir is refused at once.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..core.device import pick_device
from ..core.distributed import ProcessGroup, current_group, wrap_ddp
from ..core.lock import hold_lock
from ..core.params import ParameterError
from ..core.precision import PRECISIONS, autocast, resolve_precision
from ..core.preemption import Preempted, handle_preemption, requested, stop_message
from ..core.training import NonFiniteLoss, configure_optimizer, get_lr, set_lr
from ..data.augment import Augmentation
from ..layers.standardize import batch_weight
from ..models import Student, Teacher, load_student
from ..models.preprocess import Preprocessing
from .checkpoint import RunOutput, recorded_precision
from .config import DistillConfig, check_batch_size
from .losses import teacher_losses
from .unic import UNIC, distill_forward, teacher_feature_shapes

TRAIN_DECODE_SCALE = 1.5  # image folders: training files are decoded at 1.5x the input side, then cropped on device


@dataclass
class DistillRun:
    model: UNIC
    history: list[dict]
    student_folder: Path | None  # out_dir/student: the finished student (None without out_dir)
    runtime_s: float  # training time, over every (re)start
    skipped: list[str] = field(default_factory=list)  # unreadable training files, each once ("path: reason")
    resumed_from: int | None = None  # the step this call resumed from, None for a fresh start
    precision: str = "fp32"  # what the run computed in (``precision`` "auto" resolved)

    def describe(self) -> str:
        return describe_run(f"distilled in {self.runtime_s:.0f}s of training", self)


def describe_run(head: str, run) -> str:
    """One line about a finished run (a ``DistillRun`` or a ``LaunchedRun``): ``head``, then where it resumed,
    what it skipped and where the student is."""
    return (head + (f", resumed from step {run.resumed_from}" if run.resumed_from is not None else "")
            + (f", {len(run.skipped)} unreadable training images skipped" if run.skipped else "")
            + f"; student: {run.student_folder}")


def check_global_batch(batch_size: int, ranks: ProcessGroup) -> None:
    if batch_size % ranks.size:
        raise ParameterError(f"batch_size {batch_size} (the global batch) does not split evenly over {ranks.size} "
                             f"processes: use a multiple of {ranks.size}")


def distill(cfg: DistillConfig, data, teachers: dict[str, Teacher], out_dir: str | Path | None = None,
            callback: Callable[[dict], None] | None = None, log_every: int = 10, log=print,
            overwrite: bool = False) -> DistillRun:
    """Train the student; with ``out_dir``, checkpoint and resume (``overwrite=True`` starts over instead).
    SIGTERM or SIGUSR1 stops it after the current step, with a checkpoint (``Preempted``, exit code 75)."""
    ranks = current_group()
    lock = hold_lock(out_dir, what=cfg.kind) if out_dir is not None and ranks.main else nullcontext()
    with handle_preemption(), lock, ExitStack() as on_exit:
        return _distill(cfg, data, teachers, out_dir, callback, log_every, log, overwrite, on_exit)


def _distill(cfg: DistillConfig, data, teachers: dict[str, Teacher], out_dir, callback, log_every: int, log,
             overwrite: bool, on_exit: ExitStack) -> DistillRun:
    # Where and with whom: this rank's device, and a global batch that splits evenly over the ranks.
    device, ranks = pick_device(cfg.device), current_group()
    data = decoded_for_training(cfg, data)
    usable = len(data.train) - len(data.train) % ranks.size  # every rank must make the same steps
    check_global_batch(cfg.batch_size, ranks)
    check_batch_size(cfg.batch_size, usable, data.name)
    log = log if ranks.main else (lambda *_: None)

    # The model: the student, and a ladder and standardizers shaped by the teachers' features.
    torch.manual_seed(cfg.seed)
    teachers = {t: m.to(device) for t, m in teachers.items()}
    dims, grids = teacher_feature_shapes(teachers, data.first_image("test").to(device))  # at the input size
    model = UNIC(make_student(cfg), dims, grids, cfg.ladder, cfg.standardize, cfg.fused_ladder).to(device)
    if cfg.torch_compile:
        model.compile()  # in place: the state dict keeps its keys
    # The ladder reads the blocks before the student's final norm, which only the features read after training
    # use: the norm takes no part in the loss (UNIC's own DistributedDataParallel finds unused parameters too).
    forward = wrap_ddp(model, device, ranks, find_unused_parameters=True)

    # The recipe: AdamW by parameter role, the peak lr scaled with the global batch, warm-up in epochs, then
    # a cosine to min_lr; one augmented view of each image, drawn on the device, for student and teachers.
    opt = configure_optimizer(model, cfg.peak_lr, cfg.weight_decay, cfg.betas)
    steps_per_epoch = math.ceil(usable / cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    augment = Augmentation(cfg.augmentation, cfg.input_size, cfg.seed)
    recorded = None if overwrite else recorded_precision(out_dir)  # a resumed run computes as it started
    precision = pick_precision(cfg, model, teachers, data, device, ranks, log, recorded)
    amp, generators = autocast(precision, device), {"teacher_drop": torch.Generator().manual_seed(cfg.seed)}

    # Resume last: loading restores every random generator, so nothing may draw from them after it.
    # Every rank loads the same checkpoint; rank 0 first, which alone removes leftovers (and the old run).
    output = RunOutput(out_dir, cfg, {"config": cfg.to_dict(), "teacher_grids": grids, "data": data.fingerprint,
                                      "precision": precision}, writes=ranks.main)
    on_exit.callback(output.close)  # the logger's files are complete however the run ends
    with ranks.main_first():
        state, resumed_from = output.resume(model, opt, generators, overwrite, log)
    if callback is not None and ranks.main:
        for record in state.history:  # a resumed run's plot starts with what was recorded before
            callback(record)

    def checkpoint() -> None:
        state.train_s = time.time() - t0
        output.checkpoint(model, state, opt, generators)

    t0 = time.time() - state.train_s
    model.train()
    while state.epoch < cfg.epochs:
        loader = data.loader("train", cfg.batch_size // ranks.size, shuffle=True, seed=cfg.seed, epoch=state.epoch,
                             start=state.batch * cfg.batch_size, rank=ranks.rank, world_size=ranks.size)
        for batch in loader:
            # A batch whose files are all unreadable is skipped, and counted; under torchrun the other ranks
            # would wait for this one's gradients forever, so there it is an error.
            state.batch += 1
            state.note_skipped(batch.skipped)
            if batch.images is None:
                if ranks.size > 1:
                    raise ValueError(f"rank {ranks.rank}: no image of a batch is readable "
                                     f"({'; '.join(batch.skipped[:3])}); "
                                     "a distributed run needs a readable image in every batch: remove the broken files")
                continue
            step, lr = state.step, get_lr(state.step, total, cfg.peak_lr, warmup, cfg.min_lr)
            set_lr(opt, lr)

            # Forward: standardized teacher targets, the ladder's predictions, teacher dropping (unic.py).
            images = batch.images.to(device, non_blocking=True)
            images = augment(images, step, positions=ranks.rank + ranks.size * torch.arange(len(images)))
            loss, losses, coeffs = distill_forward(model, teachers, images, batch_weight(step, total),
                                                   cfg.teacher_drop_prob, generators["teacher_drop"], amp, ranks,
                                                   forward)
            # One all-reduce for two things every rank must agree on: the loss (a NaN on any rank stops every
            # rank) and whether any rank was asked to stop (then all finish this step and stop after it).
            value = loss.detach().float()
            sums = ranks.all_sum(torch.stack([value, value.new_tensor(float(bool(requested())))]))
            global_loss, asked = sums[0] / ranks.size, bool(sums[1] > 0)
            if not torch.isfinite(global_loss):
                bad = [t for t, row in zip(teachers, losses) if not torch.isfinite(row).all()]
                raise NonFiniteLoss(
                    f"non-finite loss at step {step} (epoch {state.epoch + 1}), teacher(s) {bad or list(teachers)}; "
                    f"last good checkpoint: {output.latest() or 'none yet'}. Lower base_lr or check the teachers' "
                    f"features (a rerun in the same out_dir would resume from that checkpoint: change the "
                    f"configuration with overwrite=True or another out_dir).")

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
                sums = ranks.all_sum(torch.cat([losses.detach().sum(1), coeffs.sum(1),
                                                losses.new_tensor([losses.shape[1]])]))
                per_teacher, alphas = (sums[:n] / sums[-1]).tolist(), sums[n:2 * n].tolist()
                record = {"step": step, "epoch": step / steps_per_epoch, "lr": lr, "loss": global_loss.item(),
                          "time_s": time.time() - t0,
                          **{f"loss/{t}": v for t, v in zip(teachers, per_teacher)},
                          **{f"alpha/{t}": a for t, a in zip(teachers, alphas)}}
                state.history.append(record)
                output.record(record)
                if callback is not None and ranks.main:
                    callback(record)
            # Preempted: this step is done; a checkpoint now, whatever ckpt_every says. One process stops after the
            # step the signal came in; ranks after the step whose all-reduce told them all (this one or the next).
            stop = asked if ranks.size > 1 else bool(requested())
            if stop:
                checkpoint()
                where = output.preempted(state.step, requested() or "a stop on another rank")
                ranks.barrier()  # the other ranks wait for rank 0's checkpoint before they exit
                message = stop_message("distillation", state.step, where)
                log(message)
                raise Preempted(message)
            if cfg.ckpt_every and state.step % cfg.ckpt_every == 0:
                checkpoint()

        # The epoch's end: the validation loss (recorded with the epoch's last step), then its checkpoint.
        state.epoch, state.batch = state.epoch + 1, 0
        record = {"step": state.step - 1, "epoch": state.epoch, "time_s": time.time() - t0,
                  **validation_loss(model, teachers, data, cfg.batch_size // ranks.size, device, amp, ranks)}
        state.history.append(record)
        output.record(record)
        if callback is not None and ranks.main:
            callback(record)
        if not cfg.ckpt_every or state.epoch == cfg.epochs:
            checkpoint()
        unreadable = f"; {len(state.skipped)} unreadable image(s) skipped so far" if state.skipped else ""
        log(f"epoch {state.epoch}/{cfg.epochs}: {last_loss(state.history)}, val loss {record['val_loss']:.4f} "
            f"({time.time() - t0:.0f}s){unreadable}")

    model.eval()
    return DistillRun(model, state.history, output.finish(model, state), time.time() - t0, state.skipped, resumed_from,
                      precision)


def last_loss(history: list[dict]) -> str:
    losses = [r["loss"] for r in history if "loss" in r]
    return f"loss {losses[-1]:.4f}" if losses else "no readable batch"


def final_metrics(history: list[dict]) -> dict[str, float]:
    """A run's closing figures: the last logged training loss and the last epoch's validation losses."""
    train = [r for r in history if "loss" in r]
    val = [r for r in history if "val_loss" in r]
    return ({"final_loss": train[-1]["loss"]} if train else {}) | (
        {k: v for k, v in val[-1].items() if k.startswith("val_loss")} if val else {})


def run_summary(cfg: DistillConfig, data, run, runtime_s: float, nproc: int) -> dict:
    """What every distillation run reports in its ``summary.json``, the command line's and 03's (which adds its
    teachers, student and probes): the configuration, the data, the times (``runtime_s``: the caller's whole run),
    the closing losses, where it resumed, what it skipped, where the student is. ``run``: a ``DistillRun`` or a
    ``LaunchedRun``."""
    return {"config": cfg.to_dict(), "data": data.describe(), "runtime_s": round(runtime_s, 1),
            "distill_s": round(run.runtime_s, 1), "nproc": nproc,
            **final_metrics(run.history),  # the last training loss, the last epoch's validation losses
            "resumed_from_step": run.resumed_from, "unreadable_train_images": len(run.skipped),
            "student_folder": str(run.student_folder), "precision": run.precision}


def make_student(cfg: DistillConfig) -> Student:
    """The student to distill into: random, or the encoder of ``student_init`` (a student folder or a released
    UNIC checkpoint), which must be the configured architecture at the configured input size."""
    student = Student(cfg.student, img_size=cfg.image_size, drop_path_rate=cfg.drop_path,
                      preprocessing=cfg.student_preprocessing)
    if cfg.student_init != "random":
        init = load_student(cfg.student_init)
        if init.name != cfg.student or init.img_size != student.img_size:
            raise ParameterError(f"student_init {cfg.student_init!r} is a {init.name} at {init.img_size[0]} px; set "
                                 f"student {init.name} and image_size {init.img_size[0]} to continue distilling it")
        student.vit.load_state_dict(init.vit.state_dict())
    return student


def decoded_for_training(cfg: DistillConfig, data):
    """How image folders are decoded: the val split as the student is evaluated (its preprocessing); the train
    split as that too without augmentation, else the central square at ``TRAIN_DECODE_SCALE`` times the input
    side, from which the augmentation crops on the device. In-memory data (the offline ranks) is unchanged."""
    p = cfg.student_preprocessing
    if cfg.augmentation != "none":
        side = round(p.crop * TRAIN_DECODE_SCALE)
        train = Preprocessing(side, side, p.interpolation, p.mean, p.std)
        data = data.with_transform(train.image_transform(), key=f"train-decode-{train}", splits=("train",))
    else:
        data = data.with_transform(p.image_transform(), key=f"eval-{p}", splits=("train",))
    return data.with_transform(p.image_transform(), key=f"eval-{p}", splits=("test",))


def precision_trial(model: UNIC, teachers: dict[str, Teacher], images: torch.Tensor,
                    teacher_drop_prob: float) -> Callable[[str], None]:
    """``trial(precision)`` for ``resolve_precision``: one forward and backward of the run's models on ``images``,
    every random draw undone and the gradients cleared, so the run is as if untimed (no optimizer step)."""
    device = images.device

    def trial(precision: str) -> None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            loss, _, _ = distill_forward(model, teachers, images, None, teacher_drop_prob, None,
                                         autocast(precision, device))
            loss.backward()
        model.zero_grad(set_to_none=True)

    return trial


def pick_precision(cfg: DistillConfig, model: UNIC, teachers: dict[str, Teacher], data, device,
                   ranks: ProcessGroup, log=print, recorded: str | None = None) -> str:
    """``cfg.precision``, "auto" resolved by timing a few steps of these models at this batch (``core.precision``,
    ``precision_trial``); "auto" in a run that resumes takes the ``recorded`` precision of its checkpoint. Every
    rank takes rank 0's choice."""
    if cfg.precision == "auto" and recorded in ("fp32", "bf16") + (("fp16",) if device.type == "cuda" else ()):
        log(f"precision auto: {recorded}, as the checkpoint this run resumes from was computed")
        return recorded
    images = data.first_image("test").to(device).expand(cfg.batch_size // ranks.size, -1, -1, -1).contiguous()
    trial = precision_trial(model, teachers, images, cfg.teacher_drop_prob)
    shapes = {"student": cfg.student, "size": cfg.input_size, "batch": len(images), "ladder": cfg.ladder,
              "teachers": {t: [m.embed_dim, *model.teacher_grids[t]] for t, m in teachers.items()}}
    chosen = resolve_precision(cfg.precision, device, trial, shapes, log) if ranks.main else "fp32"
    if ranks.size > 1:
        chosen = PRECISIONS[int(ranks.all_sum(torch.tensor(float(PRECISIONS.index(chosen) if ranks.main else 0),
                                                           device=device)).item())]
    return chosen


@torch.no_grad()
def validation_loss(model: UNIC, teachers: dict[str, Teacher], data, batch_size: int, device, amp,
                    ranks: ProcessGroup) -> dict[str, float]:
    """The loss of the student against each teacher on the test (val) split, every teacher weighted alike (no
    dropping), targets standardized by the running statistics as they are (not updated): the mean over
    every rank's images."""
    model.eval()
    sums = torch.zeros(len(teachers) + 1, device=device)
    for batch in data.loader("test", batch_size, rank=ranks.rank, world_size=ranks.size):
        if batch.images is None:
            continue
        images = batch.images.to(device, non_blocking=True)
        with amp:
            feats = {t: m(images) for t, m in teachers.items()}
            preds = model(images)
        losses = teacher_losses(preds, model.targets(feats, update_weight=None)).float()
        sums += torch.cat([losses.sum(1), losses.new_tensor([losses.shape[1]])])
    model.train()
    sums = ranks.all_sum(sums)
    per_teacher = (sums[:-1] / sums[-1].clamp(min=1)).tolist()
    return {"val_loss": sum(per_teacher) / len(per_teacher),
            **{f"val_loss/{t}": v for t, v in zip(teachers, per_teacher)}}
