"""What a run wrote in its out_dir: the record that lets ``overwrite`` delete the run's files and nothing else.

A researcher keeps notes, an analysis folder or a paper's figures beside a run's outputs. ``overwrite=True``
must start the run over without touching those, so the out_dir remembers which of its entries the workbench wrote:
every write of ``workbench.core.files`` (and the few writers that cannot go through it) calls ``note_written``,
which finds the run folder above the file (the nearest folders holding a ``MARKERS`` file) and appends the file's
top-level entry there (``summary.json``, ``checkpoints``) to a hidden ``.workbench-written``, once per process.

An entry is recorded whole: a folder the run made (``checkpoints/``) is the run's, with whatever is put inside it.
Appends of a few bytes (``O_APPEND``) from several processes of one run (torchrun ranks, data workers) do not mix.

A leaf module: the standard library only, so the file writers can import it.
"""
from __future__ import annotations

import os
from pathlib import Path

RECORD = "run.json"  # a run's configuration; written first, when a run claims its out_dir
# Files by which a folder is known to be a workbench output (generation.json: a synthetic ImageNet clone).
MARKERS = (RECORD, "generation.json")
WRITTEN = ".workbench-written"  # the top-level entries the workbench wrote, one per line

_noted: set[tuple[str, int, str]] = set()  # (run folder, inode of its marker, entry): recorded by this process


def _marker_inode(folder: str) -> int | None:
    for marker in MARKERS:
        try:
            return os.stat(os.path.join(folder, marker)).st_ino
        except OSError:
            continue
    return None


def note_written(path) -> None:
    """Record ``path`` (just written) as the workbench's in every run folder above it. The marker's inode is part of
    what this process remembers: a run started over (a new ``run.json``) gets its record written again."""
    path = os.path.abspath(path)
    child = path
    folder = os.path.dirname(path)
    while True:
        entry = os.path.basename(child)
        inode = _marker_inode(folder)
        if inode is not None and not entry.startswith(".") and (folder, inode, entry) not in _noted:
            try:
                with open(os.path.join(folder, WRITTEN), "a", encoding="utf-8") as f:
                    f.write(entry + "\n")
            except OSError:  # unrecorded, the entry is kept by an overwrite: the safe side
                pass
            else:
                _noted.add((folder, inode, entry))
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        child, folder = folder, parent


def written_entries(out_dir) -> set[str] | None:
    """The top-level entries of ``out_dir`` that the workbench wrote; None where no record was kept (a folder
    written before the record existed)."""
    path = Path(out_dir) / WRITTEN
    if not path.is_file():
        return None
    return {line for line in path.read_text(encoding="utf-8").splitlines() if line and "/" not in line}


def forget(out_dir) -> None:
    """After ``out_dir`` was cleared: this process records its entries again (an inode number can be reused)."""
    folder = os.path.abspath(out_dir)
    _noted.difference_update({key for key in _noted if key[0] == folder})
