"""The parameters of 04_transfer: which models, on which tasks, each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..core.config import Config, param
from ..data.factory import check_data
from ..models import check_student_source, check_teacher_options, check_teacher_weights
from ..options import (
    DATA_ROOT,
    DENSE_LR,
    DENSE_STEPS,
    DEVICE,
    IMAGE_SIZE,
    N_TEST,
    N_TRAIN,
    PREPROCESSING,
    TEACHER_WEIGHTS,
)
from ..probing import TEACHER_INPUT
from ..probing.config import FrozenFeatureRun
from .models import parse_models
from .tasks import check_roots, parse_tasks


@dataclass
class TransferConfig(FrozenFeatureRun, Config):
    kind: ClassVar[str] = "04_transfer"
    what: ClassVar[str] = "transfer"
    renamed: ClassVar[dict[str, str]] = {"checkpoints": "teacher_weights"}

    models: list[str] = param(default_factory=lambda: ["world_colour", "world_shape", "student"],
                              check=parse_models,
                              help='teachers (registry / timm names), "student" (03\'s default), student folders, '
                                   'released UNIC files (unic.pth), or name=path')
    tasks: list[str] = param(default_factory=lambda: ["world"], check=parse_tasks,
                             help='"world" (the offline suite), world task names, datasets by name (flowers, cog_l3, '
                                  'cog_l3_16shot, ade20k, ...; flowers=/path reads one from elsewhere) and/or '
                                  'name=path ImageFolders')
    data_root: str = DATA_ROOT()
    teacher_weights: dict[str, str] = TEACHER_WEIGHTS()
    preprocessing: dict[str, str] = PREPROCESSING()
    levels: bool = param(True, help="concept-generalization levels (CoG) and the accuracy-per-level plot")
    n_train: int = N_TRAIN(3000)
    n_test: int = N_TEST(1000)
    image_size: int | None = IMAGE_SIZE(TEACHER_INPUT)
    pca_images: int = param(6, ge=1, help="images in the patch-feature PCA pictures")
    dense_steps: int = DENSE_STEPS()
    dense_lr: float = DENSE_LR()
    device: str = DEVICE()

    def check(self) -> None:
        teachers = [name for name, role, _ in parse_models(self.models) if role == "teacher"]
        check_teacher_options(teachers, self.teacher_weights, self.preprocessing)
        check_roots(self.task_list())

    def check_inputs(self) -> None:
        """The students' files and the teachers' weight files, each loaded as the run will load it, and the offline
        world's memory at the sizes asked for."""
        for name, role, source in parse_models(self.models):
            if role == "student" and source is not None:
                check_student_source(source, what=f"models: the student {name!r}")
        check_teacher_weights(self.teacher_weights, self.preprocessing)
        check_data("world", self.n_train, self.n_test)  # n_train, n_test: the sizes of the offline world's tasks

    def task_list(self):
        """The tasks, with the datasets given by name read from ``data_root``."""
        return parse_tasks(self.tasks, self.data_root)

