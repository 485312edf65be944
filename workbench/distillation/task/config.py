"""The parameters of task-specific distillation (05_task_distill), each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...core.config import Config, param
from ...core.device import pick_device
from ...core.params import ParameterError
from ...models import check_student_name, check_teacher_names, student_geometry
from ...models.students import STUDENT_CONFIG

STUDENTS = {
    "labels": "labels only",
    "finetuned": "KD from the fine-tuned teacher",
    "probed": "KD from the probed teacher",
    "probed_mix": "KD from the probed teacher, mixed images",
}
EXTRA_SOURCES = ("world", "unlabelled", "none")  # or the path of a folder of images


def _students(names: list[str]) -> None:
    if any(s not in STUDENTS for s in names) or len(set(names)) != len(names):
        raise ParameterError(f"students must be distinct names among {list(STUDENTS)}, got {names}")


def _extra(source: str) -> None:
    if source not in EXTRA_SOURCES and not Path(source).is_dir():
        raise ParameterError(f"extra must be one of {list(EXTRA_SOURCES)} or a folder of images; "
                             f"{source!r} is not a folder")


def _student_init(init: str) -> None:
    if init != "random" and not Path(init).is_file() and not (Path(init) / STUDENT_CONFIG).is_file():
        raise ParameterError(f"student_init must be 'random', a checkpoint folder written by 03 (holding "
                             f"{STUDENT_CONFIG} and student.safetensors) or a released UNIC checkpoint file "
                             f"(unic.pth); {init!r} is none of these")


@dataclass
class TaskDistillConfig(Config):
    kind: ClassVar[str] = "05_task_distill"
    what: ClassVar[str] = "task-distillation"

    teachers: list[str] = param(default_factory=lambda: ["world_colour", "world_shape"], check=check_teacher_names,
                                help="the candidates: each is probed, the best probed one is distilled")
    task: str = param("shape", help='the task to distill: "shape" or "colour" (offline world), "classes" (ImageFolder)')
    student: str = param("wb_vitc_tiny_patch8_32", check=check_student_name, help="any timm ViT")
    student_init: str = param("random", check=_student_init,
                              help='"random", a student folder of 03 (e.g. "runs/03_distill/checkpoint"), or a '
                                   'UNIC .pth')
    data: str = param("world", help='"world", or an ImageFolder path (<class>/<image>, or train/ + val/)')
    n_train: int = param(6000, ge=1, help="offline world only: training images (most without labels)")
    n_test: int = param(2000, ge=1, help="offline world only: test images")
    labels_per_class: int = param(10, ge=1, help="labelled training images per class")
    extra: str = param("world", check=_extra,
                       help='extra distillation images: "world" (rendered on the fly), "unlabelled", "none", or a '
                            'folder')
    students: list[str] = param(default_factory=lambda: ["labels", "finetuned", "probed"], check=_students,
                                help=f"trained side by side, among {', '.join(STUDENTS)}")
    kd_weight: float = param(0.9, ge=0, le=1, help="a in (1 - a) * CE + a * T^2 * KL(teacher || student)")
    temperature: float = param(1.0, gt=0, help="T; with few classes T = 1 teaches fastest")
    mix: float = param(1.0, ge=0, help="probed_mix: blend weights ~ Beta(mix, mix)")
    steps: int = param(300, ge=1, help="training steps per student")
    batch_size: int = param(48, ge=2,
                            help="images per step: a third labelled, the rest extra (students with a teacher)")
    lr: float = param(2e-3, gt=0, help="peak learning rate (AdamW)")
    weight_decay: float = param(0.05, ge=0, help="AdamW weight decay of the weight matrices")
    # A long warm-up and a loose clip get a random student off its plateau at chance sooner (README: schedule).
    warmup_frac: float = param(0.3, ge=0, le=1, help="share of the steps spent warming the learning rate up")
    grad_clip: float = param(5.0, ge=0, help="gradient norm clipping (0: none)")
    finetune_steps: int = param(50, ge=0, help="the fine-tuned teacher's short schedule")
    finetune_lr: float = param(1e-3, ge=0, help="the fine-tuned teacher's learning rate")
    seed: int = param(0, ge=0, help="the first seed")
    repeats: int = param(3, ge=1, help="seeds seed, seed + 1, ...: mean and spread")
    device: str = param("auto", execution=True, check=pick_device, help='"auto" picks CUDA when present')
    workers: int = param(0, ge=0, execution=True,
                         help="CPU: students trained at once, each in its own process (0: one per core); GPU: 1")

    def check(self) -> None:
        if "probed_mix" in self.students and self.mix == 0:
            raise ParameterError("the probed_mix student needs mix > 0 (the Beta concentration of the blend weights)")
        if "finetuned" in self.students and (self.finetune_steps == 0 or self.finetune_lr == 0):
            raise ParameterError("the finetuned student needs finetune_steps >= 1 and finetune_lr > 0")

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
