"""The parameters of a UNIC distillation run (03, and ``python -m workbench distill --config run.yaml``).

Each is declared once, here; the 03 notebook's parameters cell names the same fields, and the run file
the notebook writes (``<out_dir>/run.yaml``) holds them all, so a run file is one recipe whatever the
number of processes that train it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import yaml

from ..core.config import Config, param
from ..core.errors import MissingFile
from ..core.files import save_text
from ..core.loggers import check_logger
from ..core.memory import check_memory
from ..core.params import ParameterError, as_list
from ..data.augment import AUGMENTATIONS
from ..data.factory import check_data
from ..layers.ladder import select_blocks
from ..layers.standardize import STANDARDIZERS
from ..models import check_student_source, check_teacher_options, check_teacher_weights, student_geometry
from ..models.preprocess import NORMALIZATIONS, PREPROCESSING, Preprocessing
from ..models.students import student_width
from ..options import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    GRAD_CLIP,
    IMAGE_SIZE,
    LOGGER,
    N_TEST,
    N_TRAIN,
    PRECISION,
    SEED,
    STUDENT,
    STUDENT_INIT,
    TEACHER_WEIGHTS,
    TEACHERS,
    WEIGHT_DECAY,
)
from ..options import (
    PREPROCESSING as PREPROCESSING_OPTION,
)

RUN_FILE = "run.yaml"
OFFLINE_AUGMENT = "none"  # augment "auto" on the offline world: the best of the three measured (README, 03)


def check_betas(betas: list[float]) -> list[float]:
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ParameterError(f"betas must be two numbers in [0, 1), AdamW's beta1 and beta2 (e.g. -p betas 0.9,0.99), "
                             f"got {betas}")
    return betas


def check_drop_path(rate: float) -> float:
    if not 0 <= rate < 1:
        raise ParameterError(f"drop_path must be in [0, 1) (the paper's ViT-B: 0.1), got {rate}")
    return rate


def check_batch_size(batch_size: int, n_train: int, data_name: str) -> None:
    if batch_size > n_train:
        raise ParameterError(
            f"batch_size {batch_size} is larger than the training split of {data_name!r} ({n_train} images): "
            f"lower batch_size (e.g. -p batch_size {max(1, n_train // 4)}) or use more training images")


def as_ladder(value, name: str = "ladder") -> str | list[int]:
    """``all``, ``last``, or block indices as a list or a comma-separated string (``0,2,3``)."""
    if value in ("all", "last"):
        return value
    try:
        return [int(v) for v in as_list(value, name)]
    except (ParameterError, ValueError):
        raise ParameterError(f"{name} must be 'all', 'last' or block indices such as 1,3, got {value!r}") from None


@dataclass
class DistillConfig(Config):
    kind: ClassVar[str] = "03_distill"
    what: ClassVar[str] = "distillation"
    renamed: ClassVar[dict[str, str]] = {"checkpoints": "teacher_weights", "tdrop_p": "teacher_drop_prob"}

    teachers: list[str] = TEACHERS()
    student: str = STUDENT()
    data: str = DATA()
    n_train: int = N_TRAIN()
    n_test: int = N_TEST()
    teacher_weights: dict[str, str] = TEACHER_WEIGHTS()
    preprocessing: dict[str, str] = PREPROCESSING_OPTION()
    augment: str = param("auto", choices=("auto",) + AUGMENTATIONS,
                         help="training views: unic (the official pipeline), light (crop and flip), none; auto: "
                              f"unic for image folders, {OFFLINE_AUGMENT} on the offline world (measured: README)")
    normalize: str = param("imagenet", choices=NORMALIZATIONS, help="the student's input mean/std")
    student_init: str = STUDENT_INIT()
    drop_path: float = param(0.0, check=check_drop_path,
                             help="the student's stochastic depth rate (the paper's ViT-B: 0.1)")
    epochs: int = param(8, ge=1, help="passes over the training split")
    batch_size: int = BATCH_SIZE(64)
    base_lr: float = param(8e-3, gt=0,
                           help="peak learning rate per 256 images: the run's peak is base_lr x batch_size / 256")
    min_lr: float = param(0.0, ge=0, help="the learning rate the cosine schedule ends at")
    warmup_epochs: float = param(0.8, ge=0, help="epochs of linear warm-up from 0 to the peak learning rate")
    betas: list[float] = param(default_factory=lambda: [0.9, 0.999], check=check_betas, help="AdamW's beta1, beta2")
    weight_decay: float = WEIGHT_DECAY()
    grad_clip: float = GRAD_CLIP(1.0)
    teacher_drop_prob: float = param(0.5, ge=0, le=1, help="teacher dropping: per image, each teacher but the one "
                                                           "matched worst is dropped with this probability (0: none)")
    ladder: str | list[int] = param("all", parse=as_ladder,
                                    help='"all" blocks, "last" (plain projector baseline), or indices like 1,3')
    standardize: str = param("running", choices=STANDARDIZERS, help="teacher feature standardization")
    image_size: int | None = IMAGE_SIZE()
    seed: int = SEED()
    fused_ladder: bool = param(True,
                               help="the ladder as batched matrix products (the same function as one MLP per block)")
    device: str = DEVICE()
    precision: str = PRECISION()
    torch_compile: bool = param(False, execution=True, help="torch.compile the student and ladder (long GPU runs)")
    nproc: int = param(1, ge=1, execution=True,
                       help="processes the notebook launches with torchrun (N GPUs); the command line takes torchrun's")
    ckpt_every: int = param(0, ge=0, execution=True, help="checkpoint every N steps; 0: at the end of every epoch")
    keep_checkpoints: int = param(3, ge=1, execution=True, help="how many of the newest checkpoints to keep")
    logger: str = LOGGER()

    def check(self) -> None:
        size, patch, depth = student_geometry(self.student, self.image_size)
        if size % patch:
            raise ParameterError(
                f"image_size {size} is not a multiple of the patch size {patch} of student {self.student!r}: use "
                f"{max(patch, size // patch * patch)} or {(size // patch + 1) * patch} (or 'auto' for the "
                "student's own)")
        try:
            select_blocks(self.ladder, depth)
        except ValueError as err:
            raise ParameterError(str(err)) from None
        if self.data == "world":  # an ImageFolder's size is known once it is read: distill checks it then
            check_batch_size(self.batch_size, self.n_train, self.data)
        check_teacher_options(self.teachers, self.teacher_weights, self.preprocessing)

    def check_inputs(self) -> None:
        """The data (an ImageFolder's splits, the offline world's memory), the teachers' weight files and the student
        to start from, each loaded as the run will load it (``check_data``, ``check_teacher_weights``,
        ``check_student_source``), and the package the logger needs (``check_logger``)."""
        n_train = check_data(self.data, self.n_train, self.n_test)
        check_batch_size(self.batch_size, n_train, self.data)
        size, patch, depth = student_geometry(self.student, self.image_size)
        tokens, width = (size // patch) ** 2 + 1, student_width(self.student)
        # a lower bound of one step in fp32: the batch's pixels, and per block a dozen activations of the tokens'
        # width kept for the backward pass
        need = self.batch_size * (3 * size * size + 12 * depth * tokens * width) * 4
        check_memory(need, f"a training step of batch_size {self.batch_size} at image_size {size}",
                     "lower image_size (or 'auto', the student's own) or batch_size")
        check_teacher_weights(self.teacher_weights, self.preprocessing)
        check_student_source(self.student_init)
        check_logger(self.logger)

    @property
    def peak_lr(self) -> float:
        """The run's peak learning rate: ``base_lr`` scaled with the global batch (lr x batch / 256, as UNIC)."""
        return self.base_lr * self.batch_size / 256

    @property
    def augmentation(self) -> str:
        """The augmentation this run uses: ``augment``, where ``auto`` depends on the data."""
        if self.augment != "auto":
            return self.augment
        return OFFLINE_AUGMENT if self.data == "world" else "unic"

    @property
    def student_preprocessing(self) -> Preprocessing:
        """How the student is fed, recorded in its folder: UNIC's evaluation transform at its input size
        (the shorter side to it, bicubic, the centre crop) and the ``normalize`` mean/std."""
        mean, std = NORMALIZATIONS[self.normalize]
        return replace(PREPROCESSING["unic"], mean=mean, std=std).at_size(self.input_size)

    @property
    def input_size(self) -> int:
        """The student's input side in pixels: ``image_size``, or the student's own."""
        return student_geometry(self.student, self.image_size)[0]

    def claim_out_dir(self, out_dir, overwrite: bool = False, log=print, inputs_checked: bool = False) -> Path:
        """``prepare_out_dir``, then the run file goes there: the out_dir documents its run, and
        ``python -m workbench distill --config <out_dir>/run.yaml`` (or torchrun) continues it."""
        out = super().claim_out_dir(out_dir, overwrite, log, inputs_checked)
        save_run_config(out / RUN_FILE, self, out_dir=out)
        return out


RELATIVE_TO = "paths_relative_to"  # the run file's key: the folder its relative paths (data, weight files) start in


def save_run_config(path, cfg: DistillConfig, out_dir=None) -> Path:
    """Write every field of ``cfg`` (and the out_dir) as a YAML run file; returns its path. The out_dir is written
    absolute, and the folder the other paths are relative to (this process's working folder) with them, so the
    file continues its run from whatever folder it is run in. (The paths stay as given: they are part of the
    run's configuration, recorded in its out_dir.)"""
    doc = cfg.to_dict() | ({"out_dir": str(Path(out_dir).resolve())} if out_dir is not None else {})
    doc[RELATIVE_TO] = str(Path.cwd().resolve())
    header = "# workbench distillation run: python -m workbench distill --config <this file>\n"
    save_text(header + yaml.safe_dump(doc, sort_keys=False), path)
    return Path(path)


def load_run_config(path) -> tuple[DistillConfig, str | None, Path | None]:
    """A run file (YAML, or JSON) -> (``DistillConfig``, out_dir or None, the folder its relative paths start in or
    None), every field checked. A relative out_dir is taken in that folder too."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"run file {str(path)!r} does not exist; the 03 notebook writes one to "
                          f"<out_dir>/{RUN_FILE}, or write the DistillConfig fields as YAML")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:  # its message spans lines: one line, where and what
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParameterError(f"run file {path} is not valid YAML/JSON{where}: "
                             f"{getattr(err, 'problem', None) or err}") from err
    if not isinstance(doc, dict):
        raise ParameterError(f"run file {path} must hold a mapping of parameters (teachers: ..., epochs: ...)")
    out_dir = doc.pop("out_dir", None)
    relative_to = doc.pop(RELATIVE_TO, None)
    if relative_to is not None:
        relative_to = Path(relative_to)
        if not relative_to.is_dir():
            raise MissingFile(f"run file {path}: {RELATIVE_TO} {str(relative_to)!r} is not a folder here; give the "
                              "folder its relative paths (data, weight files) start in, or make them absolute and "
                              f"delete {RELATIVE_TO}")
        out_dir = str(relative_to / out_dir) if out_dir is not None else None
    return DistillConfig.from_params(**doc), out_dir, relative_to
