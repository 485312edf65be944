"""The teacher zoo: short names for the encoders of the field, each with its release's weights format and
evaluation preprocessing.

Weights come from the local Hugging Face cache (timm's pretrained tags) or from a checkpoint file as its
authors ship it (``workbench.models.weights``: DINO, iBOT, dBOT, DeiT III and UNIC files are read in their
own layouts). Each name feeds its model as its release's evaluation code does
(``workbench.models.preprocess``); ``preprocessing=`` overrides it.

    create_teacher("dino_vitb16")                                                   # HF cache
    create_teacher("ibot_vitb16", checkpoint="ibot/checkpoint_teacher.pth")
    create_teacher("deit3_vitb16", checkpoint="deit_3_base_224_1k.pth")              # the official file
"""
from __future__ import annotations

from dataclasses import dataclass, field

import timm

from ..core.errors import MissingFile
from ._registry import register_teacher
from .preprocess import Preprocessing, preprocessing_named
from .teachers import TimmTeacher
from .weights import CheckpointKind, create_timm_model, load_checkpoint


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    arch: str  # timm architecture
    tag: str | None  # timm pretrained tag, None when weights only come as an official checkpoint file
    description: str
    preprocessing: str  # the release's evaluation recipe (workbench.models.preprocess.PREPROCESSING)
    checkpoint_format: str = "timm"  # how a checkpoint file of the release stores its weights
    model_kwargs: dict = field(default_factory=dict)
    weights_hint: str = ""

    @property
    def timm_name(self) -> str:
        return f"{self.arch}.{self.tag}" if self.tag else self.arch


ZOO = [
    TeacherSpec("dino_vits16", "vit_small_patch16_224", "dino", "DINO ViT-S/16 (self-distillation, IN-1k)",
                "dino", "dino"),
    TeacherSpec("dino_vitb16", "vit_base_patch16_224", "dino", "DINO ViT-B/16 (self-distillation, IN-1k)",
                "dino", "dino"),
    TeacherSpec("deit3_vits16", "deit3_small_patch16_224", "fb_in1k", "DeiT-III ViT-S/16 (supervised, IN-1k)",
                "deit3", "deit3"),
    TeacherSpec("deit3_vitb16", "deit3_base_patch16_224", "fb_in1k", "DeiT-III ViT-B/16 (supervised, IN-1k)",
                "deit3", "deit3"),
    TeacherSpec("dinov2_vits14", "vit_small_patch14_dinov2", "lvd142m", "DINOv2 ViT-S/14 (LVD-142M), at 224 px",
                "dinov2", model_kwargs={"img_size": 224}),
    TeacherSpec("dinov2_vitb14", "vit_base_patch14_dinov2", "lvd142m", "DINOv2 ViT-B/14 (LVD-142M), at 224 px",
                "dinov2", model_kwargs={"img_size": 224}),
    TeacherSpec("clip_vitb16", "vit_base_patch16_clip_224", "openai", "CLIP ViT-B/16 image tower (OpenAI)", "clip"),
    TeacherSpec("mae_vitb16", "vit_base_patch16_224", "mae", "MAE ViT-B/16 (masked autoencoder, IN-1k)", "mae"),
    TeacherSpec("deit_vitb16", "deit_base_patch16_224", "fb_in1k", "DeiT ViT-B/16 (supervised, IN-1k)", "deit"),
    TeacherSpec("ibot_vitb16", "vit_base_patch16_224", None,
                "iBOT ViT-B/16 (masked image modelling + self-distillation)", "ibot", "ibot",
                weights_hint="the official iBOT ViT-B/16 teacher checkpoint (checkpoint_teacher.pth, "
                             "github.com/bytedance/ibot)"),
    TeacherSpec("dbot_vitb16", "vit_base_patch16_224", None,
                "dBOT ViT-B/16 fine-tuned on IN-1k (global-pool + fc_norm)", "dbot", "dbot",
                model_kwargs={"global_pool": "avg", "fc_norm": True},
                weights_hint="the official dBOT ViT-B/16 IN-1k fine-tuned checkpoint (github.com/liuxingbin/dbot)"),
    TeacherSpec("unic_vitb16", "vit_base_patch16_224", None,
                "UNIC ViT-B/16 (distilled from DINO, DeiT-III, iBOT and dBOT)", "unic", "unic",
                weights_hint="a released UNIC checkpoint (unic.pth, github.com/naver/unic)"),
]


def build(spec: TeacherSpec, pretrained: bool = True, checkpoint: str | None = None,
          preprocessing: Preprocessing | None = None) -> TimmTeacher:
    if checkpoint is None and pretrained and spec.tag is None:
        raise MissingFile(
            f"teacher {spec.name!r} has no weights in timm's hub: download {spec.weights_hint} and pass "
            f"checkpoint='path/to/file' (-p teacher_weights {spec.name}=path/to/file in the notebooks)"
        )
    if checkpoint is None:
        model = create_timm_model(spec.timm_name, pretrained, **spec.model_kwargs)
    else:
        model = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **spec.model_kwargs)
        load_checkpoint(model, checkpoint, spec.checkpoint_format, spec.name)
    return TimmTeacher(spec.name, model, preprocessing or preprocessing_named(spec.preprocessing))


def _register(spec: TeacherSpec) -> None:
    register_teacher(spec.name, spec.description)(
        lambda pretrained=True, checkpoint=None, preprocessing=None: build(spec, pretrained, checkpoint, preprocessing)
    )


for _spec in ZOO:
    _register(_spec)
SPECS = {s.name: s for s in ZOO}


def release_entry(kind: CheckpointKind, timm_name: str) -> TeacherSpec | None:
    """The zoo entry of a file loaded under a timm name: the one whose release the file's layout identifies
    (``kind.release``) and whose architecture is the timm name's (its tag aside); None when there is none."""
    arch = timm_name.partition(".")[0]
    return next((s for s in ZOO if kind.release and s.checkpoint_format == kind.release and s.arch == arch), None)


def entries_reading(kind: CheckpointKind, timm_name: str) -> list[str]:
    """The zoo names whose release format reads a file of this layout and whose architecture is the timm
    name's; where none is, those of the release the layout identifies (another size of it), else none."""
    readers = (kind.release,) if kind.release else kind.readers
    names = [s.name for s in ZOO if s.checkpoint_format in readers]
    same_arch = [n for n in names if SPECS[n].arch == timm_name.partition(".")[0]]
    return same_arch or (names if kind.release else [])
