"""Probing models on frozen features: the one entry point every notebook uses.

    encoders = [Encoder("world_shape", lambda x: teacher(x).cls, teacher), ...]
    rows = probe(encoders, data, device)                      # a linear probe on every task of data
    rows = probe(encoders, data, device, [ProbeTask("shape", shots=5), ProbeTask("colour", method="knn")])
    probe_table(rows)                                         # {model: {task: top-1}}

A probe task names a label of the data and a protocol: the tuned linear probe (``linear``), its
few-shot version (``shots`` images per class, one row per draw of ``FEW_SHOT_SEEDS``), k-NN (one
row per k of ``KNN_KS``), or a dense probe on patch tokens (``segmentation``: mIoU, ``depth``: delta < 1.25 as the
row's score, RMSE beside; ``workbench.probing.dense``). Every model encodes each split once (pooled features cached
on disk unless ``cache=False``; patch tokens kept in memory for the dense probes); the probes, independent
problems whose matrix products release the GIL, then run on threads, under one progress bar. Each probe is
deterministic, so the rows do not depend on the number of threads. Images labelled -1 are outside a task (a
concept-generalization level holds some of the classes only).

A row's ``top1`` is its score in %, higher is better, whatever the protocol (``metric`` says which: top-1, mIoU or
delta < 1.25), so tables, aggregates and radars take every task alike.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..core.files import atomic_write
from ..core.progress import progress
from ..core.stats import seed_stats
from .dense import DENSE_KINDS, DenseProtocol, dense_probe
from .features import Encoder, FeatureSet, split_features
from .few_shot import FEW_SHOT_SEEDS, FEW_SHOT_WEIGHT_DECAY, few_shot_indices
from .knn import KNN_KS, knn_probe
from .linear import linear_probe

METHODS = ("linear", "knn", *DENSE_KINDS)
METRICS = {"linear": "top-1", "knn": "top-1", "segmentation": "mIoU", "depth": "delta<1.25"}
ROW_FIELDS = ("model", "task", "top1", "protocol", "seed", "metric")  # the columns of a rows CSV


@dataclass(frozen=True)
class ProbeTask:
    name: str  # the name its rows carry
    label: str = ""  # the label of the data it predicts (default: its name)
    shots: int | None = None  # linear only: training images per class (few-shot), None for the whole split
    method: str = "linear"  # "linear", "knn", or a dense probe: "segmentation", "depth"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"probe method must be one of {METHODS}, got {self.method!r}")
        if self.shots is not None and (self.method != "linear" or self.shots < 1):
            raise ValueError(f"few-shot probes are linear, with shots >= 1; got {self.method!r}, {self.shots}")

    @property
    def target(self) -> str:
        return self.label or self.name

    @property
    def dense(self) -> bool:
        return self.method in DENSE_KINDS

    @property
    def protocol(self) -> str:
        if self.method == "knn":
            return "k-NN"
        if self.dense:
            return f"linear {self.method}"
        return "linear" if self.shots is None else f"linear {self.shots}-shot"


def probe(encoders: Sequence[Encoder], data, device, tasks: Sequence[ProbeTask] | None = None, cache: bool = True,
          workers: int | None = None, log=print, dense: DenseProtocol | None = None) -> list[dict]:
    """Tidy rows ``{model, task, protocol, seed, top1, metric, skipped}`` of every encoder on every task (by default a
    linear probe on each task of ``data``); linear rows add the chosen ``weight_decay``, few-shot rows ``shots``,
    k-NN rows ``k`` (and protocol ``"<k>-NN"``), dense rows their scores (``miou``, ``pixel_acc``, ``iou`` per class;
    ``rmse``, ``delta1``, ``abs_rel``) and ``examples``, the predicted maps of the first test images. ``workers``:
    threads for the probes (default: the cores, at most 4); ``dense``: the dense probes' optimisation."""
    tasks = list(tasks) if tasks is not None else [ProbeTask(t, method=data.dense.get(t, "linear")) for t in data.tasks]
    missing = sorted({t.target for t in tasks} - set(data.tasks))
    if missing:
        raise ValueError(f"{data.name!r} has no label {missing}; its tasks: {', '.join(data.tasks)}")
    wrong = [t.name for t in tasks if data.dense.get(t.target) != (t.method if t.dense else None)]
    if wrong:
        raise ValueError(f"{data.name!r}: tasks {wrong} probe a label with the wrong protocol (dense labels: "
                         f"{data.dense or 'none'}; a dense label takes its own dense probe, an image label the others)")
    image_jobs, dense_jobs = [], []
    image_level = [t for t in tasks if not t.dense]
    for encoder in encoders:
        if image_level:
            train, test = split_features(encoder, data, ("train", "test"), device, cache, log)
            if train.skipped or test.skipped:
                log(f"  {encoder.name} on {data.name}: {len(train.skipped) + len(test.skipped)} unreadable images "
                    "skipped")
            image_jobs += [(probe_task, (encoder.name, task, train, test)) for task in image_level]
        dense_jobs += [(dense_task, (encoder, task, data, device, dense)) for task in tasks if task.dense]
    bar = progress(total=len(image_jobs) + len(dense_jobs), desc=f"probes on {data.name}", unit="probe")
    rows = []
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        for result in pool.map(lambda job: job[0](*job[1]), image_jobs):
            rows += result
            bar.update(1)
        # A dense probe is thousands of small tensor operations: on CPU one thread each, side by side, runs them
        # several times faster than every thread on each (whose hand-offs dominate such small work).
        with one_thread_each(str(device).startswith("cpu") and len(dense_jobs) > 1):
            for result in pool.map(lambda job: job[0](*job[1]), dense_jobs):
                rows += result
                bar.update(1)
    bar.close()
    for encoder in encoders:
        mine = [r for r in rows if r["model"] == encoder.name]
        log(f"  {encoder.name}: " + ", ".join(f"{r['task']} {r['protocol']} {r['top1']:.1f}%" for r in mine
                                               if r["seed"] == 0 and r.get("k", 20) == 20))
    return rows


@contextmanager
def one_thread_each(enabled: bool = True):
    """torch's intra-op threads set to one while the block runs (restored after)."""
    before = torch.get_num_threads()
    if enabled:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def dense_task(encoder: Encoder, task: ProbeTask, data, device, protocol: DenseProtocol | None = None) -> list[dict]:
    """The row of one model's dense probe (``workbench.probing.dense``)."""
    result = dense_probe(encoder, data, task.target, task.method, device, protocol)
    score = result["miou"] if task.method == "segmentation" else result["delta1"]
    return [{"model": encoder.name, "task": task.name, "protocol": task.protocol, "seed": 0, "top1": round(score, 2),
             "metric": METRICS[task.method], "skipped": len(result.pop("skipped")),
             **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}}]


def probe_task(model: str, task: ProbeTask, train: FeatureSet, test: FeatureSet) -> list[dict]:
    """The rows of one model on one task (see ``probe``)."""
    ytr, yte = train.labels[task.target], test.labels[task.target]
    keep_tr, keep_te = ytr >= 0, yte >= 0
    xtr, ytr, xte, yte = train.x[keep_tr], ytr[keep_tr], test.x[keep_te], yte[keep_te]
    if len(ytr) == 0 or len(yte) == 0:
        raise ValueError(f"task {task.name!r} has no labelled image in its train or test split")
    base = {"model": model, "task": task.name, "skipped": len(train.skipped) + len(test.skipped), "metric": "top-1"}
    if task.method == "knn":
        return [{**base, "protocol": f"{k}-NN", "seed": 0, "top1": round(top1, 2), "k": k}
                for k, top1 in knn_probe(xtr, ytr, xte, yte, ks=KNN_KS).items()]
    if task.shots is None:
        result = linear_probe(xtr, ytr, xte, yte)
        return [{**base, "protocol": task.protocol, "seed": 0, "top1": round(result["top1"], 2),
                 "weight_decay": result["weight_decay"]}]
    rows = []
    for seed in FEW_SHOT_SEEDS:
        idx = few_shot_indices(ytr, task.shots, seed)
        top1 = linear_probe(xtr[idx], ytr[idx], xte, yte, weight_decay=FEW_SHOT_WEIGHT_DECAY)["top1"]
        rows.append({**base, "protocol": task.protocol, "seed": seed, "top1": round(top1, 2), "shots": task.shots,
                     "weight_decay": FEW_SHOT_WEIGHT_DECAY})
    return rows


def probe_table(rows: list[dict], protocol: str | None = None) -> dict[str, dict[str, float]]:
    """{model: {task: top1}} of the rows (of one ``protocol``, or all), the mean over seeds where there are several."""
    acc: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if protocol is None or r["protocol"] == protocol:
            acc.setdefault(r["model"], {}).setdefault(r["task"], []).append(r["top1"])
    return {m: {t: round(sum(v) / len(v), 2) for t, v in tasks.items()} for m, tasks in acc.items()}


def few_shot_table(rows: list[dict]) -> dict[str, dict[str, dict[int, dict]]]:
    """{model: {task: {shots: seed_stats}}} of the few-shot rows: top-1 against images per class."""
    acc: dict[str, dict[str, dict[int, list[float]]]] = {}
    for r in rows:
        if r.get("shots") is not None:
            acc.setdefault(r["model"], {}).setdefault(r["task"], {}).setdefault(r["shots"], []).append(r["top1"])
    return {m: {t: {n: seed_stats(v) for n, v in sorted(by_n.items())} for t, by_n in tasks.items()}
            for m, tasks in acc.items()}


def write_rows(rows: list[dict], path) -> None:
    """The tidy table as CSV (model, task, top1, protocol, seed), written atomically."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)
