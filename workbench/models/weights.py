"""Pretrained weights from outside the workbench: the local Hugging Face cache and checkpoint files.

Nothing is downloaded. A timm model's weights come from the local Hugging Face cache (looked up there
first: a missing file fails at once, with the command that fetches it, instead of waiting for network
retries), or from a checkpoint file. A file is read safely (``load_weights``: tensors and plain
containers only, never code), and its weights are taken out of it as its authors saved them:

    dino    DINO (facebookresearch/dino): a backbone file, or a training checkpoint (``teacher`` /
            ``student``, ``module.`` and ``backbone.`` prefixes, a projection head to leave out)
    ibot    iBOT (bytedance/ibot): ``checkpoint_teacher.pth`` (``state_dict``) or the full checkpoint,
            as DINO, with a ``masked_embed`` token to leave out
    dbot    dBOT fine-tuned (liuxingbin/dbot): ``model``, global-pool ``fc_norm``, a classifier head
    deit3   DeiT III (facebookresearch/deit): ``model``, layer scale as ``gamma_1``/``gamma_2``, a position
            embedding without the class token: timm's own checkpoint filter maps them
    unic    UNIC (naver/unic): ``model`` holds ``module.encoder.*`` (a DINOv2-style ViT, its blocks in one
            chunk) and ``module.lp.*`` (the ladder), beside ``teacher_ft_stats`` and ``args`` (whose numpy
            arrays are skipped, not loaded)
    timm    any timm-family file: the usual wrappers (EMA first), then timm's checkpoint filter

Every format ends in timm's checkpoint filter for Vision Transformers, which also resamples position
embeddings to the model's grid.

``checkpoint_kind`` says what a file's layout shows of where it comes from (for ``create_teacher`` under a timm
architecture name, which must not guess a release's preprocessing): the release, where the layout is that
release's alone; the formats whose reader takes it; whether it carries timm's own marks.
"""
from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
import torch.nn as nn
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.constants import HF_HUB_CACHE
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from timm.models import clean_state_dict
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as vit_checkpoint_filter

from ..core.errors import MissingFile, UnsafeCheckpoint, WeightsError

# Where training scripts keep the weights, in timm's order of preference (EMA weights first).
STATE_DICT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
HEADS = ("head.", "fc.")  # classifier heads: never part of an encoder

# How each release stores its weights: the keys that may hold them (first found wins), the prefixes to
# strip, the entries to leave out, and (unic) the part of the model to keep.
CHECKPOINT_FORMATS = {
    "timm": {"keys": STATE_DICT_KEYS, "prefixes": ("module.",), "drop": HEADS},
    "dino": {"keys": ("teacher", "state_dict", "model"), "prefixes": ("module.", "backbone."), "drop": HEADS},
    "ibot": {"keys": ("state_dict", "teacher", "model"), "prefixes": ("module.", "backbone."),
             "drop": HEADS + ("masked_embed",)},
    "dbot": {"keys": ("model", "state_dict"), "prefixes": ("module.",), "drop": HEADS},
    "deit3": {"keys": ("model", "state_dict"), "prefixes": ("module.",), "drop": HEADS},
    "unic": {"keys": ("model",), "prefixes": ("module.",), "drop": ("mask_token",), "keep": "encoder."},
}
HF_WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin",
                   "open_clip_pytorch_model.bin")


# ----------------------------------------------------------------------------- reading a file safely

class SkippedValue:
    """Stands in for a numpy array, scalar or dtype in a checkpoint's metadata (``args``): not loaded."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self) -> str:
        return "<numpy value skipped>"


class _MetadataUnpickler(pickle.Unpickler):
    """torch.load's pickle with a closed list of what it may build: what ``weights_only`` allows, training
    arguments (``argparse.Namespace``), and numpy values, which become ``SkippedValue``. Anything else (a
    function, a class: how a malicious file runs code) is refused, so nothing of the file runs."""

    def find_class(self, module: str, name: str):
        allowed = torch._weights_only_unpickler._get_allowed_globals()
        if f"{module}.{name}" in allowed:
            return allowed[f"{module}.{name}"]
        if (module, name) == ("argparse", "Namespace"):
            return argparse.Namespace
        if module == "numpy" or module.startswith("numpy."):
            return SkippedValue
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name} is not allowed")


class _MetadataPickle:
    """A pickle module for ``torch.load`` whose unpickler is ``_MetadataUnpickler``."""

    Unpickler = _MetadataUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file, **kwargs):
        return _MetadataUnpickler(file, **kwargs).load()


def load_weights(path, map_location: str | torch.device = "cpu", mmap: bool = False):
    """Weights from a file someone else made: safetensors, or a pickle-based file (.pth, .pt, .bin, .ckpt)
    read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.

    A training checkpoint's numpy values (UNIC's ``args`` hold its schedules as arrays) are skipped
    (``SkippedValue``); a pickle that asks for anything else (a class, a function: the way a malicious file
    runs code on load) is refused with ``UnsafeCheckpoint``, and nothing of it is executed.

    ``mmap``: a pickle-based file's tensors are mapped, not read (``torch.load(mmap=True)``; files torch saved
    in its zip format, as every torch since 1.6 does), for a look at its layout that costs no reading.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"checkpoint {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):  # 8-byte header length, then JSON
        try:
            return load_file(str(path), device=str(map_location))
        except SafetensorError as err:
            raise WeightsError(f"{str(path)!r} is not a readable safetensors file ({err})") from None
    try:
        # argparse.Namespace: training scripts (timm, DINO, iBOT) store their arguments; it only holds values
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise WeightsError(f"{str(path)!r} is not a readable checkpoint ({err})") from None
        if "numpy" in str(err):  # values of numpy in the metadata: read again, skipping them
            try:
                return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap,
                                  pickle_module=_MetadataPickle)
            except pickle.UnpicklingError as again:
                err = again
        reason = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), "")
        raise UnsafeCheckpoint(
            f"refusing to load {str(path)!r}: it is a pickle that needs more than tensors to load, so loading it "
            f"could run code{f' ({reason})' if reason else ''}. If you trust its origin, convert it once to "
            "safetensors on a trusted machine (torch.load(..., weights_only=False), then "
            "safetensors.torch.save_file(state_dict, 'weights.safetensors')) and pass that file instead."
        ) from None
    except Exception as err:  # noqa: BLE001  (a truncated zip, a text file: torch fails in many ways on those)
        raise WeightsError(f"{str(path)!r} is not a readable checkpoint ({type(err).__name__}: {err}); give the "
                           "weight file as its release ships it (.pth, .pt, .bin or .safetensors)") from err


# ----------------------------------------------------------------------------- the weights inside a checkpoint

def unwrap_state_dict(checkpoint, keys=STATE_DICT_KEYS, prefixes: tuple[str, ...] = (),
                      drop: tuple[str, ...] = (), keep: str = "") -> dict:
    """The weights inside a training checkpoint: the first of ``keys`` that holds a dict (else the checkpoint
    itself), with ``prefixes`` stripped from every name in turn (``module.backbone.x`` -> ``x``), only the
    entries under ``keep`` (a submodule, its prefix stripped too) and without those whose name starts with one
    of ``drop`` (heads, decoders, mask tokens)."""
    if not isinstance(checkpoint, dict):
        raise WeightsError("expected a state dict (name -> tensor) in the checkpoint, got a "
                           f"{type(checkpoint).__name__}")
    for key in keys:
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state = {}
    for name, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in prefixes:
            name = name[len(prefix):] if name.startswith(prefix) else name
        if keep:
            if not name.startswith(keep):
                continue
            name = name[len(keep):]
        if not (drop and name.startswith(drop)):
            state[name] = value
    return state


def unchunk_blocks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DINOv2-style ViTs keep their blocks in chunks (``blocks.<chunk>.<i>.``); timm numbers them flat
    (``blocks.<i>.``). The index inside a chunk is already the block's own, so the chunk number goes."""
    if not any(re.match(r"blocks\.\d+\.\d+\.", k) for k in state):
        return state
    return {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in state.items()}


def timm_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's own checkpoint filter for Vision Transformers: DeiT III's ``gamma_*`` to ``ls*.gamma``, DINOv2,
    OpenAI CLIP and OpenCLIP layouts, patch and position embeddings resampled to the model's grid."""
    state = clean_state_dict(state)
    if isinstance(model, VisionTransformer):
        state = vit_checkpoint_filter(state, model, adapt_layer_scale=True)
    return state


def load_checkpoint(model: nn.Module, path, fmt: str = "timm", name: str = "") -> dict:
    """Load the weights of a checkpoint file of format ``fmt`` (``CHECKPOINT_FORMATS``) into ``model``;
    returns the whole checkpoint (its other entries: UNIC's ladder and statistics, training arguments)."""
    if fmt not in CHECKPOINT_FORMATS:
        raise WeightsError(f"unknown checkpoint format {fmt!r}; known: {list(CHECKPOINT_FORMATS)}")
    if not Path(path).is_file():
        raise MissingFile(f"checkpoint {str(path)!r} for {name or 'the model'!r} does not exist")
    return load_into(model, load_weights(path), fmt, name, path)


def load_into(model: nn.Module, checkpoint, fmt: str, name: str = "", path="") -> dict:
    """``load_checkpoint`` for a checkpoint already read (``load_weights``)."""
    state = timm_state_dict(unchunk_blocks(unwrap_state_dict(checkpoint, **CHECKPOINT_FORMATS[fmt])), model)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(HEADS)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(HEADS)]
    if missing or unexpected:
        raise WeightsError(f"checkpoint {str(path)!r} does not fit {name or type(model).__name__!r} ({fmt} format): "
                           f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                           f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    return checkpoint if isinstance(checkpoint, dict) else {}


@contextmanager
def shapes_only() -> Iterator[None]:
    """Models built, and weight files loaded into them, on torch's ``meta`` device: shapes only, no memory and no
    compute, to see that a file fits a model before the run that loads it. Torch warns that each copy into a meta
    tensor does nothing, which is the point here: those warnings are silenced."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ----------------------------------------------------------------------------- where a file comes from

def peek_weights(path):
    """A file's layout at almost no cost: its names and shapes, without reading its tensors (safetensors: the
    header, as tensors on the ``meta`` device; a zip-format torch file: mapped, ``load_weights(mmap=True)``).
    None for an old-format (pre-zip) torch file, which only a full read can look into."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        except SafetensorError as err:
            raise WeightsError(f"{str(path)!r} is not a readable safetensors file ({err})") from None
    if not zipfile.is_zipfile(path):
        return None
    return load_weights(path, mmap=True)


@dataclass(frozen=True)
class CheckpointKind:
    """What a file's layout says of where it comes from: ``release``, the one release format
    (``CHECKPOINT_FORMATS``) whose layout it is, when the layout is that release's alone; ``readers``, the formats
    whose reader takes this layout; ``timm``, whether it carries timm's own marks (its ``train.py`` checkpoint);
    ``bare``, whether it is a bare state dict (names -> tensors, nothing around them); ``what``, in words."""

    release: str | None
    readers: tuple[str, ...]
    what: str
    timm: bool = False
    bare: bool = False


def _tensors(d) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, torch.Tensor)} if isinstance(d, dict) else {}


def checkpoint_kind(checkpoint) -> CheckpointKind:
    """The release a checkpoint's layout identifies, from its keys alone, only where no other release or tool
    saves that layout:

        unic    ``model`` holding ``module.encoder.*`` (UNIC(encoder, ladder) in DistributedDataParallel)
        ibot    ``teacher`` and ``student`` beside ``ibot_loss``, or the student's ``masked_embed``
        dino    ``teacher`` and ``student`` beside ``dino_loss``
        deit3   ``model`` whose blocks have ``gamma_1`` (layer scale) and whose position embedding leaves out the
                class token (a square number of positions): DeiT III's models_v2 (CaiT, the same repository's
                other layer-scale model, has ``blocks_token_only``)

    Layouts several releases share identify none: a bare backbone (DINO's and MAE's ``*_pretrain.pth``, iBOT's,
    a timm model's headless ``state_dict()``), ``state_dict`` alone (iBOT's ``checkpoint_teacher.pth``, Lightning,
    mmcv), ``model`` with ``fc_norm`` (dBOT's and MAE's fine-tuned), ``model`` otherwise (DeiT's, MAE's),
    ``teacher``/``student`` without the loss's state (DINO, iBOT and their descendants). timm's marks: its
    ``train.py`` checkpoint (``state_dict`` beside ``arch``, or ``state_dict_ema``)."""
    if not isinstance(checkpoint, dict):
        return CheckpointKind(None, (), f"a {type(checkpoint).__name__}, not a state dict")
    model = checkpoint.get("model")
    model = model if isinstance(model, dict) else None
    if model is not None and any(k.startswith("module.encoder.") for k in model):
        return CheckpointKind("unic", ("unic",), "UNIC's checkpoint (model: module.encoder.*)")
    teacher, student = checkpoint.get("teacher"), checkpoint.get("student")
    if isinstance(teacher, dict) and isinstance(student, dict):
        if "ibot_loss" in checkpoint or any(k.endswith("backbone.masked_embed") for k in student):
            return CheckpointKind("ibot", ("ibot",), "iBOT's training checkpoint (teacher, student, ibot_loss)")
        if "dino_loss" in checkpoint:
            return CheckpointKind("dino", ("dino",), "DINO's training checkpoint (teacher, student, dino_loss)")
        return CheckpointKind(None, ("dino", "ibot"), "a DINO-style training checkpoint (teacher, student)")
    if model is not None:
        state = {k.removeprefix("module."): v for k, v in _tensors(model).items()}
        pos = state.get("pos_embed")
        if (any(re.match(r"blocks\.\d+\.gamma_1$", k) for k in state) and pos is not None and pos.ndim == 3
                and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]
                and not any(k.startswith("blocks_token_only.") for k in state)):
            return CheckpointKind("deit3", ("deit3",), "DeiT III's checkpoint (model: gamma_1/gamma_2, a position "
                                                       "embedding without the class token)")
        if "fc_norm.weight" in state and "norm.weight" not in state:
            return CheckpointKind(None, ("dbot",), "an MAE-style fine-tuned checkpoint (model: fc_norm, global pool; "
                                                   "dBOT's, MAE's)")
        return CheckpointKind(None, ("timm", "deit3"), "weights under model (DeiT's, DeiT III's, MAE's layout)")
    if isinstance(checkpoint.get("state_dict_ema"), dict) or (
            isinstance(checkpoint.get("state_dict"), dict) and isinstance(checkpoint.get("arch"), str)):
        return CheckpointKind(None, ("timm",), "timm's training checkpoint (state_dict, arch)", timm=True)
    if isinstance(checkpoint.get("state_dict"), dict):
        if any(k.startswith(("backbone.", "module.backbone.")) for k in checkpoint["state_dict"]):
            return CheckpointKind(None, ("ibot", "dino"), "a DINO-style backbone under state_dict (backbone.*)")
        return CheckpointKind(None, ("ibot", "dino", "timm"), "weights under state_dict (iBOT's "
                                                              "checkpoint_teacher.pth, Lightning's, ...)")
    if _tensors(checkpoint) and len(_tensors(checkpoint)) == len(checkpoint):
        return CheckpointKind(None, ("timm", "dino", "ibot"), "a bare state dict", bare=True)
    return CheckpointKind(None, ("timm",), f"a dict of {sorted(checkpoint)[:6]}")


def classifier_outputs(state: dict, classifier: str = "head") -> int:
    """How many outputs the classifier ``classifier`` (timm's ``pretrained_cfg['classifier']``: ``head``,
    ``fc``, ``head.fc``) of a bare state dict has; 0 when it has none."""
    weight = next((v for k, v in state.items() if k.removeprefix("module.") == f"{classifier}.weight"), None)
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.ndim >= 1 else 0


# ----------------------------------------------------------------------------- timm weights from the local cache

def cached_pretrained_file(model: nn.Module) -> Path | None:
    """Where the local caches hold the pretrained weights of a timm model (its ``pretrained_cfg``): the Hugging
    Face cache for a hub id, torch hub's for a URL; None when they are not there."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        repo, _, revision = hub_id.partition("@")
        for filename in [cfg.get("hf_hub_filename")] + list(HF_WEIGHT_FILES):
            found = try_to_load_from_cache(repo, filename, revision=revision or None) if filename else None
            if isinstance(found, str):
                return Path(found)
    if cfg.get("url"):
        found = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg["url"]).path)
        if found.is_file():
            return found
    return None


def create_timm_model(timm_name: str, pretrained: bool, **kwargs) -> nn.Module:
    """``timm.create_model`` without a head; with ``pretrained`` its weights come from the local cache, read
    safely, and a model whose weights are not there fails at once, saying how to fetch them."""
    model = timm.create_model(timm_name, pretrained=False, num_classes=0, **kwargs)
    if not pretrained:
        return model
    path = cached_pretrained_file(model)
    if path is None:
        hub_id = (model.pretrained_cfg or {}).get("hf_hub_id")
        where = f"the local Hugging Face cache ({HF_HUB_CACHE}, repo {hub_id})" if hub_id else "the local caches"
        raise MissingFile(
            f"weights for {timm_name!r} are not in {where}, and nothing is downloaded here. On a machine with "
            f"network run `python -c \"import timm; timm.create_model('{timm_name}', pretrained=True)\"` (or "
            f"`hf download {hub_id or timm_name}`) and copy the cache (HF_HOME) here, or pass a checkpoint file.")
    load_checkpoint(model, path, "timm", timm_name)
    return model
