"""Students: timm Vision Transformers whose every block output is exposed for the ladder of projectors.

For real use the student is a standard timm ViT (default ``vit_base_patch16_224``). For the offline
world the workbench registers small ViTs in timm's registry, so they are created the same way:
``timm.create_model("wb_vit_tiny_patch4_32")``.

A trained student is a folder: ``student.safetensors`` (the encoder's weights) and ``config.json``
(``{"config": {"student": <timm name>, "image_size": ...}, ...}``), written by distillation;
``load_student`` rebuilds the encoder from it, or from a run's out_dir.
"""
from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import timm
import torch
import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, save_for_hf
from timm.models.vision_transformer import VisionTransformer

from ..core.checkpoint import Checkpoints
from ..core.errors import MissingFile, ParameterError, WeightsError, WorkbenchError, cause
from ..core.files import load_tensors
from ..layers.attention import use_fused_attention
from ..layers.conv_stem import ConvStemEmbed
from ._registry import named_student, named_students
from .preprocess import Normalize, Preprocessing, preprocessing_named
from .weights import CHECKPOINT_FORMATS, load_into, load_weights, shapes_only, unwrap_state_dict

STUDENT_WEIGHTS = "student.safetensors"  # the encoder's weights in a student folder
STUDENT_CONFIG = "config.json"  # {"config": {"student": ..., "image_size": ...}, ...}; written last
# In a run's out_dir: the finished student (``student/``) and the resumable training states (``checkpoints/``).
# ``checkpoint/`` is where out_dirs written before the workbench 0.2 keep their finished student: still read.
STUDENT_FOLDER, OLDER_STUDENT_FOLDER, TRAINING_CHECKPOINTS = "student", "checkpoint", "checkpoints"


def _cfg() -> dict:
    """The timm config of the offline-world students: no hosted weights (they are distilled), mean = std = 0.5."""
    return {"url": "", "num_classes": 0, "input_size": (3, 32, 32), "pool_size": None, "crop_pct": 1.0,
            "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
            "first_conv": "patch_embed.proj", "classifier": "head"}


# The offline world's students, named as timm names its ViTs: ``wb_`` registered by the workbench, ``vit`` a plain
# ViT or ``vitc`` one with a convolutional stem (Xiao et al., 2021, "Early Convolutions Help Transformers See
# Better"), ``tiny`` width 128 and 4 blocks, ``patch8_32`` 8-pixel patches of a 32-pixel image.
default_cfgs = generate_default_cfgs({name: _cfg() for name in (
    "wb_vit_tiny_patch4_32", "wb_vitc_tiny_patch8_32", "wb_vitc_tiny_patch4_32", "wb_vit_tiny_patch8_32")})


def _small_vit(variant: str, pretrained: bool, defaults: dict, kwargs: dict) -> VisionTransformer:
    """Built as timm builds its own models, so an exported student loads back with ``pretrained=True`` and a file."""
    return build_model_with_cfg(VisionTransformer, variant, pretrained, **{**defaults, **kwargs})


@register_model
def wb_vit_tiny_patch4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT for the 32x32 offline world: 64 patches of 4x4, width 128, 4 blocks."""
    defaults = dict(img_size=32, patch_size=4, embed_dim=128, depth=4, num_heads=4, mlp_ratio=3.0, num_classes=0)
    return _small_vit("wb_vit_tiny_patch4_32", pretrained, defaults, kwargs)


@register_model
def wb_vitc_tiny_patch8_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Convolutional-stem ViT for the 32x32 offline world: 16 tokens from a 3-conv stem, width 128, 4 blocks."""
    defaults = dict(img_size=32, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=3.0, num_classes=0,
                    embed_layer=ConvStemEmbed)
    return _small_vit("wb_vitc_tiny_patch8_32", pretrained, defaults, kwargs)


@register_model
def wb_vitc_tiny_patch4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Convolutional-stem ViT for the 32x32 offline world: 64 tokens from a 2-conv stem, width 128, 4 blocks."""
    defaults = dict(img_size=32, patch_size=4, embed_dim=128, depth=4, num_heads=4, mlp_ratio=3.0, num_classes=0,
                    embed_layer=ConvStemEmbed)
    return _small_vit("wb_vitc_tiny_patch4_32", pretrained, defaults, kwargs)


@register_model
def wb_vit_tiny_patch8_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT for the 32x32 offline world: 16 patches of 8x8, width 128, 4 blocks."""
    defaults = dict(img_size=32, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=3.0, num_classes=0)
    return _small_vit("wb_vit_tiny_patch8_32", pretrained, defaults, kwargs)


class Student(nn.Module):
    """A timm ViT and its preprocessing; ``forward`` returns the tokens of every block, for the ladder.

    As in the official UNIC code, the ladder reads each block's raw output, the last one included; the
    features kept downstream (``forward_features``, ``embed``) are the final norm's, as any ViT's.
    ``preprocessing`` (``workbench.models.preprocess``) is how the student's inputs are normalised, and the
    evaluation transform a student folder records, so that it is fed as it was trained; without one,
    ``default_preprocessing`` (what student folders written before it was recorded used).
    """

    def __init__(self, name: str, img_size: int | None = None, drop_path_rate: float = 0.0,
                 preprocessing: Preprocessing | None = None):
        super().__init__()
        kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        if img_size is not None:
            kwargs["img_size"] = img_size
        try:
            self.vit = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        except RuntimeError as err:
            raise ParameterError(f"unknown student {name!r}: {err}. Use a timm ViT name such as "
                                 "'vit_small_patch16_224'") from err
        if not isinstance(self.vit, VisionTransformer):
            raise ParameterError(f"student {name!r} is a {type(self.vit).__name__}; the student must be a timm "
                                 "VisionTransformer")
        self.name = name
        use_fused_attention(self.vit)
        self.img_size = tuple(self.vit.patch_embed.img_size)
        self.preprocessing = preprocessing or default_preprocessing(self.vit, self.img_size[0])
        self.normalize = Normalize(self.preprocessing, self.img_size)
        self.embed_dim = self.vit.embed_dim
        self.depth = len(self.vit.blocks)
        self.grid = tuple(self.vit.patch_embed.grid_size)
        self.num_prefix_tokens = self.vit.num_prefix_tokens

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalize(images)

    def forward(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(cls, patch) tokens after every block, before the final norm: [(B, D), (B, N, D)] * depth."""
        vit = self.vit
        x = vit.patch_embed(self.preprocess(images))
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        outputs = []
        for block in vit.blocks:
            x = block(x)
            outputs.append((self._pool(x), x[:, self.num_prefix_tokens :]))
        return outputs

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features kept downstream: the final norm's pooled (CLS) feature and patch tokens."""
        tokens = self.vit.forward_features(self.preprocess(images))
        return self._pool(tokens), tokens[:, self.num_prefix_tokens :]

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.vit.cls_token is not None:
            return tokens[:, 0]
        return tokens[:, self.num_prefix_tokens :].mean(1)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The feature used downstream (probes, transfer): the final CLS token."""
        return self.forward_features(images)[0]

    def export_timm(self, folder) -> Path:
        """The student as timm shares models: ``model.safetensors`` and ``config.json`` (architecture, arguments,
        preprocessing), loadable by ``timm.create_model("local-dir:<folder>", pretrained=True)``, or by
        ``timm.create_model(<arch>, pretrained=True, pretrained_cfg_overlay=dict(file=<folder>/model.safetensors,
        **<config.json>["pretrained_cfg"]))`` (the overlay brings the preprocessing; the arguments, e.g.
        ``img_size``, are then given as usual)."""
        p = self.preprocessing
        data_config = {"input_size": (3, p.crop, p.crop), "interpolation": p.interpolation,
                       "crop_pct": p.crop / p.resize, "crop_mode": "center", "mean": p.mean, "std": p.std}
        save_for_hf(self.vit, folder, safe_serialization=True, data_config=data_config)
        return Path(folder)


def default_preprocessing(vit: VisionTransformer, size: int) -> Preprocessing:
    """A student's preprocessing when none is given: the mean/std of its architecture's timm config (0.5 where it
    has none), files resized and centre-cropped to its input size (bilinear, as image folders are decoded by
    default). Distillation records its own with every student it writes."""
    cfg = getattr(vit, "pretrained_cfg", None) or {}
    return Preprocessing(resize=size, crop=size, interpolation="bilinear", mean=cfg.get("mean", (0.5, 0.5, 0.5)),
                         std=cfg.get("std", (0.5, 0.5, 0.5)))


def check_student_name(name: str) -> str:
    """Fail early, with suggestions, when ``name`` is not a timm ViT."""
    if not timm.is_model(name):
        ours = ", ".join(timm.list_models("wb_*"))
        raise ParameterError(f"unknown student {name!r}: use a timm ViT name such as 'vit_small_patch16_224' or "
                             f"'vit_base_patch16_224', or an offline-world student ({ours})")
    return name


def student_image_size(name: str) -> int:
    """The input resolution of a student, read without allocating its weights."""
    return student_geometry(name)[0]


@functools.cache
def _architecture(name: str) -> nn.Module:
    """A student's architecture on the ``meta`` device, no weights allocated; built once per name (its geometry and
    width are asked for by every check and property)."""
    with torch.device("meta"):
        return timm.create_model(check_student_name(name), pretrained=False, num_classes=0)


def student_geometry(name: str, img_size: int | None = None) -> tuple[int, int, int]:
    """(input size, patch size, depth) of a student at ``img_size`` (default: its own), without allocating weights."""
    vit = _architecture(name)
    if not isinstance(vit, VisionTransformer):
        raise ParameterError(f"student {name!r} is a {type(vit).__name__}; the student must be a timm "
                             "VisionTransformer")
    return img_size or int(vit.patch_embed.img_size[0]), int(vit.patch_embed.patch_size[0]), len(vit.blocks)


def student_width(name: str) -> int:
    """A student's token width (its ``embed_dim``), without allocating weights."""
    return int(_architecture(name).embed_dim)


def finished_student_folder(out_dir) -> Path:
    """Where a run's finished student is, or goes: ``<out_dir>/student``, or ``<out_dir>/checkpoint`` in an out_dir
    that an older workbench wrote (read with a warning; the folder is not moved)."""
    out_dir = Path(out_dir)
    older = out_dir / OLDER_STUDENT_FOLDER
    if not (out_dir / STUDENT_FOLDER).exists() and (older / STUDENT_CONFIG).is_file():
        warnings.warn(f"{out_dir} keeps its finished student in {OLDER_STUDENT_FOLDER}/, the older name of "
                      f"{STUDENT_FOLDER}/: it is read from there (rename the folder to {STUDENT_FOLDER}/ to silence "
                      "this)", FutureWarning, stacklevel=2)
        return older
    return out_dir / STUDENT_FOLDER


def find_student_folder(folder) -> Path:
    """A student folder: ``folder`` itself, the finished student of a run's out_dir (``student/``), or the newest
    training checkpoint ``checkpoints/step_*`` of a run still training, or killed."""
    folder = Path(folder)
    if (folder / STUDENT_CONFIG).is_file():
        return folder
    finished = finished_student_folder(folder)
    if (finished / STUDENT_CONFIG).is_file():
        return finished
    latest = Checkpoints(folder / TRAINING_CHECKPOINTS).latest()
    if latest is not None:
        return latest
    raise MissingFile(f"no distilled student in {folder} (expected {STUDENT_CONFIG} and {STUDENT_WEIGHTS}, or "
                      f"an out_dir holding {STUDENT_FOLDER}/ or {TRAINING_CHECKPOINTS}/)")


def check_student_init(value: str) -> str:
    """``student_init``: "random", a named student (``register_named_student``: "student" is 03's default), an
    existing file (a released unic.pth) or a folder that holds a student."""
    if value == "random" or value in named_students() or Path(value).is_file():
        return value
    try:
        find_student_folder(value)
    except FileNotFoundError:
        names = " or ".join(repr(n) for n in named_students()) or "a named student"
        raise ParameterError(
            f"student_init {value!r} is not 'random', {names}, "
            f"a student folder (an out_dir of 03 or its {STUDENT_FOLDER}/, holding {STUDENT_CONFIG} and "
            f"{STUDENT_WEIGHTS}) or a released UNIC checkpoint file (unic.pth)") from None
    return value


def load_student(source, device: str | torch.device = "cpu") -> Student:
    """A distilled student encoder (projectors are not needed): from its folder or a run's out_dir, from a released
    UNIC checkpoint file (``unic.pth``: its encoder, a ViT of timm's ``vit_<size>_patch<p>_224``), or by name
    (``"student"``: 03's default student, distilled on first use)."""
    if str(source) in named_students():
        source = named_student(str(source))
    return _read_student(source).to(device).eval()


def _read_student(source) -> Student:
    if Path(source).is_file():
        return load_unic_student(source)
    folder = find_student_folder(source)
    saved = json.loads((folder / STUDENT_CONFIG).read_text())
    cfg = saved["config"]
    preprocessing = Preprocessing.from_dict(saved["preprocessing"]) if "preprocessing" in saved else None
    student = Student(cfg["student"], img_size=cfg.get("image_size"), preprocessing=preprocessing)
    student.load_state_dict(load_tensors(folder / STUDENT_WEIGHTS))
    return student


def check_student_source(source: str, what: str = "student_init") -> None:
    """A student file or folder read into its architecture on the ``meta`` device (shapes, no memory), before a
    run claims its out_dir: a cut-short or foreign file is reported now, naming ``what`` and the file. "random"
    and named students (built by the workbench) pass."""
    if source == "random" or source in named_students():
        return
    try:
        with shapes_only():
            _read_student(source)
    except WorkbenchError as err:
        raise WeightsError(f"{what} {source!r}: {err}") from err
    except Exception as err:  # noqa: BLE001  (safetensors, json and torch fail in many ways on a wrong file)
        raise WeightsError(
            f"{what} {source!r} does not load as a student ({cause(err)}). Give a student folder "
            f"(an out_dir of 03 or its {STUDENT_FOLDER}/, as 03 wrote it) or a released UNIC checkpoint (unic.pth)."
        ) from err


UNIC_ARCHS = {"vit_small": 384, "vit_base": 768, "vit_large": 1024}  # the encoders UNIC trains, by width


def load_unic_student(path) -> Student:
    """The encoder of a released UNIC checkpoint as a student, fed as UNIC's evaluation feeds it. Its ``args``
    (a Namespace: ``arch``, ``patch_size``, ``image_size``) give the architecture; without them, the width of the
    weights does."""
    checkpoint = load_weights(path)
    args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    state = unwrap_state_dict(checkpoint, **CHECKPOINT_FORMATS["unic"])
    if "cls_token" not in state:
        raise WeightsError(f"{str(path)!r} is not a UNIC checkpoint: no module.encoder.* weights under 'model'")
    width = state["cls_token"].shape[-1]
    arch = getattr(args, "arch", None) or next((a for a, w in UNIC_ARCHS.items() if w == width), None)
    patch = getattr(args, "patch_size", None) or int(state["patch_embed.proj.weight"].shape[-1])
    size = getattr(args, "image_size", None) or 224
    name = f"{arch}_patch{patch}_224"
    if arch not in UNIC_ARCHS or not timm.is_model(name):
        raise WeightsError(f"{str(path)!r} holds a UNIC {arch or f'width-{width}'} /{patch} encoder, which has no timm "
                           f"architecture here ({name})")
    student = Student(name, img_size=size, preprocessing=preprocessing_named("unic").at_size(size))
    load_into(student.vit, checkpoint, "unic", name, path)
    return student
