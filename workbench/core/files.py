"""Files: where the workbench caches things, and how it writes them without ever leaving half a file.

Every write goes through a temporary file (or folder) in the same folder, renamed into place once
complete: a reader, or a run resumed after a crash, sees the old file or the new one, never half.
JSON lines (metrics, manifests) are the exception that proves it: they are appended a record at a
time, and a reader takes the records that parse and counts the rest (a line cut by a crash).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
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


def atomic_write(path, write) -> None:
    """``write(tmp)`` fills a temporary file in the same folder, then it is renamed to ``path``: readers see the
    old file or the new one, never half of it."""
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

    atomic_write(path, write)


def save_text(text: str, path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ----------------------------------------------------------------------------- JSON lines

def save_jsonl(records: list[dict], path) -> None:
    """Records as JSON lines, the whole file replaced atomically."""
    save_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), path)


def append_jsonl(path, records: list[dict], sync: bool = False) -> None:
    """Append records to a JSON-lines file, flushed at once (``tail -f`` works); ``sync`` also waits for the disk,
    so that the lines survive a machine that loses power."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        f.flush()
        if sync:
            os.fsync(f.fileno())


def read_jsonl(path) -> tuple[list[dict], int]:
    """The records of a JSON-lines file, and how many non-empty lines are not records (a line cut by a crash,
    or one still being written). A missing file has none."""
    records, bad = [], 0
    path = Path(path)
    if not path.is_file():
        return records, bad
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


# ----------------------------------------------------------------------------- tensors, images, folders

def save_tensors(tensors: dict[str, torch.Tensor], path, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_tensors(path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def save_image(image, path, format: str = "png", quality: int = 95) -> None:
    """A PIL image written atomically: a reader (or a resumed run) never sees a half-written file."""
    if format == "png":
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    elif format == "jpg":
        atomic_write(path, lambda tmp: image.convert("RGB").save(tmp, format="JPEG", quality=quality))
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
