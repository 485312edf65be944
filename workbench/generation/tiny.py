"""The tiny offline Stable Diffusion pipeline: random weights, built from configs, loaded like a real one.

It keeps Stable Diffusion's shapes where they matter to the code around it and is built the first
time (UNet, VAE, CLIP text encoder, and a CLIP tokenizer whose vocabulary and merges are written
here), saved with ``save_pretrained`` under ``$WORKBENCH_CACHE/models`` and then loaded through the
very same ``from_pretrained`` call as a real checkpoint. Its images are noise: it exercises the
machinery, nothing more.
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

from ..core.files import cache_dir, config_hash
from ..data.imagenet import metadata, places365

TINY_MODEL = "tiny-offline"
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


@contextlib.contextmanager
def without_loading_bars():
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
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
        num_hidden_layers=config["text_layers"],
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
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    save_pipeline(pipe, folder, tok_dir)
    shutil.rmtree(tok_dir)


def save_pipeline(pipe, folder: Path, tokenizer_sources: Path) -> None:
    """``save_pretrained`` into ``folder``, with the tokenizer's BPE source files (``vocab.json``, ``merges.txt`` in
    ``tokenizer_sources``) beside what transformers writes: SD repos ship them, and slow tokenizers read them."""
    with without_loading_bars():
        pipe.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(Path(tokenizer_sources) / name, Path(folder) / "tokenizer" / name)


def tiny_vocabulary_text() -> str:
    """The words the tiny tokenizer learns whole: everything the prompt strategies can say."""
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
