"""Training checkpoints that survive ``kill -9``: everything a run needs to continue bit for bit.

A checkpoint is a folder ``<out_dir>/checkpoints/step_<step:08d>/``, built under a temporary name and
renamed into place (``workbench.core.files.atomic_folder``), so a folder with that name is always complete:
a run killed while writing one still has the previous one. The last ``keep`` are kept.

What makes the resumed run *identical* to an uninterrupted one, on CPU:

- model weights and buffers (standardization statistics included) and the optimizer state, exactly;
- the learning-rate schedule, a pure function of the step;
- every random number generator: torch's global CPU (and CUDA) generators, Python's and NumPy's, and
  the named ``torch.Generator`` objects of the loop (teacher dropping);
- the data position: the epoch and how many of its batches were consumed; the shuffle order of an
  epoch is a function of (seed, epoch) (``workbench.data.EpochSampler``), so the resumed epoch
  continues at the exact next batch;
- the metrics recorded so far and the unreadable files met so far.

``TrainState`` holds the loop's counters and records; ``save_train_state`` / ``load_train_state`` add
the optimizer and RNG states. Other state (a learning-rate scheduler object, an AMP grad scaler, an
EMA model) goes in ``extra``: any nested dict of tensors and plain values.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from .files import atomic_folder, remove_partial_folders, save_json, save_tensors

STEP_DIR = re.compile(r"^step_(\d{8,})$")


@dataclass
class TrainState:
    """The loop's position and what it has recorded so far."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the current epoch (0-based); == epochs when training is finished
    batch: int = 0  # batches of the current epoch already consumed (unreadable ones included)
    history: list[dict] = field(default_factory=list)  # logged metric records
    skipped: list[str] = field(default_factory=list)  # unreadable training files ("path: reason"), each once
    train_s: float = 0.0  # training time spent before the last (re)start

    def note_skipped(self, entries: list[str]) -> None:
        """Record unreadable files, each once (every epoch meets them again)."""
        if entries:
            known = set(self.skipped)
            self.skipped += [e for e in entries if e not in known and not known.add(e)]


# ----------------------------------------------------------------------------- nested states (optimizers, RNGs)

def _split(obj, tensors: dict, path: str):
    """Nested dicts / lists holding tensors -> a JSON skeleton, with the tensors moved to ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        if all(isinstance(k, int) for k in obj):  # optimizer state: {param index: ...}
            return {"__int_keys__": {str(k): _split(v, tensors, f"{path}.{k}") for k, v in obj.items()}}
        raise TypeError(f"cannot save the dict at {path!r} as a state: its keys must be all strings or all integers")
    if isinstance(obj, (list, tuple)):
        return [_split(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save a {type(obj).__name__} at {path!r} as a state (tensors, numbers, strings, "
                    "lists and dicts only)")


def _join(skeleton, tensors: dict):
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__tensor__"}:
            return tensors[skeleton["__tensor__"]]
        if set(skeleton) == {"__int_keys__"}:
            return {int(k): _join(v, tensors) for k, v in skeleton["__int_keys__"].items()}
        return {k: _join(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [_join(v, tensors) for v in skeleton]
    return skeleton


def save_state(state, path) -> None:
    """A nested state (e.g. ``optimizer.state_dict()``) as one safetensors file: tensors as tensors,
    the structure and the plain values as JSON in its metadata. No pickle: loading runs no code."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, "state")
    save_tensors(tensors, path, metadata={"skeleton": json.dumps(skeleton)})


def load_state(path):
    with safe_open(str(path), "pt") as f:
        skeleton = json.loads((f.metadata() or {})["skeleton"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return _join(skeleton, tensors)


# ----------------------------------------------------------------------------- random number generators

def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict:
    """Every generator the loop may draw from, as a nested state of tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": json.loads(json.dumps(random.getstate())),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators: dict[str, torch.Generator] | None = None) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    for name, g in (generators or {}).items():
        if name not in state["generators"]:
            raise KeyError(f"the checkpoint has no state for generator {name!r}")
        g.set_state(state["generators"][name])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


# ----------------------------------------------------------------------------- one checkpoint

def save_train_state(folder, state: TrainState, optimizer: torch.optim.Optimizer | None = None,
                     generators: dict[str, torch.Generator] | None = None, extra: dict | None = None) -> None:
    """``train_state.json`` (counters, records), ``optimizer.safetensors``, ``rng.safetensors`` and
    ``extra.safetensors`` into ``folder`` (normally the temporary folder of ``Checkpoints.save``)."""
    folder = Path(folder)
    if optimizer is not None:
        save_state(optimizer.state_dict(), folder / "optimizer.safetensors")
    save_state(rng_state(generators), folder / "rng.safetensors")
    if extra is not None:
        save_state(extra, folder / "extra.safetensors")
    save_json(asdict(state), folder / "train_state.json")


def load_train_state(folder, optimizer: torch.optim.Optimizer | None = None,
                     generators: dict[str, torch.Generator] | None = None) -> tuple[TrainState, dict | None]:
    """Restore the optimizer and every RNG from ``folder``; returns the ``TrainState`` and ``extra``.

    Call it last, after building the model and loading its weights: anything that draws random
    numbers after it would shift the streams of the resumed run."""
    folder = Path(folder)
    state = TrainState(**json.loads((folder / "train_state.json").read_text()))
    if optimizer is not None:
        optimizer.load_state_dict(load_state(folder / "optimizer.safetensors"))
    extra = load_state(folder / "extra.safetensors") if (folder / "extra.safetensors").is_file() else None
    set_rng_state(load_state(folder / "rng.safetensors"), generators)
    return state, extra


# ----------------------------------------------------------------------------- the folder of checkpoints

class Checkpoints:
    """``root/step_<step>/`` folders: atomic saves, the newest ``keep`` kept, leftovers of killed saves removed."""

    def __init__(self, root, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 checkpoint, got {keep}")
        self.root, self.keep = Path(root), keep

    def all(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
        return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def remove_partial(self) -> list[Path]:
        """Temporary folders of saves that were killed half-way."""
        return remove_partial_folders(self.root)

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """``write(folder)`` fills a temporary folder, renamed to ``step_<step>`` once complete; then
        only the newest ``keep`` checkpoints remain."""
        path = self.root / f"step_{step:08d}"
        with atomic_folder(path) as tmp:
            write(tmp)
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return path
