"""The parameters of 02_probe_teachers: which teachers, on which data, with which probes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..core.config import Config, param
from ..core.device import pick_device
from ..core.params import ParameterError
from ..models import FEATURE_KINDS, check_teacher_names, check_teacher_options
from .runner import ProbeTask


def _positive(values: list[int]) -> None:
    if any(v < 1 for v in values):
        raise ParameterError(f"shots must be images per class, each >= 1, got {values}")


@dataclass
class ProbeConfig(Config):
    kind: ClassVar[str] = "02_probe_teachers"
    what: ClassVar[str] = "probing"

    teachers: list[str] = param(default_factory=lambda: ["world_colour", "world_shape"], check=check_teacher_names,
                                help="registry or timm names")
    data: str = param("world", help='"world", or an ImageFolder path (<class>/<image>, or train/ + val/)')
    probe: str = param("both", choices=("linear", "knn", "both"), help="which probes")
    shots: list[int] = param(default_factory=lambda: [1, 5, 25], allow_empty=True, check=_positive,
                             help="few-shot linear probes: images per class (none: no few-shot probe)")
    feature: str = param("cls", choices=FEATURE_KINDS, help="which pooled feature of each teacher")
    checkpoints: dict[str, str] = param(default_factory=dict,
                                        help="a weight file per teacher, in its release's own format: name=path,...")
    preprocessing: dict[str, str] = param(default_factory=dict,
                                          help="a teacher's eval recipe instead of its release's: name=recipe,...")
    image_size: int = param(224, ge=8, help="ImageFolder data: images are decoded at this size")
    n_train: int = param(6000, ge=10, help="offline world only: training images")
    n_test: int = param(2000, ge=10, help="offline world only: test images")
    device: str = param("auto", execution=True, check=pick_device, help='"auto" picks CUDA when present')

    def check(self) -> None:
        check_teacher_options(self.teachers, self.checkpoints, self.preprocessing)

    def probe_tasks(self, labels) -> list[ProbeTask]:
        """For each label of the data: the linear probe and/or k-NN, and a few-shot probe per entry of ``shots``."""
        tasks = []
        for label in labels:
            if self.probe in ("linear", "both"):
                tasks.append(ProbeTask(label))
            if self.probe in ("knn", "both"):
                tasks.append(ProbeTask(label, method="knn"))
            tasks += [ProbeTask(label, shots=n) for n in self.shots]
        return tasks

    @property
    def main_protocol(self) -> str:
        """The protocol of the headline table: the linear probe, or 20-NN without it."""
        return "20-NN" if self.probe == "knn" else "linear"
