"""Transfer: probe any set of models on a suite of tasks; aggregates as in UNIC and t-ReX.

    models = load_models("world_colour,world_shape,student", device)  # teachers, students
    suite = world_suite()                                  # the offline world's transfer tasks
    rows = evaluate(models, suite, load_task_data(suite), device)  # tidy: model, task, top1, protocol, seed
    table = probe_table(rows)                              # {model: {task: top1}}
    relative_gains(table, teachers=["world_colour", "world_shape"])

**Protocol.** Every task is a train/test pair with labels; each model encodes both once (features cached
under ``$WORKBENCH_CACHE/features``, keyed by model weights and data), then the linear probe of
``workbench.probe`` (weight decay tuned on a held-out 20%, refit on all training data) gives top-1 on the
test split. A few-shot task trains the probe on ``shots`` images per class instead, three draws (seeds
0, 1, 2; weight decay 1e-3, too few images to tune it), one row per draw.

**Aggregates.** Relative gain of a model over the best teacher of each task (UNIC's radar chart):
100 (top1 - best) / best, in %, 0 for the best teacher itself. Mean top-1 over tasks. Mean log-odds
(t-ReX, after Kornblith et al. 2019): log(p / (1 - p)) for top-1 p in [0, 1], averaged over tasks; it
weighs a gain from 98% to 99% like one from 50% to 67%, so saturated tasks are not drowned out. p is
clipped to [1e-4, 1 - 1e-4] (a perfect score would be infinite).

**The offline world's suite** (``world_suite``): the 03 student was distilled on the world's training
images (six shapes, six colours, four background styles). Its tasks probe what a representation keeps:
the two factors in-domain and on the two held-out background styles, the joint 36-way shape x colour
task (only a model that keeps both factors can solve it), few-shot shape on held-out backgrounds, and
15 novel shapes no world model was trained on. The concept-generalization levels of the world (``world_levels``)
are built by the real CoG builder (``workbench.cog``): the 15 novel shapes are WordNet nouns (trapezoid,
hexagon, heart, arrow, house, fish, ...), ranked by Lin similarity to the six seen shapes' synsets and
cut into 5 levels of 3; each level is a 3-way task.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import world
from .data import Data, InMemorySplit, load_data
from .io import cache_dir, config_hash
from .probe import cached_features, few_shot_indices, linear_probe, model_fingerprint

FEW_SHOT_SEEDS = (0, 1, 2)
FEW_SHOT_WEIGHT_DECAY = 1e-3
LOG_ODDS_EPS = 1e-4


# ----------------------------------------------------------------------------- tasks

@dataclass(frozen=True)
class TransferTask:
    name: str
    dataset: str  # a world dataset name (WORLD_DATASETS) or an ImageFolder path
    label: str  # which label of the dataset is the target
    shots: int | None = None  # few-shot: training images per class (None: the whole training split)
    description: str = ""

    @property
    def protocol(self) -> str:
        return "linear" if self.shots is None else f"linear {self.shots}-shot"


WORLD_TASKS = (
    TransferTask("shape", "world", "shape", description="6 shapes, training backgrounds (in-domain)"),
    TransferTask("colour", "world", "colour", description="6 colours, training backgrounds (in-domain)"),
    TransferTask("shape_x_colour", "world", "shape_x_colour",
                 description="36 shape-colour pairs: needs both factors in one feature"),
    TransferTask("shape_new_bg", "world_new_backgrounds", "shape",
                 description="6 shapes on held-out backgrounds (stripes, checker)"),
    TransferTask("colour_new_bg", "world_new_backgrounds", "colour",
                 description="6 colours on held-out backgrounds"),
    TransferTask("shape_new_bg_5shot", "world_new_backgrounds", "shape", shots=5,
                 description="6 shapes on held-out backgrounds, 5 training images per class"),
    TransferTask("novel_shapes", "world_novel_shapes", "shape",
                 description="15 shapes no world model was trained on"),
)

# The world's shapes as WordNet 3.0 noun synsets: the seen concepts, and the novel (unseen) ones.
WORLD_SHAPE_WNIDS = {"circle": "n13873502", "square": "n13878634", "triangle": "n13879320",
                     "diamond": "n13882961", "plus": "n06811986", "ring": "n13875392"}
NOVEL_SHAPE_WNIDS = {"trapezoid": "n13881512", "pentagon": "n13882201", "hexagon": "n13882276", "star": "n13881644",
                     "semicircle": "n13874251", "heart": "n13865904", "sector": "n13875027",
                     "crescent": "n13896217", "teardrop": "n13901925", "bell": "n13886260", "arrow": "n06818121",
                     "letter_x": "n06833663", "house": "n03544360", "fish": "n02512053", "hourglass": "n03544143"}
assert set(WORLD_SHAPE_WNIDS) == set(world.SHAPES) and set(NOVEL_SHAPE_WNIDS) == set(world.NOVEL_SHAPES)

WORLD_DATASETS = ("world", "world_new_backgrounds", "world_novel_shapes")


def world_suite(names=None) -> list[TransferTask]:
    """The offline world's tasks (all, or those named)."""
    known = {t.name: t for t in WORLD_TASKS}
    if names is None:
        return list(WORLD_TASKS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown world task(s) {unknown}; known: {list(known)} (or name=path for an ImageFolder)")
    return [known[n] for n in names]


def parse_tasks(spec) -> list[TransferTask]:
    """``world`` (the whole offline suite), world task names, and ``name=path`` ImageFolder tasks."""
    from .params import as_list

    tasks = []
    for item in as_list(spec, "tasks"):
        name, sep, path = item.partition("=")
        if sep:
            name, path = name.strip(), path.strip()
            if not Path(path).is_dir():
                raise FileNotFoundError(f"task {name!r}: {path!r} is not a folder (an ImageFolder: <class>/<image>, "
                                        "or train/ and val/ holding them)")
            tasks.append(TransferTask(name, path, "classes", description=f"ImageFolder {path}"))
        elif item == "world":
            tasks += world_suite()
        else:
            tasks += world_suite([item])
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be distinct, got {names}")
    return tasks


def world_levels(n_levels: int = 5):
    """CoG levels of the world's novel shapes: WordNet Lin similarity to the six seen shapes."""
    from .cog import cog_levels

    levels = cog_levels(WORLD_SHAPE_WNIDS.values(), NOVEL_SHAPE_WNIDS.values(), n_levels=n_levels)
    by_wnid = {w: s for s, w in NOVEL_SHAPE_WNIDS.items()}
    return levels, [[by_wnid[w] for w in level] for level in levels.levels]


def level_tasks(level_shapes: list[list[str]]) -> list[TransferTask]:
    return [TransferTask(f"L{k}", "world_novel_shapes", f"L{k}",
                         description=f"level {k}: {', '.join(shapes)}") for k, shapes in enumerate(level_shapes, 1)]


# ----------------------------------------------------------------------------- data

def world_dataset(name: str, n_train: int = 6000, n_test: int = 2000, seed: int = 0,
                  level_shapes: list[list[str]] | None = None) -> Data:
    """One of the world's transfer datasets, all labels included.

    ``world`` is exactly the images 03 distills and probes on (same seeds as ``load_data("world")``);
    ``world_new_backgrounds`` draws fresh images on the held-out background styles;
    ``world_novel_shapes`` draws the novel shapes on training backgrounds, with a label per CoG level
    (-1 for images of other levels) when ``level_shapes`` is given.
    """
    if name == "world":
        cfg, shapes, seeds = world.WorldConfig(), world.SHAPES, (20_000, 30_000)
    elif name == "world_new_backgrounds":
        cfg, shapes, seeds = world.WorldConfig(backgrounds=world.HELD_OUT_BACKGROUNDS), world.SHAPES, (40_000, 50_000)
    elif name == "world_novel_shapes":
        cfg, shapes, seeds = world.WorldConfig(), world.NOVEL_SHAPES, (60_000, 70_000)
    else:
        raise ValueError(f"unknown world dataset {name!r}; known: {list(WORLD_DATASETS)}")
    splits = [world.make_split(cfg, n, seed=s + seed, shapes=shapes) for n, s in ((n_train, seeds[0]), (n_test, seeds[1]))]
    tasks = {"shape": tuple(shapes), "colour": world.COLOURS,
             "shape_x_colour": tuple(f"{c} {s}" for s in shapes for c in world.COLOURS)}
    for split in splits:
        split.labels["shape_x_colour"] = split.labels["shape"] * len(world.COLOURS) + split.labels["colour"]
        split.labels.pop("background")
    if level_shapes and name == "world_novel_shapes":
        for k, members in enumerate(level_shapes, 1):
            tasks[f"L{k}"] = tuple(members)
            lookup = torch.full((len(shapes),), -1, dtype=torch.long)
            for j, s in enumerate(members):
                lookup[shapes.index(s)] = j
            for split in splits:
                split.labels[f"L{k}"] = lookup[split.labels["shape"]]
    fingerprint = config_hash({"world": world.config_dict(cfg), "version": world.VERSION, "shapes": shapes,
                               "n": [n_train, n_test], "seeds": [s + seed for s in seeds], "labels": tasks})
    tr, te = splits
    return Data(name, InMemorySplit(tr.images, tr.labels), InMemorySplit(te.images, te.labels), tasks,
                cfg.image_size, fingerprint)


def load_task_data(tasks: list[TransferTask], n_train: int = 6000, n_test: int = 2000, image_size: int = 224,
                   level_shapes: list[list[str]] | None = None) -> dict[str, Data]:
    """Every dataset the tasks need, each loaded once (tasks on the same images share features)."""
    out = {}
    for task in tasks:
        if task.dataset in out:
            continue
        if task.dataset in WORLD_DATASETS:
            out[task.dataset] = world_dataset(task.dataset, n_train, n_test, level_shapes=level_shapes)
        else:
            out[task.dataset] = load_data(task.dataset, image_size=image_size)
    return out


# ----------------------------------------------------------------------------- models

@dataclass
class TransferModel:
    name: str
    role: str  # "teacher" or "student"
    module: torch.nn.Module
    encode: Callable[[torch.Tensor], torch.Tensor]  # images in [0, 1] -> pooled feature
    patches: Callable[[torch.Tensor], tuple[torch.Tensor, tuple[int, int]]]  # -> (B, N, D) patch tokens, grid
    source: str = ""

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.module)


def _teacher(name: str, device, checkpoint: str | None = None) -> TransferModel:
    from .teachers import create_teacher

    m = create_teacher(name, checkpoint=checkpoint).to(device)

    def patches(x, m=m):
        f = m(x)
        return f.patch, f.grid

    return TransferModel(name, "teacher", m, lambda x, m=m: m(x).cls, patches, source=name)


def _student(name: str, folder: Path, device) -> TransferModel:
    from .distill import load_student

    s = load_student(folder, device)
    return TransferModel(name, "student", s, s.embed, lambda x, s=s: (s(x)[-1][1], s.grid), source=str(folder))


def parse_models(specs) -> list[tuple[str, str, str | None]]:
    """Check the ``models`` parameter without loading anything: [(name, "teacher" | "student", source)].

    ``student`` is 03's default student; a folder is a distillation checkpoint (a run's ``out_dir``, its
    ``checkpoint/``, or a ``checkpoints/step_*`` of a run still training), named after the run;
    ``name=folder`` names it; anything else is a teacher (registry or timm name).
    """
    from .distill import find_checkpoint
    from .params import as_list
    from .teachers import check_teacher_names

    parsed = []
    for item in as_list(specs, "models"):
        name, sep, path = item.partition("=")
        if item == "student":
            parsed.append(("student", "student", None))
        elif sep or os.sep in item or Path(item).exists():
            folder = find_checkpoint(path.strip() if sep else item)
            label = name.strip() if sep else _run_label(folder)
            parsed.append((label, "student", str(folder)))
        else:
            check_teacher_names([item])
            parsed.append((item, "teacher", item))
    names = [n for n, _, _ in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be distinct, got {names}; name students with name=folder")
    return parsed


def _run_label(folder: Path) -> str:
    """A student's name from its checkpoint folder: the run's folder (``runs/03_a/checkpoint`` -> ``03_a``),
    with the step for a run still training (``runs/03_a/checkpoints/step_00000300`` -> ``03_a@step_00000300``)."""
    if folder.name == "checkpoint":
        return folder.parent.name
    if folder.parent.name == "checkpoints":
        return f"{folder.parent.parent.name}@{folder.name}"
    return folder.name


def load_models(specs, device, checkpoints: dict[str, str] | None = None, log=print) -> list[TransferModel]:
    """The models of ``parse_models(specs)``, loaded; 03's default student is distilled when absent.

    ``checkpoints`` maps teacher names to weight files (iBOT, dBOT, or any timm-format file), as in 02.
    """
    parsed = parse_models(specs)
    unknown = sorted(set(checkpoints or {}) - {n for n, role, _ in parsed if role == "teacher"})
    if unknown:
        raise ValueError(f"checkpoints name {unknown}, which are not teachers among the models")
    models = []
    for name, role, source in parsed:
        if role == "teacher":
            models.append(_teacher(name, device, (checkpoints or {}).get(name)))
        else:
            models.append(_student(name, Path(source) if source else default_student(log=log), device))
    return models


# ----------------------------------------------------------------------------- the default student

DEFAULT_03_OUT = Path("runs") / "03_distill"  # 03_distill's default out_dir (relative, like the notebooks)


def _default_key(n_train: int, n_test: int) -> dict:
    """What 03_distill records for a run with every default (its run.json configuration)."""
    from .distill import DistillConfig

    return json.loads(json.dumps({**DistillConfig().results_key(), "n_train": n_train, "n_test": n_test}))


def _is_default_run(folder: Path, n_train: int, n_test: int) -> bool:
    """03's output folder holds a *finished* run with every default (its run.json and final checkpoint)."""
    from .distill import DistillConfig
    from .runs import OutDirError, read_record

    try:
        record = read_record(folder) or {}
        saved = json.loads((folder / "checkpoint" / "config.json").read_text())
    except (OSError, ValueError, OutDirError):
        return False
    return (record.get("kind") == "03_distill" and record.get("config") == _default_key(n_train, n_test)
            and saved.get("epoch") == DistillConfig().epochs)


def default_student(n_train: int = 6000, n_test: int = 2000, search: Path | None = DEFAULT_03_OUT, log=print) -> Path:
    """The checkpoint of the student 03_distill trains with its defaults; trained here when absent.

    Looks first in 03's default ``out_dir`` (``runs/03_distill`` from the working directory), accepted only
    when its ``run.json`` records every default and its final checkpoint is there; then in ``$WORKBENCH_CACHE/students`` (keyed by the
    config); otherwise distills one there (about 2-3 minutes on 2 CPU cores). The new checkpoint is
    written to a temporary folder and renamed, so an interrupted run never leaves a half student.
    """
    from .distill import DistillConfig, distill
    from .students import student_image_size
    from .teachers import create_teacher

    if search is not None and _is_default_run(Path(search), n_train, n_test):
        return Path(search) / "checkpoint"
    key = {**_default_key(n_train, n_test), "world": world.VERSION}
    folder = cache_dir("students") / f"unic-default-{config_hash(key)}"
    if (folder / "checkpoint" / "config.json").is_file():
        return folder / "checkpoint"
    cfg = DistillConfig()
    log(f"no default student yet: distilling one with 03's defaults ({', '.join(cfg.teachers)} -> {cfg.student}, "
        f"{cfg.epochs} epochs; cached in {folder})")
    data = load_data(cfg.data, n_train=n_train, n_test=n_test, image_size=student_image_size(cfg.student),
                     seed=cfg.seed)
    teachers = {t: create_teacher(t) for t in cfg.teachers}
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        distill(cfg, data, teachers, out_dir=tmp, log=lambda msg: log("  " + msg))
        shutil.rmtree(tmp / "checkpoints")  # the resumable training states: only the student is kept
        (tmp / "key.json").write_text(json.dumps(key, indent=1))
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "checkpoint" / "config.json").is_file():
            raise
    finally:  # interrupted, failed, or another process finished first (its student is kept)
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / "checkpoint"


# ----------------------------------------------------------------------------- evaluation

def evaluate(models: list[TransferModel], tasks: list[TransferTask], datasets: dict[str, Data], device,
             workers: int | None = None, log=print) -> list[dict]:
    """Tidy rows ``{model, task, top1, protocol, seed}`` for every model and task (features cached).

    Features are extracted model by model; the probes, independent small L-BFGS problems whose
    matrix products release the GIL, then run on ``workers`` threads (default: the CPU count, at most
    4). Each probe is deterministic, so the rows do not depend on the number of workers.
    """
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    for m in models:
        fingerprint = m.fingerprint
        for ds_name in dict.fromkeys(t.dataset for t in tasks):
            data = datasets[ds_name]
            tr = cached_features(m.name, fingerprint, m.encode, data, "train", device, log=log)
            te = cached_features(m.name, fingerprint, m.encode, data, "test", device, log=log)
            if tr.skipped or te.skipped:
                log(f"  {m.name} on {ds_name}: {len(tr.skipped) + len(te.skipped)} unreadable images skipped")
            jobs += [(m.name, task, tr.x, tr.labels[task.label], te.x, te.labels[task.label])
                     for task in tasks if task.dataset == ds_name]
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = [r for result in pool.map(lambda job: probe_task(*job), jobs) for r in result]
    table = probe_table(rows)
    for m in models:
        log(f"  {m.name}: " + ", ".join(f"{t} {v:.1f}" for t, v in table[m.name].items()))
    return rows


def probe_task(model: str, task: TransferTask, xtr, ytr, xte, yte) -> list[dict]:
    """Rows for one model and task; images labelled -1 (outside the task) are left out."""
    keep_tr, keep_te = ytr >= 0, yte >= 0
    xtr, ytr, xte, yte = xtr[keep_tr], ytr[keep_tr], xte[keep_te], yte[keep_te]
    if len(ytr) == 0 or len(yte) == 0:
        raise ValueError(f"task {task.name!r} has no labelled image in its train or test split")
    if task.shots is None:
        top1 = linear_probe(xtr, ytr, xte, yte)["top1"]
        return [{"model": model, "task": task.name, "top1": round(top1, 2), "protocol": task.protocol, "seed": 0}]
    rows = []
    for seed in FEW_SHOT_SEEDS:
        idx = few_shot_indices(ytr, task.shots, seed)
        top1 = linear_probe(xtr[idx], ytr[idx], xte, yte, weight_decay=FEW_SHOT_WEIGHT_DECAY)["top1"]
        rows.append({"model": model, "task": task.name, "top1": round(top1, 2), "protocol": task.protocol, "seed": seed})
    return rows


# ----------------------------------------------------------------------------- aggregates

def write_rows(rows: list[dict], path) -> None:
    """The tidy table as CSV (model, task, top1, protocol, seed), written atomically."""
    import csv

    from .io import _atomic_write

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["model", "task", "top1", "protocol", "seed"])
            writer.writeheader()
            writer.writerows(rows)

    _atomic_write(Path(path), write)


def probe_table(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{model: {task: top1}}, the mean over seeds where a task has several rows."""
    acc: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        acc.setdefault(r["model"], {}).setdefault(r["task"], []).append(r["top1"])
    return {m: {t: round(sum(v) / len(v), 2) for t, v in tasks.items()} for m, tasks in acc.items()}


def best_teacher(table: dict[str, dict[str, float]], teachers: list[str]) -> dict[str, tuple[str, float]]:
    """Per task: (name, top1) of the best teacher."""
    missing = [t for t in teachers if t not in table]
    if not teachers or missing:
        raise ValueError(f"relative gains need teacher results; missing {missing or 'all teachers'}")
    tasks = list(table[teachers[0]])
    return {task: max(((t, table[t][task]) for t in teachers), key=lambda p: p[1]) for task in tasks}


def relative_gains(table: dict[str, dict[str, float]], teachers: list[str]) -> dict[str, dict[str, float]]:
    """{model: {task: 100 (top1 - best teacher) / best teacher}} in % (the UNIC radar chart)."""
    best = best_teacher(table, teachers)
    out = {}
    for model, row in table.items():
        out[model] = {}
        for task, acc in row.items():
            ref = best[task][1]
            out[model][task] = round(100.0 * (acc - ref) / ref, 2) if ref > 0 else float("nan")
    return out


def log_odds(top1: float, eps: float = LOG_ODDS_EPS) -> float:
    """log(p / (1 - p)) of a top-1 given in %, with p clipped to [eps, 1 - eps]."""
    p = min(max(top1 / 100.0, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def mean_top1(table: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: round(sum(row.values()) / len(row), 2) for m, row in table.items()}


def mean_log_odds(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """t-ReX's summary of a transfer suite: the mean over tasks of the log-odds of top-1."""
    return {m: round(sum(log_odds(v) for v in row.values()) / len(row), 4) for m, row in table.items()}
