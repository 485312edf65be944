"""Files: where the workbench caches things, and how it writes them without ever leaving half a file.

Every write goes through a temporary file (or folder) in the same folder, renamed into place once
complete: a reader, or a run resumed after a crash, sees the old file or the new one, never half.
JSON lines (metrics, manifests) are the exception that proves it: they are appended a record at a
time, and a reader takes the records that parse and counts the rest (a line cut by a crash).

A full disk, a quota or a read-only folder (ENOSPC, EDQUOT, EROFS) fails a write here, in one place:
the temporary file or folder is removed, an append is cut back to its last whole line, and
``DiskWriteError`` names the path and the space left, so the run stops with everything written
before it intact and loadable (the previous checkpoint, every finished image).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import WorkbenchError
from .written import note_written


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


# ----------------------------------------------------------------------------- a disk that refuses a write

DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "the file system is read-only"}


class DiskWriteError(WorkbenchError, OSError):
    """A write the disk refused (full, over quota, read-only): the run stops; what was written before is intact."""

    def __init__(self, path, code: int):
        super().__init__(code, DISK_ERRORS[code], str(path))
        self.message = (f"cannot write {path}: {DISK_ERRORS[code]} ({free_space(Path(path))}). The run stops here; "
                        "everything written before (the last checkpoint, finished files) is intact and no temporary "
                        "file is left. Free some space (or make the folder writable), then rerun with the same "
                        "out_dir to continue.")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # rebuilt from its own arguments when it crosses processes (a worker's job failed)
        return type(self), (self.filename, self.errno)


def free_space(path: Path) -> str:
    """"<free> free of <total> on the file system of <folder>", for the nearest folder of ``path`` that exists."""
    folder = path
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return f"free space of {folder} unknown"
    return f"{_size(usage.free)} free of {_size(usage.total)} on the file system of {folder}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _disk_errno(err: BaseException) -> int | None:
    """The errno of a refused write: an ``OSError``'s, or the one safetensors' writer (Rust) gives only in its
    message ("Error while serializing: I/O error: No space left on device (os error 28)"): not an ``OSError``."""
    if isinstance(err, DiskWriteError):
        return None
    if isinstance(err, OSError):
        return err.errno if err.errno in DISK_ERRORS else None
    if type(err).__name__ == "SafetensorError":
        found = re.search(r"\(os error (\d+)\)", str(err))
        if found and int(found.group(1)) in DISK_ERRORS:
            return int(found.group(1))
    return None


@contextlib.contextmanager
def disk_errors(path):
    """Turn a refused write of ``path`` into a ``DiskWriteError`` naming it and the free space."""
    try:
        yield
    except Exception as err:
        code = _disk_errno(err)
        if code is None:
            raise
        raise DiskWriteError(path, code) from err


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp creates files 0600, renamed files get the usual 0666 & ~umask


def atomic_write(path, write) -> None:
    """``write(tmp)`` fills a temporary file in the same folder, then it is renamed to ``path``: readers see the
    old file or the new one, never half of it."""
    path = Path(path)
    with disk_errors(path):
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
    note_written(path)


def _write_all(fd: int, data: bytes) -> None:
    """Every byte of ``data`` to ``fd`` (``os.write`` may take part of it), raising what the disk refuses."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_file(path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def save_bytes(data: bytes, path) -> None:
    atomic_write(path, lambda tmp: _write_file(tmp, data))


def save_json(obj, path) -> None:
    save_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", path)


def save_text(text: str, path) -> None:
    save_bytes(text.encode("utf-8"), path)


# ----------------------------------------------------------------------------- JSON lines

def save_jsonl(records: list[dict], path) -> None:
    """Records as JSON lines, the whole file replaced atomically."""
    save_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), path)


def append_jsonl(path, records: list[dict], sync: bool = False) -> None:
    """Append records to a JSON-lines file, flushed at once (``tail -f`` works); ``sync`` also waits for the disk,
    so that the lines survive a machine that loses power."""
    path = Path(path)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, data)
                if sync:
                    os.fsync(fd)
            except OSError:  # a full disk took part of the lines: cut the file back to its last whole line
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)
    note_written(path)


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
    if format not in ("png", "jpg"):
        raise ValueError(f"image format must be 'png' or 'jpg', got {format!r}")

    buffer = io.BytesIO()  # encoded in memory, then written by the one writer that handles a full disk
    if format == "png":
        image.save(buffer, format="PNG")
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    save_bytes(buffer.getvalue(), path)


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
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
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
            note_written(path)
        except Exception as err:  # a refused write: named by where it was going, not by the temporary folder
            inner = isinstance(err, DiskWriteError)
            code = err.errno if inner else _disk_errno(err)
            if code is None:
                raise
            raise DiskWriteError(path / Path(err.filename).name if inner and err.filename else path, code) from err
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
