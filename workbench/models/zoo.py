"""The teacher zoo: short names for the encoders of the field, mapped to timm models and preprocessing.

Weights come from the local Hugging Face cache (timm ``pretrained=True``) or from a checkpoint file
the user names. iBOT and dBOT are not in timm: their official checkpoint files are loaded into the
matching timm ViT by a key mapping (both use the DeiT/timm parameter names, behind a prefix).

    create_teacher("dino_vitb16")                                    # HF cache
    create_teacher("ibot_vitb16", checkpoint="ibot/checkpoint_teacher.pth")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm

from ._registry import register_teacher
from .teachers import TimmTeacher
from .weights import create_timm_model, load_timm_checkpoint, load_weights, unwrap_state_dict

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    arch: str  # timm architecture
    tag: str | None  # timm pretrained tag, None when weights only come as an official checkpoint file
    description: str
    patch_size: int = 16
    img_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    model_kwargs: dict = field(default_factory=dict)
    checkpoint_format: str = "timm"  # "ibot" / "dbot": official files, mapped onto timm keys
    weights_hint: str = ""

    @property
    def timm_name(self) -> str:
        return f"{self.arch}.{self.tag}" if self.tag else self.arch


ZOO = [
    TeacherSpec("dino_vits16", "vit_small_patch16_224", "dino", "DINO ViT-S/16 (self-distillation, IN-1k)"),
    TeacherSpec("dino_vitb16", "vit_base_patch16_224", "dino", "DINO ViT-B/16 (self-distillation, IN-1k)"),
    TeacherSpec("deit3_vits16", "deit3_small_patch16_224", "fb_in1k", "DeiT-III ViT-S/16 (supervised, IN-1k)"),
    TeacherSpec("deit3_vitb16", "deit3_base_patch16_224", "fb_in1k", "DeiT-III ViT-B/16 (supervised, IN-1k)"),
    TeacherSpec("dinov2_vits14", "vit_small_patch14_dinov2", "lvd142m", "DINOv2 ViT-S/14 (LVD-142M), at 224 px",
                patch_size=14, model_kwargs={"img_size": 224}),
    TeacherSpec("dinov2_vitb14", "vit_base_patch14_dinov2", "lvd142m", "DINOv2 ViT-B/14 (LVD-142M), at 224 px",
                patch_size=14, model_kwargs={"img_size": 224}),
    TeacherSpec("clip_vitb16", "vit_base_patch16_clip_224", "openai", "CLIP ViT-B/16 image tower (OpenAI)",
                mean=CLIP_MEAN, std=CLIP_STD),
    TeacherSpec("mae_vitb16", "vit_base_patch16_224", "mae", "MAE ViT-B/16 (masked autoencoder, IN-1k)"),
    TeacherSpec("deit_vitb16", "deit_base_patch16_224", "fb_in1k", "DeiT ViT-B/16 (supervised, IN-1k)"),
    TeacherSpec("ibot_vitb16", "vit_base_patch16_224", None,
                "iBOT ViT-B/16 (masked image modelling + self-distillation)", checkpoint_format="ibot",
                weights_hint="the official iBOT ViT-B/16 teacher checkpoint (checkpoint_teacher.pth, "
                             "github.com/bytedance/ibot)"),
    TeacherSpec("dbot_vitb16", "vit_base_patch16_224", None,
                "dBOT ViT-B/16 fine-tuned on IN-1k (global-pool + fc_norm)",
                model_kwargs={"global_pool": "avg", "fc_norm": True}, checkpoint_format="dbot",
                weights_hint="the official dBOT ViT-B/16 IN-1k fine-tuned checkpoint (github.com/liuxingbin/dbot)"),
]

# Official checkpoints: where the state dict sits, which prefixes to strip, which keys belong to heads.
OFFICIAL_FORMATS = {
    "ibot": {"keys": ("state_dict", "teacher", "model"), "prefixes": ("module.", "backbone.", "encoder."),
             "drop": ("head.", "masked_embed", "decoder", "mask_token")},
    "dbot": {"keys": ("model", "state_dict"), "prefixes": ("module.", "backbone.", "encoder."),
             "drop": ("head.", "masked_embed", "decoder", "mask_token")},
}


def build(spec: TeacherSpec, pretrained: bool = True, checkpoint: str | None = None) -> TimmTeacher:
    if checkpoint is None and pretrained and spec.tag is None:
        raise FileNotFoundError(
            f"teacher {spec.name!r} has no weights in timm's hub: download {spec.weights_hint} and pass "
            f"checkpoint='path/to/file' (-p checkpoints {spec.name}=path/to/file in the notebooks)"
        )
    if checkpoint is None:
        model = create_timm_model(spec.timm_name, pretrained, **spec.model_kwargs)
    else:
        model = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **spec.model_kwargs)
        if spec.checkpoint_format == "timm":
            load_timm_checkpoint(model, checkpoint, spec.name)
        else:
            if not Path(checkpoint).is_file():
                raise FileNotFoundError(f"checkpoint {checkpoint!r} for teacher {spec.name!r} does not exist")
            missing, unexpected = model.load_state_dict(
                unwrap_state_dict(load_weights(checkpoint), **OFFICIAL_FORMATS[spec.checkpoint_format]), strict=False)
            if missing or unexpected:
                raise ValueError(f"checkpoint {checkpoint!r} does not fit {spec.name!r} "
                                 f"({spec.checkpoint_format} format): "
                                 f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return TimmTeacher(spec.name, model, img_size=spec.img_size, mean=spec.mean, std=spec.std)


def _register(spec: TeacherSpec) -> None:
    register_teacher(spec.name, spec.description)(
        lambda pretrained=True, checkpoint=None: build(spec, pretrained=pretrained, checkpoint=checkpoint)
    )


for _spec in ZOO:
    _register(_spec)
SPECS = {s.name: s for s in ZOO}
