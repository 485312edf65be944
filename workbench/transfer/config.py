"""The parameters of 04_transfer: which models, on which tasks, each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..core.config import Config, param
from ..core.device import pick_device
from ..models import check_teacher_options
from ..probing import DenseProtocol
from .models import parse_models
from .tasks import check_roots, parse_tasks


@dataclass
class TransferConfig(Config):
    kind: ClassVar[str] = "04_transfer"
    what: ClassVar[str] = "transfer"

    models: list[str] = param(default_factory=lambda: ["world_colour", "world_shape", "student"],
                              check=parse_models,
                              help='teachers (registry / timm names), "student" (03\'s default), student folders, '
                                   'released UNIC files (unic.pth), or name=path')
    tasks: list[str] = param(default_factory=lambda: ["world"], check=parse_tasks,
                             help='"world" (the offline suite), world task names, datasets by name (flowers, cog_l3, '
                                  'cog_l3_16shot, ade20k, ...; flowers=/path reads one from elsewhere) and/or '
                                  'name=path ImageFolders')
    data_root: str = param("data", help="datasets by name are read from <data_root>/<name> (CoG levels: "
                                        "<data_root>/imagenet21k), in their own published layout")
    checkpoints: dict[str, str] = param(default_factory=dict,
                                        help="a weight file per teacher, in its release's own format: name=path,...")
    preprocessing: dict[str, str] = param(default_factory=dict,
                                          help="a teacher's eval recipe instead of its release's: name=recipe,...")
    levels: bool = param(True, help="concept-generalization levels (CoG) and the accuracy-per-level plot")
    n_train: int = param(3000, ge=20, help="offline world only: training images per dataset")
    n_test: int = param(1000, ge=20, help="offline world only: test images per dataset")
    image_size: int = param(224, ge=8, help="ImageFolder tasks: images are decoded at this size")
    pca_images: int = param(6, ge=1, help="images in the patch-feature PCA pictures")
    dense_steps: int = param(1500, ge=1, help="training steps of each dense probe, 16 images a step (DINOv2: 40000)")
    dense_lr: float = param(0.01, gt=0, help="peak AdamW learning rate of the dense probes (DINOv2: 0.001)")
    device: str = param("auto", execution=True, check=pick_device, help='"auto" picks CUDA when present')

    def check(self) -> None:
        teachers = [name for name, role, _ in parse_models(self.models) if role == "teacher"]
        check_teacher_options(teachers, self.checkpoints, self.preprocessing)
        check_roots(self.task_list())

    def task_list(self):
        """The tasks, with the datasets given by name read from ``data_root``."""
        return parse_tasks(self.tasks, self.data_root)

    @property
    def dense_protocol(self) -> DenseProtocol:
        return DenseProtocol(steps=self.dense_steps, lr=self.dense_lr)
