"""Files: where the workbench caches things, and how it writes them without ever leaving half a file."""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def cache_dir(*parts: str) -> Path:
    """``$WORKBENCH_CACHE`` (default ``~/.cache/workbench``) joined with ``parts``, created on demand."""
    root = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_hash(config: dict) -> str:
    """A short, stable key for a JSON-serialisable config."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp creates files 0600, renamed files get the usual 0666 & ~umask


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(obj, path) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=str)
            f.write("\n")

    _atomic_write(Path(path), write)


def save_text(text: str, path) -> None:
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_tensors(tensors: dict[str, torch.Tensor], path, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_tensors(path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def save_image(image, path, format: str = "png", quality: int = 95) -> None:
    """A PIL image written atomically: a reader (or a resumed run) never sees a half-written file."""
    if format == "png":
        _atomic_write(Path(path), lambda tmp: image.save(tmp, format="PNG"))
    elif format == "jpg":
        _atomic_write(Path(path), lambda tmp: image.convert("RGB").save(tmp, format="JPEG", quality=quality))
    else:
        raise ValueError(f"image format must be 'png' or 'jpg', got {format!r}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_folder(path):
    """Build a folder under a temporary name, then rename it into place: ``path`` is complete or absent.

        with atomic_folder(out / "step_00000100") as tmp:
            save_tensors(..., tmp / "model.safetensors")

    A process killed inside the block leaves only a hidden ``.<name>.*.tmp`` folder (see
    ``remove_partial_folders``). An existing ``path`` is replaced. Files and folder are fsynced
    before the rename, so the checkpoint also survives a machine that loses power.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for f in tmp.iterdir():
            _fsync(f)
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():  # replace: move the old one aside first (a folder cannot be renamed over a full one)
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_partial_folders(folder) -> list[Path]:
    """Delete the temporary folders ``atomic_folder`` leaves behind when its process is killed."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_dir() and p.name.startswith(".") and p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


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
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        skeleton = json.loads((f.metadata() or {})["skeleton"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return _join(skeleton, tensors)


# ----------------------------------------------------------------------------- weights from outside

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
