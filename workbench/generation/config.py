"""The parameters of a synthetic clone (01 and ``python -m workbench generate``), each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..core.config import Config, Option, param
from ..core.device import local_device
from ..core.params import ParameterError
from ..core.runs import check_writable, clear_out_dir
from ..options import DEVICE, SEED
from .pipelines import DEFAULT_MODEL, SCHEDULERS, check_model, resolve_dtype
from .prompts import STRATEGIES, is_world, prompt_strategy, resolve_classes
from .tiny import TINY_MODEL
from .world_model import WORLD_MODEL

IMAGE_FORMATS = ("png", "jpg")
WORLD_CALL, MODEL_CALL = 72, 8  # images_per_call "auto": the offline world's 32-px images, or a Stable Diffusion's


def _image_format(value, name: str) -> str:
    return str(value).lower().replace("jpeg", "jpg")


def _resolution(value: int) -> None:
    if value % 8:
        raise ParameterError(f"resolution must be a multiple of 8 (the VAE downsamples 8x), got {value}")


# The options of a clone that 06's study (``CloneStudyConfig``) takes too, declared once.
IMAGES_PER_CLASS = Option("images_per_class", int, "images of each class (of every clone, and of 06's real set)",
                          default=8, ge=1)
STEPS = Option("steps", int, "denoising steps (25-50 for a Stable Diffusion model)", default=20, ge=1)
MODEL = Option("model", str, f"the text-to-image model: {WORLD_MODEL!r} (the offline world's, shipped), a Hugging "
                             f"Face id in the local cache (e.g. {DEFAULT_MODEL}), a diffusers folder, or "
                             f"{TINY_MODEL!r} (random weights)", default=WORLD_MODEL, check=check_model)
IMAGES_PER_CALL = Option("images_per_call", int | None, f"images per pipeline call; auto: {WORLD_CALL} with "
                                                        f"{WORLD_MODEL!r}, {MODEL_CALL} with any other model",
                         default=None, ge=1, execution=True)


def images_per_call(value: int | None, model: str) -> int:
    """``images_per_call``, with "auto" read for ``model``."""
    return value or (WORLD_CALL if model == WORLD_MODEL else MODEL_CALL)


@dataclass
class GenerateConfig(Config):
    """What decides the pixels (the result fields) is locked for an output folder (``generation.json``); the
    classes and images per class may grow on a rerun (extent); batch, device and dtype may change (execution)."""

    kind: ClassVar[str] = "01_synthetic_imagenet"
    what: ClassVar[str] = "generation"
    renamed: ClassVar[dict[str, str]] = {"batch_size": "images_per_call"}

    classes: list[str] = param(default_factory=lambda: resolve_classes("world"), parse=lambda v, _: resolve_classes(v),
                               extent=True,
                               help="imagenet100, imagenet1k, wnids (comma-separated or a YAML list), a .txt file; or "
                                    "world (the offline world's 36 colour-shape classes) or some of them (red_circle)")
    prompt: str = param("name_hypernym_background", check=prompt_strategy,
                        help=f"a strategy ({', '.join(STRATEGIES)}) or a template such as 'a photo of a {{name}}'")
    images_per_class: int = IMAGES_PER_CLASS(extent=True)
    guidance_scale: float = param(2.0, ge=0,
                                  help="classifier-free guidance; low gives more diverse images (ImageNet-SD)")
    steps: int = STEPS()
    model: str = MODEL()
    scheduler: str = param("default", choices=SCHEDULERS, help="the checkpoint's own (default) or another sampler")
    resolution: int | None = param(None, ge=8, check=_resolution,
                                   help="image side in pixels, a multiple of 8; auto: the model's own")
    negative_prompt: str = param("", help="what the images should not show")
    seed: int = SEED()
    images_per_call: int | None = IMAGES_PER_CALL()
    device: str = DEVICE()
    dtype: str = param("auto", choices=("auto", "fp32", "fp16", "bf16"), execution=True,
                       help="auto: fp16 on CUDA, fp32 on CPU")
    image_format: str = param("png", parse=_image_format, choices=IMAGE_FORMATS, help="png (lossless) or jpg")

    def check(self) -> None:
        resolve_dtype(self.dtype, local_device(self.device))  # fp16 on a CPU, or a device that is not there
        if self.model == WORLD_MODEL and not is_world(self.classes):
            raise ParameterError(f"model {WORLD_MODEL!r} draws only the offline world's classes (its vocabulary has "
                                 "no other word): use classes='world' or some of them (red_circle,blue_ring), or a "
                                 "Stable Diffusion checkpoint for ImageNet classes")

    @property
    def call_size(self) -> int:
        """Images per pipeline call (``images_per_call``, "auto" read for the model)."""
        return images_per_call(self.images_per_call, self.model)

    @property
    def random_weights(self) -> bool:
        """The tiny offline pipeline: its images are noise, they test the machinery."""
        return self.model == TINY_MODEL

    def describe(self, device) -> str:
        return (f"{len(self.classes)} classes x {self.images_per_class} images with {self.model} on {device}"
                + ("; random weights: the images will be noise (this run tests the machinery)"
                   if self.random_weights else ""))

    def settings(self) -> dict:
        """The settings that decide every image's pixels: fixed for an output folder."""
        return self.run_key()

    def claim_out_dir(self, out_dir, overwrite: bool = False, log=print, inputs_checked: bool = False) -> Path:
        """A clone's folder is checked by ``generate`` itself (its settings file, shard by shard); ``overwrite``
        clears it first, and only a folder the workbench wrote."""
        out = Path(out_dir)
        if not inputs_checked:
            self.check_inputs()
        check_writable(out)
        if overwrite and out.is_dir():
            log(f"overwrite=True: {clear_out_dir(out, what='clone')}")
        return out
