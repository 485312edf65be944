"""Pretrained weights from outside the workbench: the local Hugging Face cache and checkpoint files.

Nothing is downloaded. A timm model's weights come from the local Hugging Face cache, or fail at once
with the command that fetches them. A checkpoint file is read safely (``load_weights``: tensors and
plain containers only, never code), and its weights are found inside it by ``unwrap_state_dict``,
whatever the training script wrapped them in (timm, DINO, iBOT, dBOT, ...).
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import timm
import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models import clean_state_dict

# Where training scripts keep the weights, in timm's order of preference (EMA weights first).
STATE_DICT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


class UnsafeCheckpoint(ValueError):
    """A pickle-based checkpoint that needs more than tensors to load (it could run code): refused."""


def load_weights(path, map_location: str | torch.device = "cpu"):
    """Weights from a file someone else made: safetensors, or a pickle-based file (.pth, .pt, .bin, .ckpt)
    read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.

    A pickle that asks for anything else (a class, a function: the way a malicious file runs code on load)
    is refused with ``UnsafeCheckpoint``; nothing of it is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):  # 8-byte header length, then JSON
        try:
            return load_file(str(path), device=str(map_location))
        except SafetensorError as err:
            raise ValueError(f"{str(path)!r} is not a readable safetensors file ({err})") from None
    try:
        # argparse.Namespace: training scripts (timm, DINO, iBOT) store their arguments; it only holds values
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise ValueError(f"{str(path)!r} is not a readable checkpoint ({err})") from None
        reason = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), "")
        raise UnsafeCheckpoint(
            f"refusing to load {str(path)!r}: it is a pickle that needs more than tensors to load, so loading it "
            f"could run code{f' ({reason})' if reason else ''}. If you trust its origin, convert it once to "
            "safetensors on a trusted machine (torch.load(..., weights_only=False), then "
            "safetensors.torch.save_file(state_dict, 'weights.safetensors')) and pass that file instead."
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError) as err:  # truncated zip, not a checkpoint at all
        raise ValueError(f"{str(path)!r} is not a readable checkpoint ({type(err).__name__}: {err})") from None


def unwrap_state_dict(checkpoint, keys=STATE_DICT_KEYS, prefixes: tuple[str, ...] = (),
                      drop: tuple[str, ...] = ()) -> dict:
    """The weights inside a training checkpoint: the first of ``keys`` that holds a dict (else the checkpoint
    itself), with ``prefixes`` stripped from every name in turn (``module.backbone.x`` -> ``x``) and the
    entries whose name then starts with one of ``drop`` left out (heads, decoders, mask tokens)."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a state dict (name -> tensor) in the checkpoint, got a {type(checkpoint).__name__}")
    for key in keys:
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state = {}
    for name, value in checkpoint.items():
        for prefix in prefixes:
            name = name[len(prefix):] if name.startswith(prefix) else name
        if not (drop and name.startswith(drop)):
            state[name] = value
    return state


def create_timm_model(timm_name: str, pretrained: bool, **kwargs) -> nn.Module:
    """``timm.create_model`` without a head, weights from the local Hugging Face cache, and a clear error
    (the command that fetches them) when they are not there."""
    try:
        return timm.create_model(timm_name, pretrained=pretrained, num_classes=0, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:
        if pretrained and _looks_offline(err):
            raise FileNotFoundError(
                f"weights for {timm_name!r} are not in the local Hugging Face cache and cannot be downloaded "
                f"here. On a machine with network run `python -c \"import timm; timm.create_model('{timm_name}', "
                f"pretrained=True)\"` (or huggingface-cli download) and copy the cache (HF_HOME), or pass a "
                f"checkpoint file. ({type(err).__name__}: {err})"
            ) from err
        raise


def load_timm_checkpoint(model: nn.Module, path, name: str) -> None:
    """Load a timm-format checkpoint (safetensors, or a pickle read safely) into ``model``; heads are ignored."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} for teacher {name!r} does not exist")
    state = unwrap_state_dict(load_weights(path))
    result = model.load_state_dict(clean_state_dict(state), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("head", "fc."))]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} does not fit {name!r}: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")


def _looks_offline(err: Exception) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return any(s in text for s in ("offline", "connect", "resolve", "not found", "no such file", "cache", "hub"))
