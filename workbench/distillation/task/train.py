"""Task-specific distillation: probe the teacher on the task, distill its predictions into a small student.

    cfg = TaskDistillConfig(teachers=["world_colour", "world_shape"], task="shape", labels_per_class=10)
    run = task_distill(cfg, data, teachers, out_dir="runs/03_distill")   # every student, every seed
    run.summary()["students"]["probed"]["mean"]

For each seed: draw ``labels_per_class`` labelled training images per class; fit a linear probe on
each teacher's frozen features (``workbench.probing``) and keep the teacher whose probe does best on
held-out labelled images; then train the students side by side, all on the same labelled batches,
the same extra images and the same initialisation:

- ``labels``: cross-entropy on the labelled images only (the baseline);
- ``finetuned``: distilled from the teacher fine-tuned end to end on the labelled images (short);
- ``probed``: distilled from the probed teacher (frozen encoder + linear probe);
- ``probed_mix``: as ``probed``, every distillation image blended with another one (``kd.mix_images``).

Distillation images are the labelled ones plus ``extra`` images without labels: rendered on the fly
(``world``: the offline world's generator draws fresh images every step), the rest of the training
split with labels hidden (``unlabelled``), or a folder of images such as the synthetic clone of 01.
The loss is ``kd.task_distillation_loss``. The students are independent jobs: on CPU they
train side by side, one single-threaded process per core (``workbench.core.parallel``), each seeded on its
own, so a student is the same whether it trained here or in a worker process.

With an ``out_dir``, every student keeps a folder under ``<out_dir>/student_checkpoints/`` (``task.checkpoint``): on
SIGTERM or SIGUSR1 each running student finishes its step and saves itself there, students not started yet
do not start, and the run raises ``Preempted`` (exit code 75; a stopped cell in a notebook). A rerun keeps
the finished students and continues the stopped ones from their step, to the same weights and results as a
run never stopped. The run's out_dir is locked while it runs (``workbench.core.lock``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ...core.device import autocast_for, pick_device
from ...core.files import save_json, save_jsonl, save_tensors
from ...core.lock import hold_lock
from ...core.parallel import auto_workers, map_jobs
from ...core.preemption import EXIT_PREEMPTED, Preempted, StoppedJob, handle_preemption, requested
from ...core.stats import seed_stats
from ...core.training import NonFiniteLoss, configure_optimizer, get_lr, set_lr
from ...data import Data
from ...models import Student, Teacher, load_student
from ...models.students import STUDENT_CONFIG, STUDENT_WEIGHTS
from .checkpoint import CHECKPOINTS, StudentCheckpoint
from .config import TaskDistillConfig
from .data import Labelled, augment, eval_batches, extra_images, labelled_subset
from .kd import mix_images, task_distillation_loss
from .teachers import TeacherClassifier, finetune_teacher, probe_teacher


class TaskStudent(nn.Module):
    """The student encoder with a linear head on its final CLS token."""

    def __init__(self, student: Student, n_classes: int):
        super().__init__()
        self.student, self.head = student, nn.Linear(student.embed_dim, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.student.forward_features(images)[0])


def make_student(cfg: TaskDistillConfig, n_classes: int) -> TaskStudent:
    """Random initialisation, or the encoder of a 03 checkpoint or a released UNIC file (a fresh head either way)."""
    if cfg.student_init == "random":
        return TaskStudent(Student(cfg.student), n_classes)
    student = load_student(cfg.student_init)
    if student.name != cfg.student:
        raise ValueError(f"student_init {cfg.student_init!r} holds a {student.name!r} student but "
                         f"student={cfg.student!r}; set student={student.name!r}")
    return TaskStudent(student.train(), n_classes)


def train_student(cfg: TaskDistillConfig, name: str, teacher: TeacherClassifier | None, labelled: Labelled,
                  extra: Iterator[torch.Tensor] | None, n_classes: int, seed: int, device,
                  evaluate: Callable[[nn.Module], float], callback: Callable[[dict], None] | None = None,
                  eval_every: int = 25, checkpoint: StudentCheckpoint | None = None) -> TaskStudent | StoppedJob:
    """One student: (1 - a) * CE on labelled images + a * KD on the distillation images (no teacher: CE only).

    With a ``checkpoint``, a student stopped before continues from it, and a preemption stops this one after
    its current step, saved there (a ``StoppedJob`` is returned instead of the student)."""
    torch.manual_seed(seed)
    model = make_student(cfg, n_classes).to(device)
    opt = configure_optimizer(model, cfg.lr, cfg.weight_decay)
    gen, rng, amp = torch.Generator().manual_seed(seed), np.random.default_rng(seed), autocast_for(device)
    batches = labelled.batches(cfg.labelled_batch, gen)
    mixing = name == "probed_mix"
    start, records = 0, []
    if checkpoint is not None and checkpoint.job() is not None:
        start, records = checkpoint.restore(model, opt)
        for _ in range(start):  # the student's own streams, drawn again up to where it stopped
            step_inputs(cfg, batches, extra, gen, rng, teacher is not None, mixing)
        for record in records:
            if callback is not None:
                callback(record)
    model.train()
    for step in range(start, cfg.student_steps):
        set_lr(opt, get_lr(step, cfg.student_steps, cfg.lr, int(cfg.warmup_frac * cfg.student_steps)))
        x, y, kd_images = step_inputs(cfg, batches, extra, gen, rng, teacher is not None, mixing)
        inputs = torch.cat([x, kd_images]) if mixing else kd_images  # unmixed, the labelled images lead the batch
        with amp:
            logits = model(inputs.to(device, non_blocking=True))
        teacher_logits = None
        if teacher is not None:
            with torch.inference_mode(), amp:
                teacher_logits = teacher(kd_images.to(device, non_blocking=True)).float()
            teacher_logits = teacher_logits.clone()  # inference tensors cannot enter autograd
        loss = task_distillation_loss(logits[: len(x)], y.to(device), logits[len(x):] if mixing else logits,
                                      teacher_logits, cfg.kd_weight, cfg.temperature)
        if not torch.isfinite(loss.total):
            raise NonFiniteLoss(f"non-finite loss at step {step} of student {name!r} (seed {seed}); lower lr")
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

        if callback is not None and (step % eval_every == 0 or step == cfg.student_steps - 1):
            record = {"student": name, "seed": seed, "step": step, "loss": loss.total.item(), "ce": loss.ce.item(),
                      "kd": loss.kd.item()}
            if step % (2 * eval_every) == 0 or step == cfg.student_steps - 1:
                record["top1"] = evaluate(model)
                model.train()
            records.append(record)
            callback(record)
        if checkpoint is not None and requested() and step < cfg.student_steps - 1:  # preempted: saved after this step
            checkpoint.save(model, opt, step + 1, records)
            return StoppedJob(step + 1)
    return model.eval()


def step_inputs(cfg: TaskDistillConfig, batches, extra, gen: torch.Generator, rng: np.random.Generator,
                has_teacher: bool, mixing: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A step's labelled images and labels and its distillation images: every random draw of a step but the
    model's, so that a resumed student can draw the steps it already took again."""
    x, y = next(batches)
    x = augment(x, gen)
    kd_images = x if (not has_teacher or extra is None) else torch.cat([x, augment(next(extra), gen)])
    if mixing:
        kd_images = mix_images(kd_images, cfg.mix, rng).images
    return x, y, kd_images


@torch.no_grad()
def top1(model: nn.Module, batches, device) -> float:
    """Top-1 (%) of ``model`` over ``(images, labels)`` batches."""
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for images, labels in batches:
            correct += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
            total += len(labels)
    if total == 0:
        raise ValueError("no readable test image")
    return 100.0 * correct / total


@dataclass
class StudentJob:
    """One student of one seed: what a worker process needs besides what all jobs share."""

    name: str
    seed: int
    teacher: TeacherClassifier | None  # None: labels only
    labelled: Labelled


def run_student(job: StudentJob, shared: tuple,
                emit: Callable[[dict], None]) -> tuple[float, TaskStudent | None] | StoppedJob:
    """Train one student and measure it on the whole test split (``shared``: cfg, data, classes, live set, device,
    out_dir, run key). A student finished before is taken from its checkpoint; a preempted one returns a
    ``StoppedJob``."""
    cfg, data, n_classes, live_set, device, out_dir, key = shared
    checkpoint = StudentCheckpoint.of(out_dir, job.seed, job.name, key)
    done = checkpoint.job()
    keep = job.seed == cfg.seed  # the students of the first seed are returned (and saved by the run)
    if done is not None and done["finished"]:
        for record in checkpoint.records():
            emit(record)
        model = checkpoint.load_weights(make_student(cfg, n_classes).to(device)).eval() if done["weights"] else None
        return done["top1"], model
    if requested():  # the run is stopping: a student not started yet waits for the rerun
        return StoppedJob(done["step"] if done else 0)
    extra = None if job.teacher is None else extra_images(cfg.extra, data, job.labelled,
                                                           cfg.batch_size - cfg.labelled_batch, job.seed)
    records: list[dict] = []

    def record(r: dict) -> None:
        records.append(r)
        emit(r)

    model = train_student(cfg, job.name, job.teacher, job.labelled, extra, n_classes, job.seed, device,
                          lambda m: top1(m, live_set, device), record, checkpoint=checkpoint)
    if isinstance(model, StoppedJob):
        return model
    result = top1(model, eval_batches(data, cfg.task), device)
    checkpoint.save(model if keep else None, None, cfg.student_steps, records, top1=result)
    return result, model


@dataclass
class TaskRun:
    config: TaskDistillConfig
    students: dict[str, list[float]]  # student -> test top-1 per seed
    teachers: dict[str, list[float]]  # "probed <name>" for every teacher, "fine-tuned" -> test top-1 per seed
    chosen: list[str]  # the distilled teacher, per seed
    history: list[dict]
    runtime_s: float
    models: dict[str, TaskStudent] = field(default_factory=dict)  # the students of the first seed

    def summary(self) -> dict:
        out = {"task": self.config.task, "seeds": self.config.seeds, "teacher_per_seed": self.chosen,
               "students": {s: seed_stats(v) for s, v in self.students.items()},
               "teachers": {t: seed_stats(v) for t, v in self.teachers.items()}}
        if "labels" in self.students:
            out["gain_over_labels"] = {s: seed_stats([a - b for a, b in zip(v, self.students["labels"])])
                                       for s, v in self.students.items() if s != "labels"}
        return out


def task_distill(cfg: TaskDistillConfig, data: Data, teachers: dict[str, Teacher], out_dir: str | Path | None = None,
                 callback: Callable[[dict], None] | None = None, log=print) -> TaskRun:
    """Every student of every seed (see the module docstring); with ``out_dir``, resumable and locked."""
    with handle_preemption(), hold_lock(out_dir, what=cfg.kind) if out_dir is not None else nullcontext():
        return _task_distill(cfg, data, teachers, out_dir, callback, log)


def _task_distill(cfg: TaskDistillConfig, data: Data, teachers: dict[str, Teacher], out_dir, callback, log) -> TaskRun:
    if cfg.task not in data.tasks:
        raise ValueError(f"task {cfg.task!r} is not a task of {data.name!r}; its tasks: {', '.join(data.tasks)}")
    device, t0 = pick_device(cfg.device), time.time()
    n_classes = len(data.tasks[cfg.task])
    teachers = {n: t.to(device).eval() for n, t in teachers.items()}
    live_set = [next(eval_batches(data, cfg.task, batch_size=250))]  # the live curve: a fixed slice of the test split

    def test(model: nn.Module) -> float:
        return top1(model, eval_batches(data, cfg.task), device)

    history: list[dict] = []

    def record(r: dict) -> None:
        r["time_s"] = round(time.time() - t0, 2)
        history.append(r)
        if callback is not None:
            callback(r)

    teacher_top1: dict[str, list[float]] = {}
    chosen, jobs = [], []
    for seed in cfg.seeds:
        if requested():  # between seeds' teachers: nothing of this run is half-done yet
            raise Preempted(f"{requested()} received: task distillation stopped while probing the teachers, before any "
                            f"student; exit code {EXIT_PREEMPTED}. Rerun with the same out_dir to start the students.")
        labelled = labelled_subset(data, cfg.task, cfg.labels_per_class, seed)
        probed = {n: probe_teacher(t, labelled, n_classes, device, seed) for n, t in teachers.items()}
        if len(probed) > 1 and any(info["val_top1"] is None for _, info in probed.values()):
            raise ValueError(f"labels_per_class={cfg.labels_per_class} leaves no labelled image to compare the "
                             "teachers' "
                             "probes on; use labels_per_class >= 3 or a single teacher")
        best = max(probed, key=lambda n: probed[n][1]["val_top1"] or 0.0)
        chosen.append(best)
        for n, (clf, _) in probed.items():
            teacher_top1.setdefault(f"probed {n}", []).append(test(clf))
        kd_teachers = {"probed": probed[best][0], "probed_mix": probed[best][0], "labels": None}
        if "finetuned" in cfg.students:
            kd_teachers["finetuned"] = finetune_teacher(teachers[best], labelled, n_classes, cfg, device, seed)
            teacher_top1.setdefault("fine-tuned", []).append(test(kd_teachers["finetuned"]))
        log(f"seed {seed}: {len(labelled.labels)} labelled images; probed teachers (held-out labelled top-1): "
            + ", ".join(f"{n} {'-' if i['val_top1'] is None else format(i['val_top1'], '.0f')}%"
                        for n, (_, i) in probed.items()) + f" -> distilling {best}")
        jobs += [StudentJob(name, seed, kd_teachers[name], labelled) for name in cfg.students]

    # The students: independent, so on CPU they train side by side in single-threaded processes.
    jobs.sort(key=lambda job: job.teacher is None)  # the label-only students are the cheapest: last
    workers = (cfg.workers or auto_workers(len(jobs), device)) if device.type == "cpu" else 1  # a GPU is shared anyway
    log(f"training {len(jobs)} students ({len(cfg.students)} per seed)"
        + (f", {min(workers, len(jobs))} at a time in separate processes" if workers > 1 and len(jobs) > 1 else ""))
    top1_of, models, stopped = {}, {}, {}

    def finished(i: int, result: tuple[float, TaskStudent | None] | StoppedJob) -> None:
        job = jobs[i]
        if isinstance(result, StoppedJob):
            stopped[job.name, job.seed] = result.step
            return
        top1_of[job.name, job.seed] = result[0]
        if job.seed == cfg.seed:
            models[job.name] = result[1]
        log(f"  seed {job.seed} {job.name:<11} test top-1 {result[0]:5.1f}%  ({time.time() - t0:.0f}s)")

    key = {"run": cfg.run_key(), "data": data.fingerprint}  # what a student's checkpoint must belong to
    map_jobs(run_student, jobs, (cfg, data, n_classes, live_set, device, out_dir, key), workers, record, finished)
    if stopped:
        midway = ", ".join(f"{name} (seed {seed}) at step {step}" for (name, seed), step in stopped.items() if step)
        saved = f"saved in {Path(out_dir) / CHECKPOINTS}" if out_dir is not None else "no out_dir: nothing saved"
        message = (f"{requested() or 'stop'} received: task distillation stopped after the current steps: "
                   f"{len(top1_of)} of {len(jobs)} students finished, {midway or 'none'} stopped mid-way, "
                   f"{sum(not step for step in stopped.values())} not started ({saved}); exit code {EXIT_PREEMPTED}. "
                   "Rerun with the same out_dir to resume.")
        log(message)
        raise Preempted(message)
    students = {name: [top1_of[name, seed] for seed in cfg.seeds] for name in cfg.students}
    models = {name: models[name] for name in cfg.students}
    run = TaskRun(cfg, students, teacher_top1, chosen, history, time.time() - t0, models)
    if out_dir is not None:
        out_dir = Path(out_dir)
        save_jsonl(history, out_dir / "history.jsonl")
        for name, model in models.items():
            save_task_student(model, cfg, name, data.tasks[cfg.task], out_dir / "students" / name)
    return run


def save_task_student(model: TaskStudent, cfg: TaskDistillConfig, name: str, classes, folder: Path) -> Path:
    """``student.safetensors`` + ``head.safetensors`` + ``config.json`` (last): ``load_student`` reads the encoder."""
    save_tensors(model.student.state_dict(), folder / STUDENT_WEIGHTS)
    save_tensors(model.head.state_dict(), folder / "head.safetensors")
    save_json({"config": cfg.to_dict(), "objective": "task", "variant": name, "classes": list(classes),
               "preprocessing": model.student.preprocessing.to_dict()}, folder / STUDENT_CONFIG)
    return folder
