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
The loss is ``kd.task_distillation_loss``. Every student (and the fine-tuned teacher) is trained by the one loop
of a student classifier, ``workbench.models.train_classifier``, with its own step (``kd.TaskObjective``). The
students are independent jobs: on CPU they train side by side, one single-threaded process per core
(``workbench.core.parallel``), each seeded on its own, so a student is the same whether it trained here or in a
worker process.

With an ``out_dir``, every student keeps a folder under ``<out_dir>/student_checkpoints/`` (``task.checkpoint``): on
SIGTERM or SIGUSR1 each running student finishes its step and saves itself there, students not started yet
do not start, and the run raises ``Preempted`` (exit code 75; a stopped cell in a notebook). A rerun keeps
the finished students and continues the stopped ones from their step, to the same weights and results as a
run never stopped. The run's out_dir is locked while it runs (``workbench.core.lock``).

With an out_dir, the live records also go to the ``logger`` of the config (``workbench.core.loggers``: TensorBoard,
W&B), each value as ``<value>/<student>/seed<k>`` at the student's step (``logged_scalars``); a rerun logs the
records of its finished and resumed students again, as its history holds them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ...core.device import pick_device
from ...core.files import save_json, save_jsonl, save_tensors
from ...core.lock import hold_lock
from ...core.loggers import Logger, make_logger
from ...core.parallel import auto_workers, map_jobs
from ...core.preemption import EXIT_PREEMPTED, Preempted, StoppedJob, handle_preemption, requested
from ...core.stats import seed_stats
from ...data import Data
from ...data.labelled import Labelled
from ...models import StudentClassifier, Teacher, classifier_precision, make_classifier, train_classifier
from ...models.students import STUDENT_CONFIG, STUDENT_WEIGHTS
from .checkpoint import CHECKPOINTS, StudentCheckpoint
from .config import TaskDistillConfig
from .data import eval_batches, extra_images, labelled_subset
from .kd import TaskObjective
from .teachers import TeacherClassifier, finetune_teacher, probe_teacher

TaskStudent = StudentClassifier  # 05's name for the student with a head


def make_student(cfg: TaskDistillConfig, n_classes: int) -> StudentClassifier:
    """Random initialisation, or the encoder of a 03 checkpoint or a released UNIC file (a fresh head either way)."""
    return make_classifier(cfg.student, cfg.student_init, n_classes)


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
                emit: Callable[[dict], None]) -> tuple[float, StudentClassifier | None] | StoppedJob:
    """Train one student and measure it on the whole test split (``shared``: cfg, data, classes, live set, device,
    out_dir, run key, precision). A student finished before is taken from its checkpoint; a preempted one returns a
    ``StoppedJob``."""
    cfg, data, n_classes, live_set, device, out_dir, key, precision = shared
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

    objective = TaskObjective(job.teacher, extra, cfg.kd_weight, cfg.temperature,
                              cfg.mix if job.name == "probed_mix" else None, device, precision)
    model = train_classifier(build=lambda: make_student(cfg, n_classes), labelled=job.labelled,
                             batch_size=cfg.labelled_batch, steps=cfg.student_steps, lr=cfg.lr, seed=job.seed,
                             device=device, weight_decay=cfg.weight_decay, warmup_frac=cfg.warmup_frac,
                             grad_clip=cfg.grad_clip, objective=objective, name=job.name,
                             evaluate=lambda m: top1(m, live_set, device), callback=record, checkpoint=checkpoint,
                             precision=precision)
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
    models: dict[str, StudentClassifier] = field(default_factory=dict)  # the students of the first seed
    precision: str = "fp32"  # what the students and teachers computed in (``precision`` "auto" resolved)

    def summary(self) -> dict:
        out = {"task": self.config.task, "seeds": self.config.seeds, "teacher_per_seed": self.chosen,
               "students": {s: seed_stats(v) for s, v in self.students.items()},
               "teachers": {t: seed_stats(v) for t, v in self.teachers.items()}, "precision": self.precision}
        if "labels" in self.students:
            out["gain_over_labels"] = {s: seed_stats([a - b for a, b in zip(v, self.students["labels"])])
                                       for s, v in self.students.items() if s != "labels"}
        return out


def task_distill(cfg: TaskDistillConfig, data: Data, teachers: dict[str, Teacher], out_dir: str | Path | None = None,
                 callback: Callable[[dict], None] | None = None, log=print) -> TaskRun:
    """Every student of every seed (see the module docstring); with ``out_dir``, resumable and locked."""
    with handle_preemption(), hold_lock(out_dir, what=cfg.kind) if out_dir is not None else nullcontext(), \
            ExitStack() as on_exit:
        return _task_distill(cfg, data, teachers, out_dir, callback, log, on_exit)


def logged_scalars(record: dict) -> dict:
    """A student's live record as a logger takes it: each value named ``<value>/<student>/seed<k>`` (students and
    seeds have steps of their own)."""
    return {f"{k}/{record['student']}/seed{record['seed']}": v for k, v in record.items()
            if k not in ("student", "seed", "step")}


def _task_distill(cfg: TaskDistillConfig, data: Data, teachers: dict[str, Teacher], out_dir, callback, log,
                  on_exit: ExitStack) -> TaskRun:
    if cfg.task not in data.tasks:
        raise ValueError(f"task {cfg.task!r} is not a task of {data.name!r}; its tasks: {', '.join(data.tasks)}")
    logger = on_exit.enter_context(make_logger(cfg.logger, out_dir, Path(out_dir).name, cfg.to_dict())
                                   if out_dir is not None else Logger())
    device, t0 = pick_device(cfg.device), time.time()
    n_classes = len(data.tasks[cfg.task])
    teachers = {n: t.to(device).eval() for n, t in teachers.items()}
    live_set = [next(eval_batches(data, cfg.task, batch_size=250))]  # the live curve: a fixed slice of the test split
    precision = classifier_precision(cfg.precision, build=lambda: make_student(cfg, n_classes),
                                     batch_size=cfg.batch_size, input_size=cfg.input_size, device=device,
                                     name=cfg.student, log=log)

    def test(model: nn.Module) -> float:
        return top1(model, eval_batches(data, cfg.task), device)

    history: list[dict] = []

    def record(r: dict) -> None:
        r["time_s"] = round(time.time() - t0, 2)
        history.append(r)
        logger.log(logged_scalars(r), r["step"])
        if callback is not None:
            callback(r)

    teacher_top1: dict[str, list[float]] = {}
    chosen, jobs = [], []
    for seed in cfg.seeds:
        if requested():  # between seeds' teachers: nothing of this run is half-done yet
            raise Preempted(f"{requested()} received: task distillation stopped while probing the teachers, before any "
                            f"student; exit code {EXIT_PREEMPTED}. Rerun the same command (or notebook cell) with the "
                            "same out_dir to start the students.")
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
            kd_teachers["finetuned"] = finetune_teacher(teachers[best], labelled, n_classes, cfg, device, seed,
                                                        precision)
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

    def finished(i: int, result: tuple[float, StudentClassifier | None] | StoppedJob) -> None:
        job = jobs[i]
        if isinstance(result, StoppedJob):
            stopped[job.name, job.seed] = result.step
            return
        top1_of[job.name, job.seed] = result[0]
        if job.seed == cfg.seed:
            models[job.name] = result[1]
        log(f"  seed {job.seed} {job.name:<11} test top-1 {result[0]:5.1f}%  ({time.time() - t0:.0f}s)")

    key = {"run": cfg.run_key(), "data": data.fingerprint}  # what a student's checkpoint must belong to
    map_jobs(run_student, jobs, (cfg, data, n_classes, live_set, device, out_dir, key, precision), workers, record,
             finished)
    if stopped:
        midway = ", ".join(f"{name} (seed {seed}) at step {step}" for (name, seed), step in stopped.items() if step)
        saved = f"saved in {Path(out_dir) / CHECKPOINTS}" if out_dir is not None else "no out_dir: nothing saved"
        message = (f"{requested() or 'stop'} received: task distillation stopped after the current steps: "
                   f"{len(top1_of)} of {len(jobs)} students finished, {midway or 'none'} stopped mid-way, "
                   f"{sum(not step for step in stopped.values())} not started ({saved}); exit code {EXIT_PREEMPTED}. "
                   "Rerun the same command (or notebook cell) with the same out_dir to resume.")
        log(message)
        raise Preempted(message)
    students = {name: [top1_of[name, seed] for seed in cfg.seeds] for name in cfg.students}
    models = {name: models[name] for name in cfg.students}
    run = TaskRun(cfg, students, teacher_top1, chosen, history, time.time() - t0, models, precision)
    if out_dir is not None:
        out_dir = Path(out_dir)
        save_jsonl(history, out_dir / "history.jsonl")
        for name, model in models.items():
            save_task_student(model, cfg, name, data.tasks[cfg.task], out_dir / "students" / name)
    return run


def save_task_student(model: StudentClassifier, cfg: TaskDistillConfig, name: str, classes, folder: Path) -> Path:
    """``student.safetensors`` + ``head.safetensors`` + ``config.json`` (last): ``load_student`` reads the encoder."""
    save_tensors(model.student.state_dict(), folder / STUDENT_WEIGHTS)
    save_tensors(model.head.state_dict(), folder / "head.safetensors")
    save_json({"config": cfg.to_dict(), "objective": "task", "variant": name, "classes": list(classes),
               "preprocessing": model.student.preprocessing.to_dict()}, folder / STUDENT_CONFIG)
    return folder
