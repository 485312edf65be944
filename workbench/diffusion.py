"""Stable Diffusion pipelines: a real checkpoint from the local Hugging Face cache, or a tiny offline one.

    pipe = load_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5", device)  # from the local HF cache
    pipe = load_pipeline("/models/sd-2-base", device, dtype="fp16")             # a diffusers folder
    pipe = load_pipeline("tiny-offline", device)                                 # built here, random weights

Nothing is downloaded: a hub id must already be in the Hugging Face cache (``local_files_only``), and
a missing one fails at once with the command that fetches it. The tiny pipeline is built from
configs the first time (UNet, VAE, CLIP text encoder, and a CLIP tokenizer whose vocabulary and
merges are written here), saved with ``save_pretrained`` under ``$WORKBENCH_CACHE/models`` and then
loaded through the very same ``from_pretrained`` call as a real checkpoint. Its images are noise:
it exercises the machinery, nothing more.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import torch

from .io import cache_dir, config_hash

TINY_MODEL = "tiny-offline"
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

# The tiny pipeline keeps Stable Diffusion's shapes where they matter to the code around it: 4 latent
# channels, a VAE that downsamples 8x, a 77-token CLIP text encoder feeding cross-attention.
TINY_CONFIG = {
    "format": 1,  # bump when the build below changes, so old cached copies are not reused
    "sample_size": 8,  # latent side: 64 px images by default
    "unet_channels": [32, 64],
    "vae_channels": [16, 16, 32, 32],
    "text_width": 32,
    "text_layers": 2,
    "vocab_words": 2000,
    "seed": 0,
}


# ----------------------------------------------------------------------------- checks (no diffusers import)

def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is fp16 on CUDA and fp32 elsewhere; fp16 needs CUDA (CPU kernels are missing or slow)."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {list(DTYPES)}, got {dtype!r}")
    if dtype == "fp16" and device.type != "cuda":
        raise ValueError("dtype='fp16' needs a CUDA device; use 'fp32' (or 'bf16') on CPU")
    return DTYPES[dtype]


def check_scheduler(name: str) -> str:
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {list(SCHEDULERS)}, got {name!r}")
    return name


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (or anything that exists on disk) is a path."""
    return (model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
            or Path(model).expanduser().exists())


def locate_model(model: str) -> tuple[Path | None, str | None]:
    """Where a model's files are: ``(folder, revision)``; raises at once, naming the model, when absent.

    ``tiny-offline`` is built on first use; a path must be a diffusers folder (``model_index.json``);
    anything else is a Hugging Face id that must be in the local cache: for one, the folder is ``None``
    (diffusers finds the files in the cache itself) and the revision is the cached snapshot's commit.
    """
    if model == TINY_MODEL:
        folder = tiny_pipeline_path()
        return folder, folder.name
    if _looks_like_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder {model!r} does not exist. Pass a diffusers pipeline folder "
                                    f"(with model_index.json), a Hugging Face id such as {DEFAULT_MODEL!r}, "
                                    f"or {TINY_MODEL!r} for the offline test pipeline")
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(f"model folder {model!r} has no model_index.json: not a diffusers pipeline "
                                    "(save one with pipeline.save_pretrained(folder))")
        return folder, None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    index = try_to_load_from_cache(model, "model_index.json")
    if not isinstance(index, str):
        raise FileNotFoundError(
            f"Stable Diffusion model {model!r} is not in the local Hugging Face cache ({HF_HUB_CACHE}) and "
            f"nothing is downloaded here. On a machine with network run `hf download {model}` (older "
            f"huggingface_hub: `huggingface-cli download {model}`) and copy the cache here (or set HF_HOME "
            f"to it), or pass the path of a local diffusers folder as the model. For an offline test of the "
            f"machinery use model={TINY_MODEL!r}.")
    return None, Path(index).parent.name  # .../snapshots/<commit>/model_index.json


def check_model(model: str) -> str:
    """Fail at once, naming the model and how to get it, when a checkpoint is not on this machine.
    (The tiny pipeline is always available: it is built on first use.)"""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a Hugging Face id, a diffusers folder or {TINY_MODEL!r}, got {model!r}")
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
        with _no_loading_bars():
            pipe = AutoPipelineForText2Image.from_pretrained(source, **{_dtype_keyword(): torch_dtype},
                                                             local_files_only=True,
                                                             low_cpu_mem_usage=is_accelerate_available())  # else a warning
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"could not load Stable Diffusion model {model!r} from {source!r} without network "
                                f"({type(err).__name__}: {err}). If files are missing, run `hf download {model}` "
                                "on a machine with network, or pass a complete local diffusers folder") from err
    if SCHEDULERS[scheduler] is not None:
        import diffusers

        pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@contextlib.contextmanager
def _no_loading_bars():
    """diffusers' and transformers' loading/saving progress bars off: one-off bars that clutter headless logs."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    was = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was[0]:
            diffusers_logging.enable_progress_bar()
        if was[1]:
            transformers_logging.enable_progress_bar()


def _dtype_keyword() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (2026) and warns on the old name; older releases know only it."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def default_resolution(pipe) -> int:
    """The side the checkpoint was trained at: UNet sample size x VAE scale factor (512 for SD 1.x)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


# ----------------------------------------------------------------------------- the tiny offline pipeline

def tiny_pipeline_path() -> Path:
    """The tiny pipeline's folder under ``$WORKBENCH_CACHE/models``, built (once, atomically) if absent."""
    root = cache_dir("models")
    folder = root / f"tiny-sd-{config_hash(TINY_CONFIG)}"
    if (folder / "model_index.json").is_file():
        return folder
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}."))
    try:
        build_tiny_pipeline(tmp)
        try:
            os.rename(tmp, folder)  # atomic: readers see no folder or a complete one
        except OSError:
            if not (folder / "model_index.json").is_file():  # not a lost race with another process
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build_tiny_pipeline(folder: Path, config: dict = TINY_CONFIG) -> None:
    """Build a Stable Diffusion pipeline with random weights from configs and ``save_pretrained`` it."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    tok_dir = folder / "tokenizer-files"
    write_clip_tokenizer_files(tok_dir, tiny_vocabulary_text(), config["vocab_words"])
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(config["seed"])  # same weights on every machine
    width = config["text_width"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=config["text_layers"],
        num_attention_heads=4, max_position_embeddings=77, projection_dim=width,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(
        sample_size=config["sample_size"], in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=tuple(config["unet_channels"]),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=width, attention_head_dim=8, norm_num_groups=8)
    n = len(config["vae_channels"])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=tuple(config["vae_channels"]), down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, sample_size=config["sample_size"] * 2 ** (n - 1))
    # SD 1.x's scheduler settings
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    with _no_loading_bars():
        pipe.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):  # keep the source files next to what transformers saved, as in SD repos
        shutil.copy(tok_dir / name, folder / "tokenizer" / name)
    shutil.rmtree(tok_dir)


def tiny_vocabulary_text() -> str:
    """The words the tiny tokenizer learns whole: everything the prompt strategies can say."""
    from .imagenet import metadata, places365

    meta = metadata()
    parts = [" ".join(c["names"]) + " " + c["definition"] for c in meta["classes"].values()]
    parts += [" ".join(names) for names in meta["synsets"].values()]
    parts += list(places365())
    parts.append("a photo of the an in inside on with kind type")
    return "\n".join(parts)


def write_clip_tokenizer_files(folder: Path, text: str, n_words: int) -> None:
    """A CLIP byte-level BPE vocabulary (``vocab.json``, ``merges.txt``) in which the ``n_words`` most
    frequent words of ``text`` are single tokens; every other word falls back to characters."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    ranks: dict[tuple[str, str], int] = {}
    words = Counter(re.findall(r"[a-z]+", text.lower()))
    for word, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:n_words]:
        # Tokenize with the merges so far, then append merges joining the pieces left to right. Appended
        # merges rank last, so they never change how an earlier word tokenizes: each word ends as one token.
        pieces = _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        left = pieces[0]
        for right in pieces[1:]:
            ranks.setdefault((left, right), len(ranks))
            left += right
            vocab.setdefault(left, len(vocab))
    merges = sorted(ranks, key=ranks.get)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word as CLIP applies it: merge the best-ranked adjacent pair until none is known."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols
