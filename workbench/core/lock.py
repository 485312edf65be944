"""One writer per output folder: an OS file lock, held while a run writes there.

Two runs writing one out_dir (the notebook opened twice, papermill beside JupyterLab, a job submitted
twice) would interleave checkpoints and metrics. A run takes ``<out_dir>/.workbench.lock`` with
``flock``: the second one is refused at once, with the holder named (host, pid, start time, command),
which the holder writes into the lock file it holds. The kernel releases a ``flock`` when its process
dies, however it dies (SIGKILL, out of memory, a node reboot of a local disk), so a lock left by a dead
run never blocks the next one; the file itself stays, and its stale text is only ever read while a live
process holds it.

    with hold_lock(out_dir, what="03_distill"):     # OutDirBusy if another live process holds it
        ...write...

Within one process the lock is re-entrant (a launcher that claims the out_dir, then trains in it), and
the other ranks of a torchrun job do not take it: rank 0 writes for them. Generation takes one lock per
shard (``name``), so the shards of one clone write their folder together while two processes on the same
shard are refused. File systems without ``flock`` (some Lustre mounts) get a warning and no lock.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutDirBusy
from .files import disk_errors

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

LOCK_FILE = ".workbench.lock"
LOCK_FILES = ".workbench*.lock"  # a run's lock and its shards' (glob)

_held: dict[Path, list] = {}  # lock file -> [open file, depth]: what this process holds


def lock_path(folder, name: str = LOCK_FILE) -> Path:
    return Path(folder).resolve() / name


def _holder_text(what: str) -> str:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "what": what, "command": " ".join(sys.argv)[:300]})


def describe_holder(path: Path) -> str:
    """The holder as it wrote itself into the lock file (read only while it holds it)."""
    try:
        info = json.loads(path.read_text())
        return (f"pid {info['pid']} on host {info['host']}, started {info['started']} ({info.get('what', '?')}: "
                f"{info.get('command', '?')})")
    except (OSError, ValueError, KeyError, TypeError):  # the holder has not written itself yet
        return "a process that is starting (no details written yet)"


def _try_lock(f) -> bool:
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def hold_lock(folder, what: str = "run", name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold the lock ``folder/name`` for the block; ``OutDirBusy`` at once if another live process holds it."""
    path = lock_path(folder, name)
    if fcntl is None:
        yield path
        return
    if path in _held:  # this process holds it already (a launcher, then the run): re-entrant
        _held[path][1] += 1
        try:
            yield path
        finally:
            _held[path][1] -= 1
        return
    with disk_errors(path):  # a read-only or full file system says so, naming the folder
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")  # never truncated before the lock is ours: the holder's details stay readable
    try:
        locked = _try_lock(f)
    except OSError as err:  # ENOLCK, EOPNOTSUPP: a file system without flock
        f.close()
        warnings.warn(f"cannot lock {path} ({err.strerror}): this file system has no flock, so nothing stops a "
                      "second run from writing the same folder; make sure only one does", stacklevel=3)
        yield path
        return
    if not locked:
        holder = describe_holder(path)
        f.close()
        where = path.parent if name == LOCK_FILE else f"{path.parent} ({name.strip('.').removesuffix('.lock')})"
        raise OutDirBusy(
            f"{where} is in use by another run: {holder}. Two runs writing one folder would mix their "
            "checkpoints and files. Wait for that run to finish (or stop it), or use another out_dir. A run that "
            "died does not hold its lock: this one is alive.")
    try:
        with disk_errors(path):
            f.seek(0)
            f.truncate()
            f.write(_holder_text(what))
            f.flush()
    except BaseException:
        f.close()
        raise
    _held[path] = [f, 1]
    try:
        yield path
    finally:
        del _held[path]
        f.close()  # closing the only descriptor releases the flock


def is_locked(folder, name: str = LOCK_FILE) -> str | None:
    """The holder of ``folder/name`` if another live process holds it, else None (nothing is kept locked)."""
    path = lock_path(folder, name)
    if fcntl is None or path in _held or not path.is_file():
        return None
    with open(path, "a") as f:  # for writing: NFS emulates flock with write locks
        try:
            if _try_lock(f):
                return None  # free: closing the file releases it again
        except OSError:
            return None
    return describe_holder(path)


def held_locks(folder) -> list[str]:
    """The holders of every workbench lock in ``folder`` that another live process holds (its run, its shards)."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.glob(LOCK_FILES)) if folder.is_dir() else []
    return [h for h in (is_locked(folder, n) for n in names) if h is not None]
