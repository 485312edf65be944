"""The student 03 distills with its defaults, for notebooks that need one without running 03 first (04).

    folder = default_student()   # runs/03_distill/student when 03 finished there with every default,
                                 # else $WORKBENCH_CACHE/students/..., distilled there on first use
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..core.files import cache_dir, config_hash
from ..core.runs import OutDirError, differences, read_record
from ..data import load_data, world
from ..models import build_teachers, finished_student_folder, register_named_student, student_geometry
from ..models.students import STUDENT_CONFIG
from .config import DistillConfig
from .train import distill

DEFAULT_03_OUT = Path("runs") / "03_distill"  # 03_distill's default out_dir (relative, like the notebooks)


def default_key(n_train: int, n_test: int) -> dict:
    """What 03_distill records for a run with every default (its run.json configuration)."""
    return json.loads(json.dumps(DistillConfig(n_train=n_train, n_test=n_test).run_key()))


def is_default_run(folder: Path, n_train: int, n_test: int) -> bool:
    """03's output folder holds a *finished* run with every default (its run.json and final checkpoint)."""
    try:
        record = read_record(folder) or {}
        saved = json.loads((finished_student_folder(folder) / STUDENT_CONFIG).read_text())
    except (OSError, ValueError, OutDirError):
        return False
    same = not differences(DistillConfig.recorded_key(record.get("config", {})), default_key(n_train, n_test),
                           DistillConfig.default_run_key())
    return record.get("kind") == DistillConfig.kind and same and saved.get("epoch") == DistillConfig().epochs


def default_student(n_train: int = 6000, n_test: int = 2000, search: Path | None = DEFAULT_03_OUT, log=print) -> Path:
    """The folder of the student 03_distill trains with its defaults; trained here when absent.

    Looks first in 03's default ``out_dir`` (``runs/03_distill`` from the working directory), accepted only
    when its ``run.json`` records every default and its finished student is there; then in
    ``$WORKBENCH_CACHE/students`` (keyed by the config); otherwise distills one there (about 2-3 minutes on
    2 CPU cores). The new student is written to a temporary folder and renamed, so an interrupted run never
    leaves half a student.
    """
    if search is not None and is_default_run(Path(search), n_train, n_test):
        return finished_student_folder(search)
    key = {**default_key(n_train, n_test), "world": world.VERSION}
    folder = cache_dir("students") / f"unic-default-{config_hash(key)}"
    if (finished_student_folder(folder) / STUDENT_CONFIG).is_file():
        return finished_student_folder(folder)
    cfg = DistillConfig(n_train=n_train, n_test=n_test)
    log(f"no default student yet: distilling one with 03's defaults ({', '.join(cfg.teachers)} -> {cfg.student}, "
        f"{cfg.epochs} epochs; cached in {folder})")
    data = load_data(cfg.data, n_train=n_train, n_test=n_test, image_size=student_geometry(cfg.student)[0],
                     seed=cfg.seed)
    teachers = build_teachers(cfg.teachers, cfg.teacher_weights, cfg.preprocessing)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        distill(cfg, data, teachers, out_dir=tmp, log=lambda msg: log("  " + msg))
        shutil.rmtree(tmp / "checkpoints")  # the resumable training states: only the student is kept
        (tmp / "key.json").write_text(json.dumps(key, indent=1))
        os.replace(tmp, folder)
    except OSError:
        if not (finished_student_folder(folder) / STUDENT_CONFIG).is_file():
            raise
    finally:  # interrupted, failed, or another process finished first (its student is kept)
        shutil.rmtree(tmp, ignore_errors=True)
    return finished_student_folder(folder)


register_named_student("student", default_student)  # student_init="student", load_student("student")
