"""The parameters of a synthetic clone (01 and ``python -m workbench generate``), each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..core.config import Config, param
from ..core.device import local_device
from ..core.params import ParameterError
from ..core.runs import clear_out_dir
from ..data.imagenet import imagenet100_wnids
from .pipelines import DEFAULT_MODEL, SCHEDULERS, check_model, resolve_dtype
from .prompts import STRATEGIES, is_world, prompt_strategy, resolve_classes
from .tiny import TINY_MODEL
from .world_model import WORLD_MODEL

IMAGE_FORMATS = ("png", "jpg")


def _image_format(value, name: str) -> str:
    return str(value).lower().replace("jpeg", "jpg")


def _resolution(value: int) -> None:
    if value % 8:
        raise ParameterError(f"resolution must be a multiple of 8 (the VAE downsamples 8x), got {value}")


@dataclass
class GenerateConfig(Config):
    """What decides the pixels (the result fields) is locked for an output folder (``generation.json``); the
    classes and images per class may grow on a rerun (extent); batch, device and dtype may change (execution)."""

    kind: ClassVar[str] = "01_synthetic_imagenet"
    what: ClassVar[str] = "generation"

    classes: list[str] = param(default_factory=imagenet100_wnids, parse=lambda v, _: resolve_classes(v), extent=True,
                               help="imagenet100, imagenet1k, wnids (comma-separated or a YAML list), a .txt file; or "
                                    "world (the offline world's 36 colour-shape classes) or some of them (red_circle)")
    prompt: str = param("name_hypernym_background", check=prompt_strategy,
                        help=f"a strategy ({', '.join(STRATEGIES)}) or a template such as 'a photo of a {{name}}'")
    images_per_class: int = param(100, ge=1, extent=True, help="images of each class")
    guidance_scale: float = param(2.0, ge=0,
                                  help="classifier-free guidance; low gives more diverse images (ImageNet-SD)")
    steps: int = param(50, ge=1, help="denoising steps")
    model: str = param(DEFAULT_MODEL, check=check_model,
                       help=f"Hugging Face id in the local cache, a diffusers folder, {WORLD_MODEL!r} (the offline "
                            f"world's, shipped) or {TINY_MODEL!r} (random weights)")
    scheduler: str = param("default", choices=SCHEDULERS, help="the checkpoint's own (default) or another sampler")
    resolution: int | None = param(None, ge=8, check=_resolution,
                                   help="image side in pixels, a multiple of 8; auto: the model's own")
    negative_prompt: str = param("", help="what the images should not show")
    seed: int = param(0, ge=0, help="global seed: every image's seed and background derive from it")
    batch_size: int = param(8, ge=1, execution=True, help="images per pipeline call")
    device: str = param("auto", execution=True, help="auto: CUDA when present (this rank's GPU under torchrun)")
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

    def claim_out_dir(self, out_dir, overwrite: bool = False, log=print) -> Path:
        """A clone's folder is checked by ``generate`` itself (its settings file, shard by shard); ``overwrite``
        clears it first, and only a folder the workbench wrote."""
        out = Path(out_dir)
        if overwrite and out.is_dir():
            clear_out_dir(out)
            log(f"overwrite=True: cleared {out}")
        return out
