"""The parameters of 02_probe_teachers: which teachers, on which data, with which probes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..core.config import Config, param
from ..core.params import ParameterError
from ..data import NamedDataset, named_dataset
from ..data.factory import check_data
from ..models import FEATURE_KINDS, check_teacher_options, check_teacher_weights
from ..options import (
    DATA,
    DATA_ROOT,
    DENSE_LR,
    DENSE_STEPS,
    DEVICE,
    IMAGE_SIZE,
    N_TEST,
    N_TRAIN,
    PREPROCESSING,
    TEACHER_WEIGHTS,
    TEACHERS,
)
from .dense import DenseProtocol
from .runner import ProbeTask

TEACHER_INPUT = 224  # image_size "auto": the input side of most released teachers, which then resize and crop


def _names(items: list[str]) -> None:
    for item in items:
        named_dataset(item, data_root=".")  # the name and its form (cog_l3_16shot); the root is for check()


def _positive(values: list[int]) -> None:
    if any(v < 1 for v in values):
        raise ParameterError(f"shots must be images per class, each >= 1, got {values}")


class FrozenFeatureRun:
    """What a config of frozen-feature probes (02's, 04's) derives from its shared options ``image_size``,
    ``dense_steps`` and ``dense_lr``: one definition for both."""

    image_size: int | None
    dense_steps: int
    dense_lr: float

    @property
    def decode_size(self) -> int:
        """The side image folders are decoded to: ``image_size``, or the teachers' usual input (auto)."""
        return self.image_size or TEACHER_INPUT

    @property
    def dense_protocol(self) -> DenseProtocol:
        return DenseProtocol(steps=self.dense_steps, lr=self.dense_lr)


@dataclass
class ProbeConfig(FrozenFeatureRun, Config):
    kind: ClassVar[str] = "02_probe_teachers"
    what: ClassVar[str] = "probing"

    renamed: ClassVar[dict[str, str]] = {"tasks": "benchmarks", "checkpoints": "teacher_weights"}

    teachers: list[str] = TEACHERS()
    data: str = DATA()
    benchmarks: list[str] = param(default_factory=list, allow_empty=True, check=_names,
                                  help="datasets by name probed besides data: flowers, cars, ..., in1k, cog_l3, "
                                       "cog_l3_16shot, ade20k, nyud (flowers=/path reads one from elsewhere)")
    data_root: str = DATA_ROOT()
    probe: str = param("both", choices=("linear", "knn", "both"), help="which probes")
    shots: list[int] = param(default_factory=lambda: [1, 5, 25], allow_empty=True, check=_positive,
                             help="few-shot linear probes: images per class (none: no few-shot probe)")
    feature: str = param("cls", choices=FEATURE_KINDS, help="which pooled feature of each teacher")
    teacher_weights: dict[str, str] = TEACHER_WEIGHTS()
    preprocessing: dict[str, str] = PREPROCESSING()
    image_size: int | None = IMAGE_SIZE(TEACHER_INPUT)
    n_train: int = N_TRAIN()
    n_test: int = N_TEST()
    dense_steps: int = DENSE_STEPS()
    dense_lr: float = DENSE_LR()
    device: str = DEVICE()

    def check(self) -> None:
        check_teacher_options(self.teachers, self.teacher_weights, self.preprocessing)
        for ref in self.named_datasets():  # each one where data_root (or name=path) says, in its layout: now
            ref.check()

    def check_inputs(self) -> None:
        """The data (an ImageFolder's splits, the offline world's memory) and the teachers' weight files, each loaded
        as the run will load it."""
        check_data(self.data, self.n_train, self.n_test)
        check_teacher_weights(self.teacher_weights, self.preprocessing)

    def named_datasets(self) -> list[NamedDataset]:
        return [named_dataset(item, self.data_root) for item in self.benchmarks]

    def probe_tasks(self, labels, dense: dict[str, str] | None = None, name: str = "") -> list[ProbeTask]:
        """For each label of the data: the linear probe and/or k-NN, and a few-shot probe per entry of ``shots``; a
        dense label (``dense``: label -> kind) its dense probe. ``name`` names the tasks (default: the label)."""
        tasks = []
        for label in labels:
            task = name or label
            if (dense or {}).get(label):
                tasks.append(ProbeTask(task, label, method=dense[label]))
                continue
            if self.probe in ("linear", "both"):
                tasks.append(ProbeTask(task, label))
            if self.probe in ("knn", "both"):
                tasks.append(ProbeTask(task, label, method="knn"))
            tasks += [ProbeTask(task, label, shots=n) for n in self.shots]
        return tasks

    def named_probe_tasks(self, ref: NamedDataset, dense: dict[str, str]) -> list[ProbeTask]:
        """The probes of a dataset given by name: a CoG few-shot level (``cog_l3_16shot``) its few-shot probe, any
        other the probes of ``probe_tasks``."""
        if ref.shots is not None:
            return [ProbeTask(ref.task, ref.label, shots=ref.shots)]
        return self.probe_tasks([ref.label], dense, name=ref.task)

    @property
    def main_protocol(self) -> str:
        """The protocol of the headline table: the linear probe, or 20-NN without it."""
        return "20-NN" if self.probe == "knn" else "linear"
