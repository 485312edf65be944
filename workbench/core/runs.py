"""Output folders: one configuration per ``out_dir``, so results of two configurations never mix.

Every notebook claims its ``out_dir`` in its first cell after the parameters, before it writes
anything (``Config.from_notebook`` calls this with the config's ``run_key()``):

    out = prepare_out_dir(out_dir, {"teachers": [...], "epochs": 8, ...}, overwrite=False, kind="03_distill")

- a new or empty folder: records the configuration in ``run.json`` and starts;
- a folder whose ``run.json`` holds the same configuration: continues it (a distillation resumes
  from its last checkpoint; finished work is reused);
- a different configuration, or a folder of files that no workbench run wrote: refused, with the
  differences listed, unless ``overwrite=True`` is asked for. Overwriting deletes the earlier run's files
  first (the entries its record names, ``workbench.core.written``), and only in a folder a workbench run
  wrote: what the workbench did not write (a user's notes, an analysis folder) is kept and named.

Keys that do not change results (the device, how often to checkpoint) stay out of the record.

The claim holds the out_dir's lock (``workbench.core.lock``) while it reads, clears or records: a folder
another live run is writing in is refused at once, naming that run, and never cleared.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .errors import OutDirError
from .files import save_json
from .lock import LOCK_FILES, OutDirBusy, held_locks, hold_lock
from .written import MARKERS, RECORD, WRITTEN, forget, written_entries


def _normalise(config: dict) -> dict:
    """As it will read back from JSON: tuples become lists, paths strings."""
    return json.loads(json.dumps(config, default=str))


def differences(have: dict, want: dict, defaults: dict | None = None) -> dict[str, tuple]:
    """{key: (recorded, wanted)} where two configurations differ. A key the record lacks reads as its value in
    ``defaults``: a run recorded before a parameter existed ran with that parameter's default."""
    defaults = _normalise(defaults or {})
    keys = list(want) + [k for k in have if k not in want]
    pairs = {k: (have.get(k, defaults.get(k, "<absent>")), want.get(k, "<absent>")) for k in keys}
    return {k: (a, b) for k, (a, b) in pairs.items() if a != b}


def read_record(out_dir) -> dict | None:
    path = Path(out_dir) / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise OutDirError(f"{path} is unreadable ({err}): it should record the configuration of the run in "
                          f"{path.parent}. Use another out_dir, or overwrite=True to clear it.") from None


def prepare_out_dir(out_dir, config: dict, overwrite: bool = False, kind: str = "run", log=print,
                    defaults: dict | None = None, current_names=None) -> Path:
    """Make ``out_dir`` hold this configuration's run; returns its path. See the module docstring.
    ``defaults``: the value of each key in a record that lacks it (see ``differences``). ``current_names``: reads
    a recorded configuration with the keys of now (a config's ``recorded_key``: renamed parameters)."""
    out = Path(out_dir)
    check_writable(out)
    with hold_lock(out, what=kind):
        return _prepare(out, _normalise(config), overwrite, kind, log, defaults, current_names or dict)


def check_writable(out: Path) -> None:
    """``out`` is a folder this process can write in, or can be made as one: checked before anything is written."""
    if out.exists() and not out.is_dir():
        raise OutDirError(f"out_dir {str(out)!r} is a file; give a folder")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutDirError(f"out_dir {str(out)!r} cannot be made: {str(existing)!r} is a file, not a folder. Give a "
                          "path under a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        made = "written in" if existing == out else f"made in {str(existing)!r}"
        raise OutDirError(f"out_dir {str(out)!r} cannot be {made}: permission denied for this user. Give a folder "
                          "you can write in (e.g. under your home), or change the folder's permissions")


def _prepare(out: Path, config: dict, overwrite: bool, kind: str, log, defaults: dict | None, current_names) -> Path:
    # hidden files (.DS_Store, .ipynb_checkpoints) do not make a folder a run
    entries = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    record = read_record(out) if entries else None
    if entries and overwrite:
        log(f"overwrite=True: {clear_out_dir(out, what='run')}; starting a new run")
        entries = []
    elif entries and record is None:
        raise OutDirError(
            f"out_dir {str(out)!r} already holds files but no {RECORD} (files from another program, or from a "
            "workbench older than run records): results could mix with them. Use a new out_dir, or move or "
            "delete those files yourself.")
    elif entries:
        if record.get("kind") != kind:
            raise OutDirError(f"out_dir {str(out)!r} holds a {record.get('kind')!r} run, not {kind!r}: use "
                              f"another out_dir, or overwrite=True to delete that run.")
        diff = differences(current_names(record.get("config", {})), config, defaults)
        if diff:
            lines = "; ".join(f"{k}: folder {a!r}, this run {b!r}" for k, (a, b) in diff.items())
            raise OutDirError(
                f"out_dir {str(out)!r} holds a run with another configuration ({lines}). Rerun with that "
                f"configuration to continue it, use another out_dir, or pass overwrite=True (-p overwrite True) "
                f"to delete it and start over.")
        log(f"{out}: same configuration as the run already there; continuing it")
        return out
    out.mkdir(parents=True, exist_ok=True)
    save_json({"kind": kind, "config": config, "created": time.strftime("%Y-%m-%d %H:%M:%S")}, out / RECORD)
    return out


def clear_out_dir(out_dir, what: str = "run") -> str:
    """Delete what the workbench wrote in ``out_dir`` (its record, ``workbench.core.written``), in a folder a
    workbench run wrote, never a home or working folder; returns what it did, naming the entries it kept (not the
    workbench's). ``what`` names the earlier output in that message (a run, a clone)."""
    out = Path(out_dir).resolve()
    if not out.is_dir():
        return f"nothing to delete in {out}"
    keep = (Path.home().resolve(), Path.cwd().resolve())
    if out == Path(out.anchor) or any(out == p or out in p.parents for p in keep):
        raise OutDirError(f"refusing to clear {out}: it is (or contains) the home or working folder; "
                          "choose a dedicated out_dir")
    if not any((out / m).is_file() for m in MARKERS):
        raise OutDirError(f"refusing to clear {out}: it holds files that no workbench run wrote (no "
                          f"{' or '.join(MARKERS)}). Move or delete them yourself, or use another out_dir.")
    busy = held_locks(out)
    if busy:
        raise OutDirBusy(f"refusing to clear {out}: a live run is writing there ({'; '.join(busy)}). Wait for it to "
                         "finish (or stop it), or use another out_dir.")
    written = written_entries(out)
    if written is None:
        raise OutDirError(
            f"refusing to clear {out}: a workbench older than its record of written files ({WRITTEN}) wrote it, so "
            f"its files cannot be told from yours. Delete the folder yourself (rm -r {out}), or use another out_dir.")
    kept = []
    for p in sorted(out.iterdir()):
        if p.match(LOCK_FILES) or p.name == WRITTEN:
            continue  # a lock file stays: deleting one a process holds would let a second process lock a new one
        partial = p.name.startswith(".") and p.name.endswith(".tmp")  # what a killed write left (files.py)
        if p.name not in written and not partial:
            kept.append(p.name + ("/" if p.is_dir() else ""))
        elif p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    (out / WRITTEN).unlink()
    forget(out)
    kept = [k for k in kept if not k.startswith(".")]
    return (f"deleted the earlier {what}'s files in {out_dir}"
            + (f"; kept what it did not write: {', '.join(kept)}" if kept else ""))
