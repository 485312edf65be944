"""A text-to-image model of the offline world, in the Stable Diffusion format, trained once and shipped.

    pipe = load_pipeline("world-offline", device)     # the shipped weights, through from_pretrained
    pipe("red circle, ellipse inside grey noise", guidance_scale=2.0).images[0]

It is a ``StableDiffusionPipeline`` like any other: a CLIP tokenizer and text encoder, a conditional UNet, a
VAE and a scheduler, saved with ``save_pretrained`` and loaded by the same ``from_pretrained`` call as a real
checkpoint, so everything 01 does with Stable Diffusion (prompt strategies, guidance, manifests) it does here.
What differs is the scale:

- **tokenizer**: a CLIP byte-level BPE vocabulary in which every word the world's prompts use is one token
  (names, WordNet hypernyms and definitions of the shapes, colours, backgrounds), so no word leaks into
  another (the tiny pipeline's vocabulary splits "checkered" into pieces ending in "red");
- **text encoder**: a 2-layer CLIP text transformer, trained with the UNet;
- **UNet**: pixel space (32x32x3), three resolutions; the prompt reaches it twice: pooled and added to the
  time embedding (``addition_embed_type="text"``; it scales and shifts every residual block), and by
  cross-attention at the lowest resolution;
- **VAE**: the identity, written as diffusers' ``AutoencoderTiny`` with no blocks and a spatial factor of 1:
  the decoder is two 3x3 convolutions around a ReLU, and ReLU(z) - ReLU(-z) = z makes it exact; its one
  nonlinearity, the clamp tanh(z / 3) * 3, sees the latents divided by ``vae_scale`` and is linear to 1e-6 there;
- **scheduler**: v-prediction on a cosine schedule, sampled with DPM-Solver++.

Training (``train_world_model``; ``tools/train_world_model.py`` is the one command) renders fresh world images
every step and captions each with one of the four prompt strategies, its true background in the fourth, or
with the empty prompt (``caption_dropout``) so that classifier-free guidance has an unconditional model. Loss:
v-prediction MSE with min-SNR weighting, plus (``text_aux_weight``) a linear probe's cross-entropy of the shape
and colour from the mean token embedding, a training-only head that pulls the prompts of different shapes apart
from the first steps: the denoising loss alone separates colours (large pixel errors) long before shapes
(their outlines are few pixels). The saved weights are an exponential moving average. Each step's
images, captions, noise and timesteps come from (seed, step), so a run killed and restarted from its last
checkpoint ends with the same weights as one that was not.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import MissingFile
from ..core.files import atomic_folder, atomic_write, save_json
from ..core.training import NonFiniteLoss, set_lr
from ..data import world
from .prompts import BACKGROUND_PHRASES, STRATEGIES, prompt_class, prompt_strategy, world_class_id, world_shapes
from .tiny import save_pipeline, write_clip_tokenizer_files

WORLD_MODEL = "world-offline"
TRAINING_FILE = "training.json"  # beside model_index.json: the configuration and the figures of the run
# Everything that decides the shipped weights: the architecture, the schedule, the training recipe and its seed.
WORLD_MODEL_CONFIG = {
    "format": 1,
    "seed": 0,
    "text_width": 64,
    "text_layers": 2,
    "text_heads": 4,
    "max_tokens": 40,  # the longest world prompt is 32 tokens, start and end included
    "unet_channels": [16, 32, 64],
    "layers_per_block": 1,
    "norm_groups": 8,
    "attention_heads": 4,
    "vae_scale": 100.0,
    "train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "steps": 6000,
    "batch_size": 32,
    "lr": 1e-3,
    "warmup_steps": 200,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    "min_snr_gamma": 5.0,
    "caption_dropout": 0.1,
    "text_aux_weight": 0.1,
}
TEMPLATE_WORDS = "a an the photo picture image of in inside on with kind type shape"  # common template words, whole


def world_model_path() -> Path:
    """The shipped model: a diffusers folder inside the package (``tools/train_world_model.py`` writes it)."""
    return Path(str(resources.files("workbench.generation").joinpath("assets", WORLD_MODEL)))


@contextlib.contextmanager
def expected_warnings():
    """diffusers' two warnings on loading the world model are expected: ``AutoencoderTiny`` records a config key
    (``block_out_channels``) that it then calls unexpected, and a Stable Diffusion pipeline names ``AutoencoderKL``
    as its VAE's type. Errors still show."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def check_world_model(folder: Path | None = None) -> Path:
    folder = folder or world_model_path()
    if not (folder / "model_index.json").is_file():
        raise MissingFile(f"the world model is missing from {folder}: reinstall the workbench, or train it "
                          "again with `python tools/train_world_model.py` (about half an hour on 2 CPU cores)")
    return folder


# ----------------------------------------------------------------------------- the vocabulary and captions

def world_vocabulary_text() -> str:
    """Every word a world prompt can hold: colours, shape names and lemmas, hypernyms, definitions, backgrounds."""
    parts = list(world.COLOURS) + list(BACKGROUND_PHRASES.values()) + [TEMPLATE_WORDS]
    for shape, info in world_shapes().items():
        parts += [shape.replace("_", " "), *info["names"], *info["hypernym_names"][:1], info["definition"]]
    return "\n".join(parts)


def captions(shapes, colours, backgrounds, rng: np.random.Generator, dropout: float) -> list[str]:
    """One training caption per image: a prompt strategy drawn at random (its true background where it has one),
    or the empty prompt with probability ``dropout`` (the unconditional model of classifier-free guidance)."""
    keys = list(STRATEGIES)
    out = []
    for shape, colour, background in zip(shapes, colours, backgrounds):
        if rng.random() < dropout:
            out.append("")
            continue
        info = prompt_class(world_class_id(shape, colour))
        out.append(prompt_strategy(keys[rng.integers(len(keys))]).fill(info, BACKGROUND_PHRASES[background]))
    return out


# ----------------------------------------------------------------------------- the pipeline's parts

def identity_vae(scale: float):
    """diffusers' ``AutoencoderTiny`` with no blocks, set to the identity: latents = image / ``scale``.

    Decoder: tanh(z / 3) * 3 (~z: |z| <= 1 / scale), a 3x3 convolution to (scale z, -scale z), ReLU, a 3x3
    convolution taking the difference to (x + 1) / 2, then diffusers' 2 y - 1. Encoder: the inverse, linear."""
    from diffusers import AutoencoderTiny

    vae = AutoencoderTiny(in_channels=3, out_channels=3, encoder_block_out_channels=(6,),
                          decoder_block_out_channels=(6,), num_encoder_blocks=(0,), num_decoder_blocks=(0,),
                          latent_channels=3, upsampling_scaling_factor=1, scaling_factor=scale, act_fn="relu")
    enc_in, enc_out = vae.encoder.layers[0], vae.encoder.layers[1]
    dec_in, dec_out = vae.decoder.layers[0], vae.decoder.layers[2]
    with torch.no_grad():
        for conv in (enc_in, enc_out, dec_in, dec_out):
            conv.weight.zero_()
            conv.bias.zero_()
        for c in range(3):
            enc_in.weight[c, c, 1, 1] = 1.0  # u = (x + 1) / 2, as diffusers hands it over
            enc_out.weight[c, c, 1, 1] = 2.0 / scale  # z = (2 u - 1) / scale = x / scale
            enc_out.bias[c] = -1.0 / scale
            dec_in.weight[c, c, 1, 1] = scale  # x, then -x: ReLU keeps both halves
            dec_in.weight[3 + c, c, 1, 1] = -scale
            dec_out.weight[c, c, 1, 1] = 0.5  # (ReLU(x) - ReLU(-x)) / 2 + 1/2 = (x + 1) / 2
            dec_out.weight[c, 3 + c, 1, 1] = -0.5
            dec_out.bias[c] = 0.5
    return vae


def write_world_tokenizer(folder: Path) -> None:
    """The world tokenizer's source files (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``) in ``folder``."""
    text = world_vocabulary_text()
    write_clip_tokenizer_files(folder, text, n_words=len(set(re.findall(r"[a-z]+", text.lower()))))


def build_world_pipeline(config: dict = WORLD_MODEL_CONFIG):
    """The untrained pipeline of ``config``: the same modules (and tokenizer) the trained one is saved with."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_world_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=config["max_tokens"])
    torch.manual_seed(config["seed"])  # the same initial weights on every machine
    width = config["text_width"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width,
        num_hidden_layers=config["text_layers"], num_attention_heads=config["text_heads"],
        max_position_embeddings=config["max_tokens"], projection_dim=width, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    channels = tuple(config["unet_channels"])
    n = len(channels)
    unet = UNet2DConditionModel(
        sample_size=world.WorldConfig().image_size, in_channels=3, out_channels=3,
        layers_per_block=config["layers_per_block"], block_out_channels=channels,
        down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=width,
        attention_head_dim=config["attention_heads"], norm_num_groups=config["norm_groups"],
        addition_embed_type="text", addition_embed_type_num_heads=config["text_heads"],
        resnet_time_scale_shift="scale_shift")
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=config["train_timesteps"], beta_schedule=config["beta_schedule"],
        prediction_type=config["prediction_type"], timestep_spacing="trailing", steps_offset=1)
    return StableDiffusionPipeline(vae=identity_vae(config["vae_scale"]), text_encoder=text_encoder,
                                   tokenizer=tokenizer, unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def encode_prompts(pipe, prompts: list[str], device) -> torch.Tensor:
    """Token embeddings exactly as ``StableDiffusionPipeline.encode_prompt`` computes them (no attention mask)."""
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    return pipe.text_encoder(ids.to(device))[0]


# ----------------------------------------------------------------------------- training

def _checkpoint_state(pipe, aux_head, ema, opt, step: int, history: list) -> dict:
    return {"unet": pipe.unet.state_dict(), "text_encoder": pipe.text_encoder.state_dict(),
            "aux_head": aux_head.state_dict(), "ema": ema, "optimizer": opt.state_dict(), "step": step,
            "history": history}


def train_world_model(out_dir, config: dict = WORLD_MODEL_CONFIG, device="cpu", log: Callable[[str], None] = print,
                      evaluate: Callable | None = None, eval_every: int = 1000, checkpoint_every: int = 250):
    """Train the world model of ``config`` and save it (EMA weights) as a diffusers folder at ``out_dir``.

    ``evaluate(pipe, step) -> dict`` (e.g. fidelity of a few sampled images) runs every ``eval_every`` steps
    on the EMA weights and at the end; its records go to ``training.json``. A checkpoint every
    ``checkpoint_every`` steps (``<out_dir>.checkpoint.pt``) lets a killed run resume where it stopped."""
    from diffusers import DDPMScheduler

    out = Path(out_dir)
    device = torch.device(device)
    pipe = build_world_pipeline(config)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    unet, text_encoder = pipe.unet.train(), pipe.text_encoder.train()
    params = [p for m in (unet, text_encoder) for p in m.parameters()]
    names = [f"{m}.{n}" for m, mod in (("unet", unet), ("text_encoder", text_encoder)) for n, _ in
             mod.named_parameters()]
    aux_head = torch.nn.Linear(config["text_width"], len(world.SHAPES) + len(world.COLOURS)).to(device)
    opt = torch.optim.AdamW(params + list(aux_head.parameters()), lr=config["lr"],
                            weight_decay=config["weight_decay"])
    ema = {n: p.detach().clone() for n, p in zip(names, params)}
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = noise_schedule.alphas_cumprod.to(device)
    history: list[dict] = []
    start = 0
    ckpt = out.with_name(out.name + ".checkpoint.pt")
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        aux_head.load_state_dict(state["aux_head"])
        ema, start, history = state["ema"], state["step"], state["history"]
        opt.load_state_dict(state["optimizer"])
        log(f"resumed from step {start} ({ckpt})")
    n_params = {m: sum(p.numel() for p in mod.parameters()) for m, mod in (("unet", unet), ("text", text_encoder))}
    log(f"world model: UNet {n_params['unet'] / 1e6:.2f}M, text encoder {n_params['text'] / 1e6:.2f}M parameters; "
        f"{config['steps']} steps of {config['batch_size']} images on {device}")

    def evaluate_ema(step: int) -> None:
        if evaluate is None:
            return
        live = {n: p.detach().clone() for n, p in zip(names, params)}
        _copy_into(params, names, ema)
        unet.eval(), text_encoder.eval()
        record = {"step": step, **evaluate(pipe, step)}
        _copy_into(params, names, live)
        unet.train(), text_encoder.train()
        history.append(record)
        log(f"  step {step}: " + ", ".join(f"{k} {v}" for k, v in record.items() if k != "step"))

    steps, t0, losses = config["steps"], time.time(), []
    world_cfg = world.WorldConfig()
    for step in range(start, steps):
        # this step's images, captions, noise and timesteps: functions of (seed, step) alone
        images, labels = world.render(world_cfg, config["batch_size"], seed=[70_000, config["seed"], step])
        rng = np.random.default_rng([71_000, config["seed"], step])
        texts = captions([world.SHAPES[i] for i in labels["shape"]], [world.COLOURS[i] for i in labels["colour"]],
                         [world_cfg.backgrounds[i] for i in labels["background"]], rng, config["caption_dropout"])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        x0 = (images.float() / 127.5 - 1).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, config["train_timesteps"], (len(x0),), generator=gen).to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = a.sqrt() * noise - (1 - a).sqrt() * x0  # v
        lr = config["lr"] * min(1.0, (step + 1) / config["warmup_steps"])
        lr *= 0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1  # cosine to a tenth
        set_lr(opt, lr)

        tokens = encode_prompts(pipe, texts, device)
        pred = unet(noisy, t, encoder_hidden_states=tokens).sample
        snr = (a / (1 - a)).view(-1)
        weight = snr.clamp(max=config["min_snr_gamma"]) / (snr + 1)  # min-SNR-gamma, for v-prediction
        loss = (weight * F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))).mean()
        captioned = torch.tensor([bool(c) for c in texts], device=device)
        if captioned.any():
            logits = aux_head(tokens[captioned].mean(1))
            n_shapes = len(world.SHAPES)
            loss = loss + config["text_aux_weight"] * (
                F.cross_entropy(logits[:, :n_shapes], labels["shape"].to(device)[captioned])
                + F.cross_entropy(logits[:, n_shapes:], labels["colour"].to(device)[captioned]))
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite loss at step {step}; lower lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config["grad_clip"])
        opt.step()
        decay = min(config["ema_decay"], (1 + step) / (10 + step))
        with torch.no_grad():
            for n, p in zip(names, params):
                ema[n].lerp_(p.detach(), 1 - decay)
        losses.append(loss.item())

        done = step + 1
        if done % 50 == 0 or done == steps:
            log(f"step {done}/{steps}: loss {np.mean(losses[-50:]):.4f}, lr {lr:.2e} ({time.time() - t0:.0f}s)")
        if done % eval_every == 0 and done < steps:
            evaluate_ema(done)
        if done % checkpoint_every == 0 and done < steps:
            state = _checkpoint_state(pipe, aux_head, ema, opt, done, history)
            atomic_write(ckpt, lambda tmp, state=state: torch.save(state, tmp))  # a kill mid-save keeps the last one

    _copy_into(params, names, ema)
    unet.eval(), text_encoder.eval()
    if evaluate is not None:
        final = {"step": steps, **evaluate(pipe, steps)}
        history.append(final)
        log("  final: " + ", ".join(f"{k} {v}" for k, v in final.items() if k != "step"))
    save_world_model(pipe.to("cpu"), out, config, {"seconds": round(time.time() - t0, 1), "start_step": start,
                                                   "final_loss": round(float(np.mean(losses[-200:])), 5)
                                                   if losses else None, "history": history,
                                                   "versions": _versions(), "threads": torch.get_num_threads()})
    ckpt.unlink(missing_ok=True)
    return pipe


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def _copy_into(params, names, values: dict) -> None:
    with torch.no_grad():
        for n, p in zip(names, params):
            p.copy_(values[n])


def save_world_model(pipe, out_dir, config: dict, record: dict) -> Path:
    """``save_pretrained`` into ``out_dir`` (replaced whole, atomically), the tokenizer's source files beside
    what transformers writes, and ``training.json``: the configuration, the run's figures, each file's hash."""
    out = Path(out_dir)
    with atomic_folder(out) as tmp:
        with tempfile.TemporaryDirectory() as sources:
            write_world_tokenizer(Path(sources))
            save_pipeline(pipe, tmp, Path(sources))
        save_json({"about": "the offline world's text-to-image model (workbench.generation.world_model); written "
                            "by tools/train_world_model.py", "config": config, **record,
                   "files": file_hashes(tmp)}, tmp / TRAINING_FILE)
    return out


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of a saved model but ``training.json``: what ties the weights to their record."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != TRAINING_FILE}


def training_record(folder: Path | None = None) -> dict:
    """The shipped model's ``training.json``: its configuration, the run's figures, every file's hash."""
    return json.loads((check_world_model(folder) / TRAINING_FILE).read_text())


def world_model_revision(folder: Path | None = None) -> str:
    """The world model's revision, as manifests record it: the first 12 hex digits of its UNet weights' sha256."""
    return training_record(folder)["files"]["unet/diffusion_pytorch_model.safetensors"][:12]
