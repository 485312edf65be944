"""Resumable students of task-specific distillation: one folder per student and seed.

    <out_dir>/student_checkpoints/seed<k>-<student>/   model.safetensors, optimizer.safetensors, rng.safetensors,
                                               train_state.json (the step, the student's live records) and
                                               job.json, written last: the run it belongs to, and once the
                                               student is finished its test top-1

A student stopped by a preemption (SIGTERM, SIGUSR1) saves its folder after the step it was in; a finished
one saves its result (and, for the first seed, its weights, which the run returns and saves). A rerun in
the same out_dir takes finished students as they are and continues stopped ones from their step, ending
with the weights an uninterrupted run has: the weights, the optimizer and the global random generators
come from the folder, and the student's own streams (labelled batches, augmentation, extra images,
mixing) are drawn again from their seeds for the steps already taken, without training on them.
The teachers are probed (and fine-tuned) again on a rerun, from the same seeds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from ...core.checkpoint import TrainState, load_train_state, save_train_state
from ...core.files import atomic_folder, load_tensors, save_json, save_tensors
from ...core.runs import OutDirError, differences
from .config import TaskDistillConfig

CHECKPOINTS = "student_checkpoints"  # beside students/ (``checkpoints/`` is 03's, UNIC distillation's)
JOB_FILE = "job.json"
MODEL_FILE = "model.safetensors"


@dataclass
class StudentCheckpoint:
    """Where one student of one seed keeps its progress (``folder`` None: no out_dir, nothing is kept), and the
    run it belongs to (``key``: the run key and the data), which a folder must match to be resumed."""

    folder: Path | None
    key: dict

    @classmethod
    def of(cls, out_dir, seed: int, name: str, key: dict) -> StudentCheckpoint:
        folder = Path(out_dir) / CHECKPOINTS / f"seed{seed}-{name}" if out_dir is not None else None
        return cls(folder, json.loads(json.dumps(key, default=str)))  # as it reads back from JSON

    def job(self) -> dict | None:
        """``job.json`` of this student's folder (None: none yet); a folder of another run is refused."""
        if self.folder is None or not (self.folder / JOB_FILE).is_file():
            return None
        job = json.loads((self.folder / JOB_FILE).read_text())
        have = job.get("key") or {}
        if isinstance(have.get("run"), dict) and isinstance(self.key.get("run"), dict):
            # a parameter added since the folder was written reads as its default; a renamed one by its name now
            recorded = TaskDistillConfig.recorded_key(have["run"])
            same = have.get("data") == self.key.get("data") and not differences(
                recorded, self.key["run"], TaskDistillConfig.default_run_key())
        else:
            same = have == self.key
        if not same:
            raise OutDirError(f"{self.folder} holds a student of another run (other parameters or data): rerun with "
                              "that run's configuration to resume it, use another out_dir, or overwrite=True.")
        return job

    def save(self, model: nn.Module | None, opt, step: int, records: list[dict], top1: float | None = None) -> None:
        """The student after ``step`` steps (``top1`` given: finished; ``model`` None: its result alone)."""
        if self.folder is None:
            return
        with atomic_folder(self.folder) as tmp:
            if model is not None:
                save_tensors(model.state_dict(), tmp / MODEL_FILE)
            save_train_state(tmp, TrainState(step=step, history=records), opt)
            save_json({"key": self.key, "step": step, "finished": top1 is not None, "top1": top1,
                       "weights": model is not None}, tmp / JOB_FILE)

    def restore(self, model: nn.Module, opt=None) -> tuple[int, list[dict]]:
        """Weights (and, for a stopped student, the optimizer and the global random generators) into ``model`` and
        ``opt``; returns the step and the records so far."""
        self.load_weights(model)
        state, _ = load_train_state(self.folder, opt)
        return state.step, state.history

    def load_weights(self, model: nn.Module) -> nn.Module:
        """A finished student's weights into ``model`` (the global random generators are left alone)."""
        model.load_state_dict(load_tensors(self.folder / MODEL_FILE))
        return model

    def records(self) -> list[dict]:
        return json.loads((self.folder / "train_state.json").read_text())["history"]
