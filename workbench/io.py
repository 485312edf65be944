"""Files: where the workbench caches things, and how it writes them without ever leaving half a file."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
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
