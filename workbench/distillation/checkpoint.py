"""A distillation checkpoint folder, and resuming a run from the newest one.

    <out_dir>/checkpoints/step_<n>/   every ``ckpt_every`` steps: the training state (``workbench.core.checkpoint``)
                                      beside the model files below; the newest ``keep_checkpoints`` are kept
    <out_dir>/student/                the finished student
    <out_dir>/timm/                   the same encoder as timm shares models (``config.json``, ``model.safetensors``)
    <out_dir>/preempted.json          while a run stopped by SIGTERM / SIGUSR1 waits to be rerun: the step of its
                                      checkpoint and the signal (a batch script requeues the job when it is there)

A model folder holds ``student.safetensors`` (the encoder you keep: ``load_student`` reads it),
``projectors.safetensors`` (ladder and standardization statistics, dropped after training) and
``config.json`` (the run's configuration and the student's preprocessing), written last, so a folder with a
config always holds complete weights.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from ..core.checkpoint import Checkpoints, TrainState, load_train_state, save_train_state
from ..core.files import atomic_folder, load_tensors, save_json, save_jsonl, save_tensors
from ..core.live import MetricsLog
from ..core.loggers import TENSORBOARD_DIR, WANDB_DIR, Logger, make_logger
from ..core.runs import OutDirError, differences
from ..models.students import (
    OLDER_STUDENT_FOLDER,
    STUDENT_CONFIG,
    STUDENT_FOLDER,
    STUDENT_WEIGHTS,
    TRAINING_CHECKPOINTS,
    finished_student_folder,
)
from .config import DistillConfig
from .unic import UNIC

PROJECTORS = "projectors.safetensors"
PREEMPTED = "preempted.json"  # <out_dir>/preempted.json: the run was stopped by a signal; rerun it to resume
TIMM_EXPORT = "timm"  # <out_dir>/timm: the finished student for timm.create_model("local-dir:<out_dir>/timm")


def resume(ckpts: Checkpoints, model: UNIC, opt, generators: dict, cfg: DistillConfig, data_fingerprint: str,
           overwrite: bool, log=print) -> TrainState | None:
    """Load the newest readable checkpoint of this run into ``model``, ``opt`` and ``generators``.

    Refuses checkpoints of another run (another ``run_key``, or other data) unless ``overwrite``, which
    deletes them; execution fields (device, compilation, checkpointing) may differ."""
    out_dir = ckpts.root.parent
    if overwrite:
        for p in (ckpts.root, out_dir / STUDENT_FOLDER, out_dir / OLDER_STUDENT_FOLDER, out_dir / TIMM_EXPORT,
                  out_dir / TENSORBOARD_DIR, out_dir / WANDB_DIR):
            shutil.rmtree(p, ignore_errors=True)
        (out_dir / "history.jsonl").unlink(missing_ok=True)
        return None
    for leftover in ckpts.remove_partial():
        log(f"removed {leftover.name}: a checkpoint whose writing was interrupted")
    for leftover in [*out_dir.glob(".history.jsonl.*.tmp"), *out_dir.glob(".checkpoint.*.tmp"),
                     *out_dir.glob(f".{TIMM_EXPORT}.*.tmp")]:
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()  # other writes cut short
    found = ckpts.all()
    if not found:
        if (finished_student_folder(out_dir) / STUDENT_CONFIG).is_file():
            raise OutDirError(f"{out_dir} holds a finished student ({STUDENT_FOLDER}/) but no training state to resume "
                              "from (checkpoints/ was removed): load it with load_student, or pass overwrite=True "
                              "to train again")
        return None
    want = json.loads(json.dumps(cfg.run_key()))  # as it reads back from JSON
    errors = []
    for path in reversed(found):  # newest first; an unreadable one falls back to the one before
        try:
            have = json.loads((path / STUDENT_CONFIG).read_text())
            recorded = {k: v for k, v in cfg.recorded_key(have.get("config", {})).items()
                        if k in want}  # execution fields may differ
            diff = [f"{k}: checkpoint {a!r}, this run {b!r}"
                    for k, (a, b) in differences(recorded, want, cfg.default_run_key()).items()]
            if diff or have.get("data") != data_fingerprint:
                if have.get("data") != data_fingerprint:
                    diff.append("the training data differ (other images, labels or split)")
                raise OutDirError(f"{out_dir} holds checkpoints of another run ({'; '.join(diff)}). Rerun with that "
                                  "configuration to resume it, use another out_dir, or pass overwrite=True to start "
                                  "over.")
            model.load_state_dict(model_state(path))
            state, _ = load_train_state(path, opt, generators)
        except OutDirError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # JSONDecodeError is a ValueError
            errors.append(f"{path.name}: {type(err).__name__}: {err}")
            log(f"checkpoint {path} is unreadable ({type(err).__name__}); trying the one before")
            continue
        done = " (training already finished)" if state.epoch >= cfg.epochs else ""
        log(f"resumed from step {state.step} (epoch {min(state.epoch + 1, cfg.epochs)}, "
            f"batch {state.batch}) of {path}{done}")
        return state
    raise OutDirError(f"no checkpoint in {ckpts.root} could be loaded ({'; '.join(errors)}); pass overwrite=True "
                      "to start over")


def model_state(folder: Path) -> dict[str, torch.Tensor]:
    """The UNIC state dict of a checkpoint folder: the student's weights and the projectors."""
    student = {f"student.{k}": v for k, v in load_tensors(folder / STUDENT_WEIGHTS).items()}
    return {**student, **load_tensors(folder / PROJECTORS)}


def save_checkpoint(model: UNIC, cfg: DistillConfig, folder: Path, extra: dict | None = None) -> Path:
    """``student.safetensors`` (the encoder you keep), ``projectors.safetensors`` (ladder and
    standardization statistics, dropped after training) and ``config.json``. Each file is atomic;
    config.json is written last, so a folder with a config always holds complete weights."""
    folder = Path(folder)
    state = model.state_dict()
    student = {k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}
    save_tensors(student, folder / STUDENT_WEIGHTS)
    save_tensors({k: v for k, v in state.items() if not k.startswith("student.")}, folder / PROJECTORS)
    save_json({"config": cfg.to_dict(), "teacher_grids": model.teacher_grids,
               "preprocessing": model.student.preprocessing.to_dict(), **(extra or {})}, folder / STUDENT_CONFIG)
    return folder


def recorded_precision(out_dir) -> str | None:
    """The precision the newest training checkpoint in ``out_dir`` was computed in, or None (no checkpoint, or one
    written before precision was recorded): a resumed ``auto`` run keeps it instead of timing again."""
    if out_dir is None:
        return None
    latest = Checkpoints(Path(out_dir) / TRAINING_CHECKPOINTS).latest()
    try:
        return json.loads((latest / STUDENT_CONFIG).read_text()).get("precision") if latest else None
    except (OSError, ValueError):
        return None


class RunOutput:
    """What a run writes into its out_dir, by rank 0 alone: ``checkpoints/step_*`` (the training state, every
    ``ckpt_every`` steps or every epoch), ``metrics.jsonl`` (appended at every logged step, so others can
    follow it live) and the same records to the ``logger`` of its config (``core.loggers``: TensorBoard, W&B),
    ``history.jsonl`` and, at the end, ``student/`` (the student). Without an out_dir it writes nothing and
    resumes nothing. ``close()`` when the run ends, however it ends."""

    def __init__(self, out_dir, cfg: DistillConfig, meta: dict, writes: bool):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.cfg, self.meta = cfg, meta
        self.checkpoints = Checkpoints(self.out_dir / "checkpoints", cfg.keep_checkpoints) if self.out_dir else None
        self.writes = writes and self.out_dir is not None
        self.metrics: MetricsLog | None = None
        self.logger: Logger = Logger()  # logs nothing until ``resume`` opens the configured one

    def resume(self, model: UNIC, opt, generators: dict, overwrite: bool, log=print) -> tuple[TrainState, int | None]:
        """The state to start from (restored into ``model``, ``opt``, ``generators``) and the step it resumed from."""
        state = None
        if self.checkpoints is not None:
            state = resume(self.checkpoints, model, opt, generators, self.cfg, self.meta["data"],
                           overwrite and self.writes, log)
        resumed_from = state.step if state is not None else None
        state = state or TrainState()
        if self.writes:
            self.metrics = MetricsLog(self.out_dir / "metrics.jsonl", state.history)
            self.logger = make_logger(self.cfg.logger, self.out_dir, self.out_dir.name, self.cfg.to_dict())
            for record in state.history:  # as metrics.jsonl: the records the run keeps, then the steps it computes
                self.logger.log(record)
            (self.out_dir / PREEMPTED).unlink(missing_ok=True)  # this run is the rerun it asked for
        return state, resumed_from

    def record(self, record: dict) -> None:
        if self.metrics is not None:
            self.metrics.append(record)
            self.logger.log(record)

    def close(self) -> None:
        """The logger's files complete (rank 0; nothing to do elsewhere)."""
        self.logger.close()
        self.logger = Logger()

    def latest(self) -> Path | None:
        return self.checkpoints.latest() if self.checkpoints is not None else None

    def checkpoint(self, model: UNIC, state: TrainState, opt, generators: dict) -> None:
        if not self.writes:
            return

        def write(folder):
            save_checkpoint(model, self.cfg, folder, extra={**self.meta, "step": state.step, "epoch": state.epoch})
            save_train_state(folder, state, opt, generators)

        self.checkpoints.save(state.step, write)
        save_jsonl(state.history, self.out_dir / "history.jsonl")

    def preempted(self, step: int, signal: str) -> Path | None:
        """After the checkpoint of a stopped run: ``preempted.json`` names it; returns the checkpoint's folder."""
        where = self.latest()
        if self.writes:
            save_json({"step": step, "signal": signal, "checkpoint": str(where),
                       "time": time.strftime("%Y-%m-%d %H:%M:%S")}, self.out_dir / PREEMPTED)
        return where

    def finish(self, model: UNIC, state: TrainState) -> Path | None:
        """Write the finished student (once: a rerun of a finished run keeps it); returns its folder."""
        if self.out_dir is None:
            return None
        final = finished_student_folder(self.out_dir)
        if self.writes:
            if not (final / STUDENT_CONFIG).is_file():
                with atomic_folder(final) as tmp:
                    save_checkpoint(model, self.cfg, tmp, extra={**self.meta, "step": state.step, "epoch": state.epoch,
                                                                 "unreadable_images": state.skipped})
            if not (self.out_dir / TIMM_EXPORT / "model.safetensors").is_file():
                with atomic_folder(self.out_dir / TIMM_EXPORT) as tmp:
                    model.student.export_timm(tmp)
            save_jsonl(state.history, self.out_dir / "history.jsonl")
        return final
