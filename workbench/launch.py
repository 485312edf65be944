"""Distillation outside the notebook's process: the run file, the command line, and a torchrun launch.

The 03 notebook writes its parameters to ``<out_dir>/run.yaml``; the same file drives a run on
one or many GPUs and machines:

    python -m workbench distill --config runs/03_distill/run.yaml                       # one process
    torchrun --nproc_per_node 8 -m workbench distill --config runs/03_distill/run.yaml  # 8 GPUs

``batch_size`` is the global batch whatever the number of processes, so a run file means one recipe.
Rank 0 writes ``<out_dir>/checkpoint/``, ``history.jsonl`` and ``metrics.jsonl``, which it appends
to at every logged step: ``launch_distill`` (what the notebook calls when ``nproc > 1``) starts
torchrun, follows that file and feeds the live plot, then hands back the finished run.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

RUN_FILE = "run.yaml"
DATA_OPTIONS = {"n_train": 6000, "n_test": 2000}  # how the offline world is drawn (ignored for an ImageFolder)


def save_run_config(path, cfg, out_dir=None, **data_options) -> Path:
    """Write ``cfg`` (a ``DistillConfig``), the data options and the out_dir as YAML; returns the path."""
    import yaml

    from .io import _atomic_write

    unknown = set(data_options) - set(DATA_OPTIONS)
    if unknown:
        raise ValueError(f"unknown data option(s) {sorted(unknown)}; known: {sorted(DATA_OPTIONS)}")
    doc = {**cfg.to_dict(), **{k: data_options.get(k, v) for k, v in DATA_OPTIONS.items()}}
    if out_dir is not None:
        doc["out_dir"] = str(out_dir)
    text = "# workbench distillation run: python -m workbench distill --config <this file>\n" + yaml.safe_dump(
        doc, sort_keys=False)
    path = Path(path)
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def load_run_config(path):
    """A run file (YAML, or JSON) -> (``DistillConfig``, data options, out_dir or None), checked."""
    import yaml

    from .distill import DistillConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run file {str(path)!r} does not exist; the 03 notebook writes one to "
                                f"<out_dir>/{RUN_FILE}, or write the DistillConfig fields as YAML")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"run file {path} is not valid YAML/JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"run file {path} must hold a mapping of parameters (teachers: ..., epochs: ...)")
    out_dir = doc.pop("out_dir", None)
    data_options = {k: doc.pop(k, v) for k, v in DATA_OPTIONS.items()}
    from .params import as_int

    data_options = {k: as_int(v, k, minimum=1) for k, v in data_options.items()}
    return DistillConfig.from_params(**doc), data_options, out_dir


def run_distill(config_path, out_dir=None, random_teachers: bool = False, log_every: int = 10, log=print):
    """What ``python -m workbench distill`` does, in this process: one rank of a torchrun job or the only one."""
    from . import load_data
    from .distill import distill
    from .distributed import cleanup, init_distributed
    from .students import student_image_size
    from .teachers import create_teacher

    cfg, data_options, file_out = load_run_config(config_path)
    out_dir = out_dir or file_out
    if out_dir is None:
        raise ValueError(f"no out_dir: give --out DIR or an out_dir entry in {config_path}")
    world = init_distributed(cfg.device)
    try:
        if world.size > 1 and cfg.device.startswith("cuda:"):
            raise ValueError(f"device={cfg.device!r} would put every rank on one GPU: under torchrun use device "
                             "'auto' (or 'cuda'): each rank takes the GPU of its LOCAL_RANK")
        say = log if world.main else (lambda *_: None)
        say(f"{world.size} process(es); global batch {cfg.batch_size} ({cfg.batch_size // max(world.size, 1)} "
            f"per process); writing to {Path(out_dir).resolve()}")
        data = load_data(cfg.data, image_size=student_image_size(cfg.student), seed=cfg.seed, **data_options)
        # each node's local rank 0 first: an offline teacher trained on first use is cached once per node
        # (its $WORKBENCH_CACHE), and the node's other ranks load it instead of training it again
        if world.local_rank != 0:
            world.barrier()
        torch.manual_seed(cfg.seed)  # the same random teachers on every rank (random_teachers)
        teachers = {t: create_teacher(t, pretrained=not random_teachers) for t in cfg.teachers}
        if world.local_rank == 0:
            world.barrier()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        run = distill(cfg, data, teachers, out_dir=out_dir, log_every=log_every, log=say)
        say(f"distilled in {run.runtime_s:.0f}s; checkpoint: {run.checkpoint}")
        return run
    finally:
        cleanup()


@dataclass
class LaunchedRun:
    """A finished run of other processes: what the notebook uses of a ``DistillRun``."""
    history: list[dict]
    checkpoint: Path
    runtime_s: float
    command: list[str] = field(default_factory=list)
    log_file: Path | None = None


def torchrun_command(config_path, nproc: int, out_dir=None, extra: list[str] | None = None) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m workbench distill --config ...``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "workbench", "distill", "--config", str(config_path)]
    if out_dir is not None:
        cmd += ["--out", str(out_dir)]
    return cmd + list(extra or [])


def launch_distill(config_path, out_dir, nproc: int, callback: Callable[[dict], None] | None = None,
                   log=print, poll_s: float = 1.0, extra: list[str] | None = None) -> LaunchedRun:
    """Run ``torchrun --nproc_per_node nproc -m workbench distill`` on this machine and follow it live.

    Every new record of ``<out_dir>/metrics.jsonl`` goes to ``callback`` (e.g. a ``LivePlot``); the
    processes' output goes to ``<out_dir>/distill.log``, whose end is shown if the run fails."""
    from .live import follow, read_jsonl_records

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = out_dir / "metrics.jsonl"
    metrics.unlink(missing_ok=True)  # a fresh run: the plot must not start with an earlier run's records
    cmd = torchrun_command(config_path, nproc, out_dir, extra)
    log_file = out_dir / "distill.log"
    log(f"launching {nproc} processes: {' '.join(cmd[1:])}  (output: {log_file})")
    t0 = time.time()
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            for record in follow(metrics, lambda: proc.poll() is None, poll_s):
                if callback is not None:
                    callback(record)
        except BaseException:  # interrupted in the notebook: stop the processes too
            proc.terminate()
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"distillation with {nproc} processes failed (exit code {proc.returncode}); "
                           f"end of {log_file}:\n{tail}")
    return LaunchedRun(read_jsonl_records(metrics), out_dir / "checkpoint", time.time() - t0, cmd, log_file)
