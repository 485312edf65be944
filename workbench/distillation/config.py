"""The parameters of a UNIC distillation run (03, and ``python -m workbench distill --config run.yaml``).

Each is declared once, here; the 03 notebook's parameters cell names the same fields, and the run file
the notebook writes (``<out_dir>/run.yaml``) holds them all, so a run file is one recipe whatever the
number of processes that train it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from ..core.config import Config, param
from ..core.device import pick_device
from ..core.files import save_text
from ..core.params import ParameterError, as_list
from ..core.runs import prepare_out_dir
from ..layers.ladder import select_blocks
from ..layers.standardize import STANDARDIZERS
from ..models import check_student_name, check_teacher_names, student_geometry

RUN_FILE = "run.yaml"


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

    teachers: list[str] = param(default_factory=lambda: ["world_colour", "world_shape"], check=check_teacher_names,
                                help="registry or timm names, comma-separated or a YAML list")
    student: str = param("wb_vitc_tiny_patch8_32", check=check_student_name,
                         help="any timm ViT; the default is sized for the 32x32 offline world")
    data: str = param("world", help='"world", or an ImageFolder path (<class>/<image>, or train/ + val/)')
    n_train: int = param(6000, ge=1, help="offline world only: training images")
    n_test: int = param(2000, ge=1, help="offline world only: test images for the probes")
    epochs: int = param(8, ge=1, help="passes over the training split")
    batch_size: int = param(64, ge=1, help="the global batch, whatever the number of processes")
    lr: float = param(2e-3, gt=0, help="peak learning rate (AdamW)")
    min_lr: float = param(0.0, ge=0, help="the learning rate the cosine schedule ends at")
    weight_decay: float = param(0.05, ge=0, help="AdamW weight decay of the weight matrices")
    warmup_frac: float = param(0.1, ge=0, le=1, help="share of the steps spent warming the learning rate up")
    grad_clip: float = param(1.0, ge=0, help="gradient norm clipping (0: none)")
    tdrop_p: float = param(0.5, ge=0, le=1, help="teacher dropping probability (0 disables it)")
    ladder: str | list[int] = param("all", parse=as_ladder,
                                    help='"all" blocks, "last" (plain projector baseline), or indices like 1,3')
    standardize: str = param("running", choices=STANDARDIZERS, help="teacher feature standardization")
    image_size: int | None = param(None, ge=1,
                                   help="student input size in pixels, a multiple of its patch; auto: its own")
    seed: int = param(0, ge=0, help="weights, data order and teacher dropping")
    fused_ladder: bool = param(True,
                               help="the ladder as batched matrix products (the same function as one MLP per block)")
    device: str = param("auto", execution=True, check=pick_device, help='"auto" picks CUDA when present')
    torch_compile: bool = param(False, execution=True, help="torch.compile the student and ladder (long GPU runs)")
    nproc: int = param(1, ge=1, execution=True,
                       help="processes the notebook launches with torchrun (N GPUs); the command line takes torchrun's")
    ckpt_every: int = param(0, ge=0, execution=True, help="checkpoint every N steps; 0: at the end of every epoch")
    keep_checkpoints: int = param(3, ge=1, execution=True, help="how many of the newest checkpoints to keep")

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

    @property
    def input_size(self) -> int:
        """The student's input side in pixels: ``image_size``, or the student's own."""
        return student_geometry(self.student, self.image_size)[0]

    def claim_out_dir(self, out_dir, overwrite: bool = False, log=print) -> Path:
        """``prepare_out_dir``, then the run file goes there: the out_dir documents its run, and
        ``python -m workbench distill --config <out_dir>/run.yaml`` (or torchrun) continues it."""
        out = prepare_out_dir(out_dir, self.run_key(), overwrite, kind=self.kind, log=log,
                              defaults=self.default_run_key())
        save_run_config(out / RUN_FILE, self, out_dir=out)
        return out


def save_run_config(path, cfg: DistillConfig, out_dir=None) -> Path:
    """Write every field of ``cfg`` (and the out_dir) as a YAML run file; returns its path."""
    doc = cfg.to_dict() | ({"out_dir": str(out_dir)} if out_dir is not None else {})
    header = "# workbench distillation run: python -m workbench distill --config <this file>\n"
    save_text(header + yaml.safe_dump(doc, sort_keys=False), path)
    return Path(path)


def load_run_config(path) -> tuple[DistillConfig, str | None]:
    """A run file (YAML, or JSON) -> (``DistillConfig``, out_dir or None), every field checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run file {str(path)!r} does not exist; the 03 notebook writes one to "
                                f"<out_dir>/{RUN_FILE}, or write the DistillConfig fields as YAML")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"run file {path} is not valid YAML/JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"run file {path} must hold a mapping of parameters (teachers: ..., epochs: ...)")
    out_dir = doc.pop("out_dir", None)
    return DistillConfig.from_params(**doc), out_dir
