"""Probing models on frozen features: the one entry point every notebook uses.

    encoders = [Encoder("world_shape", lambda x: teacher(x).cls, teacher), ...]
    rows = probe(encoders, data, device)                      # a linear probe on every task of data
    rows = probe(encoders, data, device, [ProbeTask("shape", shots=5), ProbeTask("colour", method="knn")])
    probe_table(rows)                                         # {model: {task: top-1}}

A probe task names a label of the data and a protocol: the tuned linear probe (``linear``), its
few-shot version (``shots`` images per class, one row per draw of ``FEW_SHOT_SEEDS``), or k-NN (one
row per k of ``KNN_KS``). Every model encodes each split once (features cached on disk unless
``cache=False``); the probes, small independent L-BFGS problems whose matrix products release the GIL,
then run on threads. Each probe is deterministic, so the rows do not depend on the number of threads.
Images labelled -1 are outside a task (a concept-generalization level holds some of the classes only).
"""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..core.files import atomic_write
from ..core.stats import seed_stats
from .features import Encoder, FeatureSet, split_features
from .few_shot import FEW_SHOT_SEEDS, FEW_SHOT_WEIGHT_DECAY, few_shot_indices
from .knn import KNN_KS, knn_probe
from .linear import linear_probe

METHODS = ("linear", "knn")
ROW_FIELDS = ("model", "task", "top1", "protocol", "seed")  # the columns of a rows CSV


@dataclass(frozen=True)
class ProbeTask:
    name: str  # the name its rows carry
    label: str = ""  # the label of the data it predicts (default: its name)
    shots: int | None = None  # linear only: training images per class (few-shot), None for the whole split
    method: str = "linear"  # "linear" or "knn"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"probe method must be one of {METHODS}, got {self.method!r}")
        if self.shots is not None and (self.method != "linear" or self.shots < 1):
            raise ValueError(f"few-shot probes are linear, with shots >= 1; got {self.method!r}, {self.shots}")

    @property
    def target(self) -> str:
        return self.label or self.name

    @property
    def protocol(self) -> str:
        if self.method == "knn":
            return "k-NN"
        return "linear" if self.shots is None else f"linear {self.shots}-shot"


def probe(encoders: Sequence[Encoder], data, device, tasks: Sequence[ProbeTask] | None = None, cache: bool = True,
          workers: int | None = None, log=print) -> list[dict]:
    """Tidy rows ``{model, task, protocol, seed, top1, skipped}`` of every encoder on every task (by default a
    linear probe on each task of ``data``); linear rows add the chosen ``weight_decay``, few-shot rows ``shots``,
    k-NN rows ``k`` (and protocol ``"<k>-NN"``). ``workers``: threads for the probes (default: the cores, at most 4)."""
    tasks = list(tasks) if tasks is not None else [ProbeTask(t) for t in data.tasks]
    missing = sorted({t.target for t in tasks} - set(data.tasks))
    if missing:
        raise ValueError(f"{data.name!r} has no label {missing}; its tasks: {', '.join(data.tasks)}")
    jobs = []
    for encoder in encoders:
        train, test = split_features(encoder, data, ("train", "test"), device, cache, log)
        if train.skipped or test.skipped:
            log(f"  {encoder.name} on {data.name}: {len(train.skipped) + len(test.skipped)} unreadable images skipped")
        jobs += [(encoder.name, task, train, test) for task in tasks]
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        rows = [row for result in pool.map(lambda job: probe_task(*job), jobs) for row in result]
    for encoder in encoders:
        mine = [r for r in rows if r["model"] == encoder.name]
        log(f"  {encoder.name}: " + ", ".join(f"{r['task']} {r['protocol']} {r['top1']:.1f}%" for r in mine
                                               if r["seed"] == 0 and r.get("k", 20) == 20))
    return rows


def probe_task(model: str, task: ProbeTask, train: FeatureSet, test: FeatureSet) -> list[dict]:
    """The rows of one model on one task (see ``probe``)."""
    ytr, yte = train.labels[task.target], test.labels[task.target]
    keep_tr, keep_te = ytr >= 0, yte >= 0
    xtr, ytr, xte, yte = train.x[keep_tr], ytr[keep_tr], test.x[keep_te], yte[keep_te]
    if len(ytr) == 0 or len(yte) == 0:
        raise ValueError(f"task {task.name!r} has no labelled image in its train or test split")
    base = {"model": model, "task": task.name, "skipped": len(train.skipped) + len(test.skipped)}
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
