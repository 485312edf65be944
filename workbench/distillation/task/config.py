"""The parameters of task-specific distillation (05_task_distill), each declared once."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...core.config import Config, param
from ...core.loggers import check_logger
from ...core.params import ParameterError, did_you_mean
from ...data.factory import check_data
from ...data.folders import check_image_folder
from ...data.world import COLOURS, SHAPES
from ...models import check_student_source, check_teacher_options, check_teacher_weights, student_geometry
from ...options import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    GRAD_CLIP,
    LOGGER,
    LR,
    N_TEST,
    N_TRAIN,
    PRECISION,
    PREPROCESSING,
    REPEATS,
    SEED,
    STUDENT,
    STUDENT_INIT,
    STUDENT_STEPS,
    TEACHER_WEIGHTS,
    TEACHERS,
    WEIGHT_DECAY,
)

STUDENTS = {
    "labels": "labels only",
    "finetuned": "KD from the fine-tuned teacher",
    "probed": "KD from the probed teacher",
    "probed_mix": "KD from the probed teacher, mixed images",
}
EXTRA_SOURCES = ("world", "unlabelled", "none")  # or the path of a folder of images


def _students(names: list[str]) -> None:
    unknown = [s for s in names if s not in STUDENTS]
    if unknown:
        raise ParameterError(f"unknown student(s) {unknown}: students are among {list(STUDENTS)}"
                             f"{did_you_mean(unknown[0], STUDENTS)}, e.g. -p students labels,probed")
    if len(set(names)) != len(names):
        raise ParameterError(f"students must be distinct, got {names}: name each once")


def _extra(source: str) -> None:
    if source not in EXTRA_SOURCES and not Path(source).is_dir():
        raise ParameterError(f"extra must be one of {list(EXTRA_SOURCES)} or a folder of images; "
                             f"{source!r} is not a folder")


@dataclass
class TaskDistillConfig(Config):
    kind: ClassVar[str] = "05_task_distill"
    what: ClassVar[str] = "task-distillation"
    renamed: ClassVar[dict[str, str]] = {"steps": "student_steps"}

    teachers: list[str] = TEACHERS()  # the candidates: each is probed, the best probed one is distilled
    teacher_weights: dict[str, str] = TEACHER_WEIGHTS()
    preprocessing: dict[str, str] = PREPROCESSING()
    task: str = param("shape", help='the task to distill: "shape" or "colour" (offline world), "classes" (ImageFolder)')
    student: str = STUDENT()
    student_init: str = STUDENT_INIT()
    data: str = DATA()
    n_train: int = N_TRAIN()
    n_test: int = N_TEST()
    labels_per_class: int = param(10, ge=1, help="labelled training images per class")
    extra: str = param("world", check=_extra,
                       help='extra distillation images: "world" (rendered on the fly), "unlabelled", "none", or a '
                            'folder')
    students: list[str] = param(default_factory=lambda: ["labels", "finetuned", "probed"], check=_students,
                                help=f"trained side by side, among {', '.join(STUDENTS)}")
    kd_weight: float = param(0.9, ge=0, le=1, help="a in (1 - a) * CE + a * T^2 * KL(teacher || student)")
    temperature: float = param(1.0, gt=0, help="T; with few classes T = 1 teaches fastest")
    mix: float = param(1.0, ge=0, help="probed_mix: blend weights ~ Beta(mix, mix)")
    student_steps: int = STUDENT_STEPS(300)
    batch_size: int = BATCH_SIZE(48)  # a third labelled, the rest extra images (for the students with a teacher)
    lr: float = LR(2e-3)
    weight_decay: float = WEIGHT_DECAY()
    # A long warm-up and a loose clip get a random student off its plateau at chance sooner (README: schedule).
    warmup_frac: float = param(0.3, ge=0, le=1, help="share of the steps spent warming the learning rate up")
    grad_clip: float = GRAD_CLIP(5.0)
    finetune_steps: int = param(50, ge=0, help="the fine-tuned teacher's short schedule")
    finetune_lr: float = param(1e-3, ge=0, help="the fine-tuned teacher's learning rate")
    seed: int = SEED()
    repeats: int = REPEATS()
    device: str = DEVICE()
    precision: str = PRECISION()
    workers: int = param(0, ge=0, execution=True,
                         help="CPU: students trained at once, each in its own process (0: one per core); GPU: 1")
    logger: str = LOGGER()

    def check(self) -> None:
        check_teacher_options(self.teachers, self.teacher_weights, self.preprocessing)
        if "probed_mix" in self.students and self.mix == 0:
            raise ParameterError("the probed_mix student needs mix > 0 (the Beta concentration of the blend weights)")
        if "finetuned" in self.students and (self.finetune_steps == 0 or self.finetune_lr == 0):
            raise ParameterError("the finetuned student needs finetune_steps >= 1 and finetune_lr > 0")

    def check_inputs(self) -> None:
        """The data (an ImageFolder's splits, the offline world's memory), the teachers' weight files and the student
        to start from, each loaded as the run will load it, and the package the logger needs; a warning where
        ``labels_per_class`` exceeds the images of a class (every one of its images is then labelled)."""
        if self.data == "world":
            n_train = check_data(self.data, self.n_train, self.n_test)
            fewest = n_train // len(SHAPES if self.task == "shape" else COLOURS)
        else:
            _, n_train, _, fewest = check_image_folder(Path(self.data))
        if self.labels_per_class > fewest:
            warnings.warn(f"labels_per_class {self.labels_per_class} is more than the training images of the smallest "
                          f"class ({fewest}): that class gets all its {fewest} images labelled, the others "
                          f"{self.labels_per_class}. Lower labels_per_class to {fewest} for a balanced set.",
                          stacklevel=2)
        check_teacher_weights(self.teacher_weights, self.preprocessing)
        check_student_source(self.student_init)
        check_logger(self.logger)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.repeats)]

    @property
    def labelled_batch(self) -> int:
        """A third of each batch: the few labelled images repeat every few steps, while fresh extra images
        carry the teacher's knowledge (README: a third labelled beat half)."""
        return max(1, self.batch_size // 3)

    @property
    def input_size(self) -> int:
        """The student's input side in pixels."""
        return student_geometry(self.student)[0]
