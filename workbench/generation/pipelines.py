"""Stable Diffusion pipelines: a real checkpoint from the local Hugging Face cache, or an offline one.

    pipe = load_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5", device)  # from the local HF cache
    pipe = load_pipeline("/models/sd-2-base", device, dtype="fp16")             # a diffusers folder
    pipe = load_pipeline("world-offline", device)                                # shipped: the offline world's
    pipe = load_pipeline("tiny-offline", device)                                 # built here, random weights

Nothing is downloaded: a hub id must already be in the Hugging Face cache (``local_files_only``), and
a missing one fails at once with the command that fetches it. The world model (``workbench.generation.world_model``)
ships with the package; the tiny pipeline (``workbench.generation.tiny``) is built on first use; both are loaded
through the very same ``from_pretrained`` call as a real checkpoint.
diffusers is imported only when a pipeline is loaded: checking parameters stays fast.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..core.errors import MissingFile, ParameterError
from .tiny import TINY_MODEL, tiny_pipeline_path, without_loading_bars
from .world_model import WORLD_MODEL, check_world_model, expected_warnings, world_model_revision

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the recommended real checkpoint (512 px)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# scheduler name -> diffusers class; "default" keeps the checkpoint's own scheduler
SCHEDULERS = {
    "default": None,
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "lms": "LMSDiscreteScheduler",
}

# ----------------------------------------------------------------------------- checks (no diffusers import)

def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is fp16 on CUDA and fp32 elsewhere; fp16 needs CUDA (CPU kernels are missing or slow)."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ParameterError(f"dtype must be 'auto' or one of {list(DTYPES)}, got {dtype!r}")
    if dtype == "fp16" and device.type != "cuda":
        raise ParameterError("dtype='fp16' needs a CUDA device; use 'fp32' (or 'bf16') on CPU")
    return DTYPES[dtype]


def check_scheduler(name: str) -> str:
    if name not in SCHEDULERS:
        raise ParameterError(f"scheduler must be one of {list(SCHEDULERS)}, got {name!r}")
    return name


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (or anything that exists on disk) is a path."""
    return (model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
            or Path(model).expanduser().exists())


def locate_model(model: str) -> tuple[Path | None, str | None]:
    """Where a model's files are: ``(folder, revision)``; raises at once, naming the model, when absent.

    ``world-offline`` ships with the package; ``tiny-offline`` is built on first use; a path must be a diffusers
    folder (``model_index.json``);
    anything else is a Hugging Face id that must be in the local cache: for one, the folder is ``None``
    (diffusers finds the files in the cache itself) and the revision is the cached snapshot's commit.
    """
    if model == TINY_MODEL:
        folder = tiny_pipeline_path()
        return folder, folder.name
    if model == WORLD_MODEL:
        folder = check_world_model()
        return folder, world_model_revision(folder)
    if _looks_like_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise MissingFile(f"model folder {model!r} does not exist. Pass a diffusers pipeline folder "
                              f"(with model_index.json), a Hugging Face id such as {DEFAULT_MODEL!r}, "
                              f"or {TINY_MODEL!r} for the offline test pipeline")
        if not (folder / "model_index.json").is_file():
            raise MissingFile(f"model folder {model!r} has no model_index.json: not a diffusers pipeline "
                              "(save one with pipeline.save_pretrained(folder))")
        return folder, None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    index = try_to_load_from_cache(model, "model_index.json")
    if not isinstance(index, str):
        raise MissingFile(
            f"Stable Diffusion model {model!r} is not in the local Hugging Face cache ({HF_HUB_CACHE}) and "
            f"nothing is downloaded here. On a machine with network run `hf download {model}` (older "
            f"huggingface_hub: `huggingface-cli download {model}`) and copy the cache here (or set HF_HOME "
            f"to it), or pass the path of a local diffusers folder as the model. Offline: model={WORLD_MODEL!r} "
            f"(the offline world's own model, classes='world'), or {TINY_MODEL!r} (random weights: a test of the "
            "machinery).")
    return None, Path(index).parent.name  # .../snapshots/<commit>/model_index.json


def check_model(model: str) -> str:
    """Fail at once, naming the model and how to get it, when a checkpoint is not on this machine.
    (The tiny pipeline is always available: it is built on first use.)"""
    if not isinstance(model, str) or not model.strip():
        raise ParameterError(f"model must be a Hugging Face id, a diffusers folder, {WORLD_MODEL!r} or {TINY_MODEL!r}, "
                             f"got {model!r}")
    if model != TINY_MODEL:
        locate_model(model)
    return model


# ----------------------------------------------------------------------------- loading

def load_pipeline(model: str, device: torch.device | str = "cpu", dtype: str = "auto", scheduler: str = "default"):
    """A text-to-image diffusers pipeline on ``device``, progress bar off; nothing is downloaded."""
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import is_accelerate_available

    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype, device)
    check_scheduler(scheduler)
    folder, _ = locate_model(model)
    source = str(folder) if folder is not None else model
    try:
        with without_loading_bars(), expected_warnings() if model == WORLD_MODEL else contextlib.nullcontext():
            pipe = AutoPipelineForText2Image.from_pretrained(
                source, **{_dtype_keyword(): torch_dtype}, local_files_only=True,
                low_cpu_mem_usage=is_accelerate_available())  # without accelerate, asking for it only warns
    except (OSError, ValueError) as err:
        raise MissingFile(f"could not load Stable Diffusion model {model!r} from {source!r} without network "
                          f"({type(err).__name__}: {err}). If files are missing, run `hf download {model}` "
                          "on a machine with network, or pass a complete local diffusers folder") from err
    if SCHEDULERS[scheduler] is not None:
        import diffusers

        pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _dtype_keyword() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (2026) and warns on the old name; older releases know only it."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def default_resolution(pipe) -> int:
    """The side the checkpoint was trained at: UNet sample size x VAE scale factor (512 for SD 1.x)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
