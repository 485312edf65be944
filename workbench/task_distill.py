"""Task-specific distillation: probe the teacher on the task, distill its predictions into a small student.

    cfg = TaskDistillConfig(teachers=["world_colour", "world_shape"], task="shape", labels_per_class=10)
    run = task_distill(cfg, data, teachers, out_dir="runs/03_distill")   # every student, every seed
    run.summary()["students"]["probed"]["mean"]

For each seed: draw ``labels_per_class`` labelled training images per class; fit a linear probe on
each teacher's frozen features (``workbench.probe``) and keep the teacher whose probe does best on
held-out labelled images; then train the students side by side, all on the same labelled batches,
the same extra images and the same initialisation:

- ``labels``: cross-entropy on the labelled images only (the baseline);
- ``finetuned``: distilled from the teacher fine-tuned end to end on the labelled images (short);
- ``probed``: distilled from the probed teacher (frozen encoder + linear probe);
- ``probed_mix``: as ``probed``, every distillation image blended with another one (``workbench.kd.mix_images``).

Distillation images are the labelled ones plus ``extra`` images without labels: rendered on the fly
(``world``: the offline world's generator draws fresh images every step), the rest of the training
split with labels hidden (``unlabelled``), or a folder of images such as the synthetic clone of 01.
The loss is ``workbench.kd.task_distillation_loss``. The students are independent jobs: on CPU they
train side by side, one single-threaded process per core (``workbench.parallel``), each seeded on its
own, so a student is the same whether it trained here or in a worker process.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.figure import Figure

from . import world
from .data import IMAGE_EXTENSIONS, Data, ImageFolderSplit, InMemorySplit, _collate
from .distill import autocast_for, load_student, pick_device
from .io import save_json, save_tensors
from .kd import mix_images, task_distillation_loss
from .live import LivePlot
from .parallel import auto_workers, map_jobs
from .probe import WEIGHT_DECAYS, few_shot_indices, fit_linear_probe
from .students import Student
from .teachers import Teacher

STUDENTS = {
    "labels": "labels only",
    "finetuned": "KD from the fine-tuned teacher",
    "probed": "KD from the probed teacher",
    "probed_mix": "KD from the probed teacher, mixed images",
}
# The probe's weight decay sets the scale of its logits, so it is chosen by held-out cross-entropy; every
# other decay of the probing grid is enough with a few labelled images (and twice as fast).
PROBE_WEIGHT_DECAYS = WEIGHT_DECAYS[::2]
FEW_SHOT_WEIGHT_DECAY = 1e-3  # as 02's few-shot probes, when there is no labelled image to spare
EXTRA_SOURCES = ("world", "unlabelled", "none")  # or the path of a folder of images


@dataclass
class TaskDistillConfig:
    teachers: list[str] = field(default_factory=lambda: ["world_colour", "world_shape"])
    task: str = "shape"
    student: str = "wb_vitc_tiny_patch8_32"
    student_init: str = "random"  # or a checkpoint folder written by 03 (objective "features")
    data: str = "world"
    labels_per_class: int = 10
    extra: str = "world"  # "world" (rendered on the fly), "unlabelled", "none", or a folder of images
    students: list[str] = field(default_factory=lambda: ["labels", "finetuned", "probed"])
    kd_weight: float = 0.9  # a: loss = (1 - a) * CE + a * KD
    temperature: float = 1.0  # T: with 6 classes, T = 1 teaches fastest (T = 2, 4 gave fewer points at 400 steps)
    mix: float = 1.0  # mixing: lam ~ Beta(mix, mix)
    steps: int = 300  # per student
    batch_size: int = 48  # images per step: a third labelled, the rest extra distillation images (students with a teacher)
    lr: float = 2e-3
    weight_decay: float = 0.05
    # A long warm-up and a loose clip get the student off its plateau at chance sooner (probed student, 300 steps,
    # 3 seeds: 76.5 % with warm-up 0.3 and clip 5; 54.7 % with 0.1 and 1). The step is near its limit: with warm-up
    # 0.1 and clip 5, lr 3e-3 gave 23.8 % and a batch of 40, 28.9 %.
    warmup_frac: float = 0.3
    grad_clip: float = 5.0
    finetune_steps: int = 50
    finetune_lr: float = 1e-3
    seed: int = 0
    repeats: int = 3  # seeds seed, seed + 1, ...: mean and spread
    device: str = "auto"
    workers: int = 0  # on CPU, students trained at once, each in its own process (0: one per core); GPU: 1

    def to_dict(self) -> dict:
        return asdict(self)

    def results_key(self) -> dict:
        """What decides the results (for ``prepare_out_dir``): everything but where and how many at once."""
        return {k: v for k, v in self.to_dict().items() if k not in ("device", "workers")}

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.repeats)]

    @property
    def labelled_batch(self) -> int:
        # The 60-odd labelled images repeat every few steps; fresh extra images carry the teacher's knowledge
        # (a third labelled: 78.6 +- 2.6 vs 74.0 +- 5.9 with half, probed student, default run, 3 seeds).
        return max(1, self.batch_size // 3)

    @classmethod
    def from_params(cls, **params) -> "TaskDistillConfig":
        """Validate notebook / command-line parameters (strings from ``papermill -p`` included)."""
        from .params import ParameterError, as_float, as_int, as_list, with_defaults
        from .students import check_student_name
        from .teachers import check_teacher_names

        p = with_defaults(cls, params, "task-distillation")
        students = as_list(p["students"], "students")
        bad = [s for s in students if s not in STUDENTS]
        if bad or len(set(students)) != len(students):
            raise ParameterError(f"students must be distinct names among {list(STUDENTS)}, got {students}")
        extra = str(p["extra"]).strip()
        if extra not in EXTRA_SOURCES and not Path(extra).is_dir():
            raise ParameterError(f"extra must be one of {list(EXTRA_SOURCES)} or a folder of images; "
                                 f"{extra!r} is not a folder")
        cfg = cls(
            teachers=check_teacher_names(as_list(p["teachers"], "teachers")),
            task=str(p["task"]),
            student=check_student_name(str(p["student"])),
            student_init=str(p["student_init"]),
            data=str(p["data"]),
            labels_per_class=as_int(p["labels_per_class"], "labels_per_class", minimum=1),
            extra=extra,
            students=students,
            kd_weight=as_float(p["kd_weight"], "kd_weight", low=0.0, high=1.0),
            temperature=as_float(p["temperature"], "temperature", low=0.0),
            mix=as_float(p["mix"], "mix", low=0.0),
            steps=as_int(p["steps"], "steps", minimum=1),
            batch_size=as_int(p["batch_size"], "batch_size", minimum=2),
            lr=as_float(p["lr"], "lr", low=0.0),
            weight_decay=as_float(p["weight_decay"], "weight_decay", low=0.0),
            warmup_frac=as_float(p["warmup_frac"], "warmup_frac", low=0.0, high=1.0),
            grad_clip=as_float(p["grad_clip"], "grad_clip", low=0.0),
            finetune_steps=as_int(p["finetune_steps"], "finetune_steps", minimum=0),
            finetune_lr=as_float(p["finetune_lr"], "finetune_lr", low=0.0),
            seed=as_int(p["seed"], "seed", minimum=0),
            repeats=as_int(p["repeats"], "repeats", minimum=1),
            device=str(p["device"]),
            workers=as_int(p["workers"], "workers", minimum=0),
        )
        if cfg.lr == 0 or cfg.temperature == 0:
            raise ParameterError("lr and temperature must be > 0")
        if "probed_mix" in cfg.students and cfg.mix == 0:
            raise ParameterError("the probed_mix student needs mix > 0 (the Beta concentration of the blend weights)")
        if "finetuned" in cfg.students and (cfg.finetune_steps == 0 or cfg.finetune_lr == 0):
            raise ParameterError("the finetuned student needs finetune_steps >= 1 and finetune_lr > 0")
        if cfg.student_init != "random" and not (Path(cfg.student_init) / "config.json").is_file():
            raise ParameterError(f"student_init must be 'random' or a checkpoint folder written by 03 (holding "
                                 f"config.json and student.safetensors); {cfg.student_init!r} is not one")
        pick_device(cfg.device)
        return cfg


# ----------------------------------------------------------------------------- images

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


def labelled_subset(data: Data, task: str, per_class: int, seed: int) -> Labelled:
    """``per_class`` random training images of each class of ``task`` (unreadable files are skipped)."""
    indices = few_shot_indices(data.train.labels[task], per_class, seed)
    images, labels, kept = [], [], []
    for i in indices.tolist():
        x, y = data.train[i]
        if x is not None:
            images.append(x)
            labels.append(y[task])
            kept.append(i)
    if not images:
        raise ValueError(f"no readable labelled image in the training split of {data.name!r}")
    pixels = (torch.stack(images) * 255).round().to(torch.uint8)
    return Labelled(pixels, torch.stack(labels).long(), torch.tensor(kept))


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 1/16 of the side (reflected border)."""
    n, _, h, w = images.shape
    pad = max(1, h // 16)
    flip = torch.rand(n, generator=gen) < 0.5
    images = torch.where(flip.view(n, 1, 1, 1), images.flip(-1), images)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def extra_images(source: str, data: Data, labelled: Labelled, batch_size: int, seed: int) -> Iterator[torch.Tensor] | None:
    """Endless batches of distillation images without labels, or None for ``source="none"``."""
    if source == "none":
        return None
    if source == "world":
        if data.name != "world":
            raise ValueError(f"extra='world' renders offline-world images, but the data is {data.name!r}; give a "
                             "folder of extra images (e.g. the synthetic clone from 01), 'unlabelled' or 'none'")
        return _rendered(batch_size, seed)
    if source == "unlabelled":
        rest = sorted(set(range(len(data.train))) - set(labelled.indices.tolist()))
        if not rest:
            raise ValueError("extra='unlabelled' but every training image is labelled; lower labels_per_class")
        return _loaded(torch.utils.data.Subset(data.train, rest), batch_size, seed)
    files = sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no image ({', '.join(sorted(IMAGE_EXTENSIONS))}) under the extra folder {source!r}")
    return _loaded(ImageFolderSplit([(p, 0) for p in files], data.image_size, "none"), batch_size, seed)


def _rendered(batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Fresh offline-world images every call, from seeds no split of ``load_data`` uses."""
    cfg, i = world.WorldConfig(), 0
    while True:
        images, _ = world.render(cfg, batch_size, seed=[50_000, seed, i])
        yield images.float() / 255
        i += 1


def _loaded(dataset, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    in_memory = isinstance(getattr(dataset, "dataset", dataset), InMemorySplit)  # a Subset, or the split itself
    workers = 0 if in_memory else min(8, os.cpu_count() or 1)  # image files are decoded in worker processes
    loader = torch.utils.data.DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=True,
                                         generator=torch.Generator().manual_seed(seed), num_workers=workers,
                                         collate_fn=_collate, drop_last=True, persistent_workers=workers > 0)
    while True:
        for batch in loader:
            if batch.images is not None:
                yield batch.images


# ----------------------------------------------------------------------------- teachers

class TeacherClassifier(nn.Module):
    """A teacher encoder with a linear head on its pooled feature: logits for the task."""

    def __init__(self, teacher: Teacher, head: nn.Module):
        super().__init__()
        self.teacher, self.head = teacher, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.teacher(images).cls)


@torch.no_grad()
def encode(teacher: Teacher, pixels: torch.Tensor, device, batch_size: int = 256) -> torch.Tensor:
    """Pooled teacher features of uint8 images."""
    with torch.inference_mode():
        return torch.cat([teacher(pixels[i : i + batch_size].to(device).float() / 255).cls.float().cpu()
                          for i in range(0, len(pixels), batch_size)])


def probe_teacher(teacher: Teacher, labelled: Labelled, n_classes: int, device, seed: int) -> tuple[TeacherClassifier, dict]:
    """The probed teacher: frozen encoder + the tuned linear probe of ``workbench.probe`` on its features.

    With too few labelled images to hold any out (under 3 per class), the weight decay is that of 02's
    few-shot probes and ``info["val_top1"]`` is None.
    """
    features = encode(teacher, labelled.pixels, device)
    try:
        probe, info = fit_linear_probe(features, labelled.labels, n_classes, seed=seed,
                                       weight_decays=PROBE_WEIGHT_DECAYS, select="log_loss")
    except ValueError:  # nothing to hold out
        probe, info = fit_linear_probe(features, labelled.labels, n_classes, weight_decay=FEW_SHOT_WEIGHT_DECAY)
    return TeacherClassifier(teacher, probe.to(device)).eval(), info


def finetune_teacher(teacher: Teacher, labelled: Labelled, n_classes: int, cfg: TaskDistillConfig, device,
                     seed: int) -> TeacherClassifier:
    """The teacher fine-tuned end to end with a new linear head on the labelled images (a short schedule)."""
    torch.manual_seed(seed)
    model = TeacherClassifier(copy.deepcopy(teacher), nn.Linear(teacher.embed_dim, n_classes)).to(device)
    model.requires_grad_(True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.finetune_lr, weight_decay=cfg.weight_decay)
    gen, amp = torch.Generator().manual_seed(seed), autocast_for(device)
    batches = labelled.batches(cfg.labelled_batch, gen)
    for step in range(cfg.finetune_steps):
        _set_lr(opt, _lr_at(step, cfg.finetune_steps, cfg.finetune_lr, cfg.warmup_frac))
        x, y = next(batches)
        with amp:
            logits = model(augment(x, gen).to(device))
        loss = F.cross_entropy(logits.float(), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.requires_grad_(False).eval()


# ----------------------------------------------------------------------------- students

class TaskStudent(nn.Module):
    """The student encoder with a linear head on its final CLS token."""

    def __init__(self, student: Student, n_classes: int):
        super().__init__()
        self.student, self.head = student, nn.Linear(student.embed_dim, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.student(images)[-1][0])


def make_student(cfg: TaskDistillConfig, n_classes: int) -> TaskStudent:
    """Random initialisation, or the encoder of a 03 checkpoint (a fresh head either way)."""
    if cfg.student_init == "random":
        return TaskStudent(Student(cfg.student), n_classes)
    saved = json.loads((Path(cfg.student_init) / "config.json").read_text())["config"]["student"]
    if saved != cfg.student:
        raise ValueError(f"student_init {cfg.student_init!r} holds a {saved!r} student but student={cfg.student!r}; "
                         f"set student={saved!r}")
    return TaskStudent(load_student(cfg.student_init).train(), n_classes)


def _lr_at(step: int, total: int, lr: float, warmup_frac: float) -> float:
    warmup = max(1, int(warmup_frac * total))
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def train_student(cfg: TaskDistillConfig, name: str, teacher: TeacherClassifier | None, labelled: Labelled,
                  extra: Iterator[torch.Tensor] | None, n_classes: int, seed: int, device,
                  evaluate: Callable[[nn.Module], float], callback: Callable[[dict], None] | None = None,
                  eval_every: int = 25) -> TaskStudent:
    """One student: (1 - a) * CE on labelled images + a * KD on the distillation images (no teacher: CE only)."""
    torch.manual_seed(seed)
    model = make_student(cfg, n_classes).to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    gen, rng, amp = torch.Generator().manual_seed(seed), np.random.default_rng(seed), autocast_for(device)
    batches = labelled.batches(cfg.labelled_batch, gen)
    mixing = name == "probed_mix"
    model.train()
    for step in range(cfg.steps):
        _set_lr(opt, _lr_at(step, cfg.steps, cfg.lr, cfg.warmup_frac))
        x, y = next(batches)
        x = augment(x, gen)
        kd_images = x if (teacher is None or extra is None) else torch.cat([x, augment(next(extra), gen)])
        if mixing:
            kd_images = mix_images(kd_images, cfg.mix, rng).images
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
            raise FloatingPointError(f"non-finite loss at step {step} of student {name!r} (seed {seed}); lower lr")
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

        if callback is not None and (step % eval_every == 0 or step == cfg.steps - 1):
            record = {"student": name, "seed": seed, "step": step, "loss": loss.total.item(), "ce": loss.ce.item(),
                      "kd": loss.kd.item()}
            if step % (2 * eval_every) == 0 or step == cfg.steps - 1:
                record["top1"] = evaluate(model)
                model.train()
            callback(record)
    return model.eval()


# ----------------------------------------------------------------------------- evaluation and the run

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


def eval_batches(data: Data, task: str, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The task's test split, streamed (unreadable files skipped)."""
    for batch in data.loader("test", batch_size):
        if batch.images is not None:
            yield batch.images, batch.labels[task]


@dataclass
class StudentJob:
    """One student of one seed: what a worker process needs besides what all jobs share."""

    name: str
    seed: int
    teacher: TeacherClassifier | None  # None: labels only
    labelled: Labelled


def run_student(job: StudentJob, shared: tuple, emit: Callable[[dict], None]) -> tuple[float, TaskStudent]:
    """Train one student and measure it on the whole test split (``shared``: cfg, data, classes, live set, device)."""
    cfg, data, n_classes, live_set, device = shared
    extra = None if job.teacher is None else extra_images(cfg.extra, data, job.labelled,
                                                           cfg.batch_size - cfg.labelled_batch, job.seed)
    model = train_student(cfg, job.name, job.teacher, job.labelled, extra, n_classes, job.seed, device,
                          lambda m: top1(m, live_set, device), emit)
    return top1(model, eval_batches(data, cfg.task), device), model


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
        stats = lambda v: {"mean": round(float(np.mean(v)), 2), "std": round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 2),  # noqa: E731
                           "min": round(min(v), 2), "max": round(max(v), 2), "per_seed": [round(a, 2) for a in v]}
        out = {"task": self.config.task, "seeds": self.config.seeds, "teacher_per_seed": self.chosen,
               "students": {s: stats(v) for s, v in self.students.items()},
               "teachers": {t: stats(v) for t, v in self.teachers.items()}}
        if "labels" in self.students:
            out["gain_over_labels"] = {s: stats([a - b for a, b in zip(v, self.students["labels"])])
                                       for s, v in self.students.items() if s != "labels"}
        return out


def task_distill(cfg: TaskDistillConfig, data: Data, teachers: dict[str, Teacher], out_dir: str | Path | None = None,
                 callback: Callable[[dict], None] | None = None, log=print) -> TaskRun:
    if cfg.task not in data.tasks:
        raise ValueError(f"task {cfg.task!r} is not a task of {data.name!r}; its tasks: {', '.join(data.tasks)}")
    device, t0 = pick_device(cfg.device), time.time()
    n_classes = len(data.tasks[cfg.task])
    teachers = {n: t.to(device).eval() for n, t in teachers.items()}
    live_set = [next(eval_batches(data, cfg.task, batch_size=250))]  # the live curve: a fixed slice of the test split
    test = lambda model: top1(model, eval_batches(data, cfg.task), device)  # noqa: E731
    history: list[dict] = []

    def record(r: dict) -> None:
        r["time_s"] = round(time.time() - t0, 2)
        history.append(r)
        if callback is not None:
            callback(r)

    teacher_top1: dict[str, list[float]] = {}
    chosen, jobs = [], []
    for seed in cfg.seeds:
        labelled = labelled_subset(data, cfg.task, cfg.labels_per_class, seed)
        probed = {n: probe_teacher(t, labelled, n_classes, device, seed) for n, t in teachers.items()}
        if len(probed) > 1 and any(info["val_top1"] is None for _, info in probed.values()):
            raise ValueError(f"labels_per_class={cfg.labels_per_class} leaves no labelled image to compare the teachers' "
                             "probes on; use labels_per_class >= 3 or a single teacher")
        best = max(probed, key=lambda n: probed[n][1]["val_top1"] or 0.0)
        chosen.append(best)
        for n, (clf, info) in probed.items():
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
    top1_of, models = {}, {}

    def finished(i: int, result: tuple[float, TaskStudent]) -> None:
        job = jobs[i]
        top1_of[job.name, job.seed] = result[0]
        if job.seed == cfg.seed:
            models[job.name] = result[1]
        log(f"  seed {job.seed} {job.name:<11} test top-1 {result[0]:5.1f}%  ({time.time() - t0:.0f}s)")

    map_jobs(run_student, jobs, (cfg, data, n_classes, live_set, device), workers, record, finished)
    students = {name: [top1_of[name, seed] for seed in cfg.seeds] for name in cfg.students}
    models = {name: models[name] for name in cfg.students}
    run = TaskRun(cfg, students, teacher_top1, chosen, history, time.time() - t0, models)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "history.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)
        for name, model in models.items():
            save_task_student(model, cfg, name, data.tasks[cfg.task], out_dir / "students" / name)
    return run


def save_task_student(model: TaskStudent, cfg: TaskDistillConfig, name: str, classes, folder: Path) -> Path:
    """``student.safetensors`` + ``head.safetensors`` + ``config.json`` (last): ``load_student`` reads the encoder."""
    save_tensors(model.student.state_dict(), folder / "student.safetensors")
    save_tensors(model.head.state_dict(), folder / "head.safetensors")
    save_json({"config": cfg.to_dict(), "objective": "task", "variant": name, "classes": list(classes)},
              folder / "config.json")
    return folder


# ----------------------------------------------------------------------------- pictures

def student_colour(name: str) -> str:
    """The same colour for a student in every plot, whatever students a run has and in whatever order."""
    return f"C{list(STUDENTS).index(name)}"


class TaskLivePlot(LivePlot):
    """Training loss and held-out top-1 while the students train: one colour per student, one line style per seed."""

    def __init__(self, every_s: float = 2.0, title: str = ""):
        super().__init__({"loss": "training loss", "top1": "test top-1 (%), 250 images"}, every_s, title)

    def figure(self) -> Figure:
        fig = Figure(figsize=(10, 3.4), dpi=100)
        axes = fig.subplots(1, 2)
        seen = {r["student"] for r in self.records}  # records of students trained at once arrive interleaved
        names = [s for s in STUDENTS if s in seen]
        seeds = sorted({r["seed"] for r in self.records})
        styles = ["-", "--", ":", "-."]
        for ax, (key, label) in zip(axes, self.panels.items()):
            for name in names:
                for j, seed in enumerate(seeds):
                    rs = sorted((r for r in self.records if r["student"] == name and r["seed"] == seed and key in r),
                                key=lambda r: r["step"])
                    if rs:
                        ax.plot([r["step"] for r in rs], [r[key] for r in rs], color=student_colour(name),
                                linestyle=styles[j % len(styles)], label=name if j == 0 else None)
            ax.set_title(label)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if names:
                ax.legend(fontsize=8)
        axes[0].set_yscale("log")
        fig.suptitle(self.title + (f"  (seeds {', '.join(map(str, seeds))}: -, --, :)" if len(seeds) > 1 else ""))
        fig.tight_layout()
        return fig


def results_figure(summary: dict, title: str = "") -> Figure:
    """Mean test top-1 (bars, +- std) of every student and teacher, one dot per seed."""
    rows = [(STUDENTS.get(s, s), v) for s, v in summary["students"].items()]
    rows += [(t, v) for t, v in summary["teachers"].items()]
    fig = Figure(figsize=(7, 0.45 * len(rows) + 1.2), dpi=100)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    colours = [student_colour(s) for s in summary["students"]] + ["0.7"] * len(summary["teachers"])
    for (label, v), yi, colour in zip(rows, y, colours):
        ax.barh(yi, v["mean"], xerr=v["std"], color=colour, alpha=0.85, capsize=3)
        ax.plot(v["per_seed"], [yi] * len(v["per_seed"]), "k.", markersize=5)
        ax.annotate(f"{v['mean']:.1f} ± {v['std']:.1f}", (max(v["mean"] + v["std"], v["max"]), yi), xytext=(5, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, [label for label, _ in rows])
    ax.set_xlim(0, 112)
    ax.set_xlabel("test top-1 (%)")
    ax.set_title(title or f"task {summary['task']!r}: mean ± std over seeds {summary['seeds']} (dots: seeds)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def task_table(summary: dict) -> str:
    """Markdown: test top-1 of every student and teacher, mean ± std and per seed, and the gain over labels only."""
    seeds, gains = summary["seeds"], summary.get("gain_over_labels", {})
    lines = ["| model | top-1 (%) | " + " | ".join(f"seed {s}" for s in seeds) + " | gain over labels only |",
             "|---|---:|" + "---:|" * len(seeds) + "---:|"]
    best = max(v["mean"] for v in summary["students"].values())
    rows = [(STUDENTS.get(s, s), v, gains.get(s)) for s, v in summary["students"].items()]
    rows += [(f"*teacher: {t}*", v, None) for t, v in summary["teachers"].items()]
    for label, v, gain in rows:
        mean = f"{v['mean']:.1f} ± {v['std']:.1f}"
        if v["mean"] == best and not label.startswith("*"):
            mean = f"**{mean}**"
        gain_cell = f"{gain['mean']:+.1f} ± {gain['std']:.1f}" if gain else ""
        lines.append(f"| {label} | {mean} | " + " | ".join(f"{a:.1f}" for a in v["per_seed"]) + f" | {gain_cell} |")
    return "\n".join(lines)
