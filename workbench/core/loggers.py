"""A run's metric records also where researchers look: TensorBoard event files, or a Weights & Biases run.

    logger = make_logger("tensorboard", out_dir, run_name="03_distill", config=cfg.to_dict())
    logger.log({"step": 10, "epoch": 0.2, "loss": 1.2, "loss/world_shape": 0.6}, step=10)
    logger.close()

``none`` (the default) logs nothing and needs nothing. ``tensorboard`` writes ``<out_dir>/tensorboard/``
(``tensorboard --logdir <out_dir>``; the ``tensorboard`` extra). ``wandb`` writes ``<out_dir>/wandb/`` (the ``wandb``
extra), offline: nothing leaves the machine until ``wandb sync <out_dir>/wandb/offline-run-*``, unless the user set
``WANDB_MODE`` (``online``: straight to the server they configured). Every numeric value of a record but its
``step`` is a scalar at that step (booleans, text and None are not logged). A package the chosen logger needs and
this environment lacks is a ``MissingPackage`` naming the extra to install.

A run hands its logger every record it keeps, from the first: a resumed run starts with the records of its
checkpoint, as it rewrites ``metrics.jsonl`` with them, then logs the steps it computes again. So

- ``tensorboard``: each process writes the folder anew: the earlier event files are removed and the new one starts
  with TensorBoard's restart marker at step 0 (a TensorBoard already showing the folder drops what it read): the
  event files hold the values of ``metrics.jsonl`` at its steps, and no step a stopped process logged twice;
- ``wandb``: the out_dir is one W&B run, which every process resumes (its id in ``<out_dir>/wandb/workbench.json``,
  with the last step each metric was logged at): a record at a step a metric was logged at already is not logged
  again (W&B keeps the value it has). Each metric's x axis is the run's ``step``.

The out_dir's ``tensorboard/`` or ``wandb/`` folder is recorded as the workbench's (``core.written``): ``overwrite``
deletes it. Only the process that writes ``metrics.jsonl`` (rank 0) makes a logger.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import uuid
from pathlib import Path

from .errors import MissingPackage, cause
from .files import save_json
from .written import note_written

LOGGERS = ("none", "tensorboard", "wandb")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # logger -> the package (and the extra) it needs
TENSORBOARD_DIR = "tensorboard"  # <out_dir>/tensorboard: the event files
WANDB_DIR = "wandb"  # <out_dir>/wandb: W&B's own files (offline-run-*), and the workbench's record of its run
WANDB_RECORD = "workbench.json"  # <out_dir>/wandb/workbench.json: the run's id and the last step of each metric


def missing(kind: str, err: BaseException | None = None) -> MissingPackage:
    package = PACKAGES[kind]
    because = f" ({cause(err)})" if err is not None else ""
    return MissingPackage(f"logger={kind} needs the {package} package, which this environment lacks{because}: "
                          f"pip install -e \".[{package}]\" (in the workbench's folder), or logger=none")


def check_logger(kind: str) -> None:
    """The package ``kind`` needs is installed (looked up, not imported): checked before a run claims its out_dir."""
    if kind != "none" and importlib.util.find_spec(PACKAGES[kind]) is None:
        raise missing(kind)


def _import(kind: str, module: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise missing(kind, err) from err


def scalars(record: dict) -> dict[str, float]:
    """The numeric values of a record but its step."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Logger:
    """``none``: logs nothing."""

    kind = "none"

    def log(self, record: dict, step: int | None = None) -> None:
        """Every numeric value of ``record`` but its step, as a scalar at ``step`` (default: the record's own)."""

    def close(self) -> None:
        """Everything logged is on disk; the logger takes no more records."""

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardLogger(Logger):
    kind = "tensorboard"

    def __init__(self, out_dir: Path):
        tensorboard = _import("tensorboard", "torch.utils.tensorboard")
        self.folder = out_dir / TENSORBOARD_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        note_written(self.folder)
        for old in self.folder.glob("events.out.tfevents.*"):  # an earlier process's: this one logs the run again
            old.unlink(missing_ok=True)
        # purge_step=0: a restart marker first, for a TensorBoard that read the earlier files to drop what they held
        self.writer = tensorboard.SummaryWriter(log_dir=str(self.folder), purge_step=0)

    def log(self, record: dict, step: int | None = None) -> None:
        step = record["step"] if step is None else step
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()  # a record reaches the file at once, as metrics.jsonl's line does

    def close(self) -> None:
        self.writer.close()


class WandbLogger(Logger):
    kind = "wandb"

    def __init__(self, out_dir: Path, run_name: str, config: dict):
        wandb = _import("wandb", "wandb")
        folder = out_dir / WANDB_DIR
        folder.mkdir(parents=True, exist_ok=True)
        note_written(folder)
        self.record_path = folder / WANDB_RECORD
        record = _read_json(self.record_path)
        self.id = record.get("id") or uuid.uuid4().hex[:12]
        self.logged: dict[str, float] = dict(record.get("logged", {}))  # metric -> the last step logged, any process
        mode = os.environ.get("WANDB_MODE") or "offline"  # the user's WANDB_MODE, else never the network
        self.run = wandb.init(dir=str(out_dir), project="workbench", name=run_name, config=config, id=self.id,
                              resume="allow", mode=mode)
        self.run.define_metric("step", hidden=True)
        self.run.define_metric("*", step_metric="step")  # each metric against the run's step (not W&B's counter)
        self._save()

    def log(self, record: dict, step: int | None = None) -> None:
        step = record["step"] if step is None else step
        new = {k: v for k, v in scalars(record).items() if step > self.logged.get(k, -math.inf)}
        if new:
            self.run.log({**new, "step": step})
            self.logged.update(dict.fromkeys(new, step))
            self._save()

    def _save(self) -> None:
        save_json({"id": self.id, "logged": self.logged}, self.record_path)

    def close(self) -> None:
        self.run.finish()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def make_logger(kind: str, out_dir, run_name: str, config: dict) -> Logger:
    """The logger ``kind`` (``LOGGERS``) of the run in ``out_dir``; ``config``: its parameters (W&B records them)."""
    if kind == "none":
        return Logger()
    if kind == "tensorboard":
        return TensorBoardLogger(Path(out_dir))
    if kind == "wandb":
        return WandbLogger(Path(out_dir), run_name, config)
    raise ValueError(f"logger must be one of {LOGGERS}, got {kind!r}")
