"""Distillation outside the notebook's process: the run file, the command line, and a torchrun launch.

The 03 notebook writes its parameters to ``<out_dir>/run.yaml``; the same file drives a run on
one or many GPUs and machines:

    python -m workbench distill --config runs/03_distill/run.yaml                       # one process
    torchrun --nproc_per_node 8 -m workbench distill --config runs/03_distill/run.yaml  # 8 GPUs

``batch_size`` is the global batch whatever the number of processes, so a run file means one recipe.
The out_dir rules are the notebook's (``DistillConfig.claim_out_dir``): a rerun continues the run there (resuming
from its last checkpoint, with any number of processes), another configuration is refused unless
``--overwrite``. Rank 0 writes ``checkpoints/``, ``student/``, ``history.jsonl`` and
``metrics.jsonl``, which it appends to at every logged step, and at the end ``summary.json`` (the configuration,
the closing losses, the times: what a study's table reads, ``workbench.study.collect``): ``launch_distill`` (what
the notebook calls when ``nproc > 1``) starts torchrun, follows that file and feeds the live plot.

Preemption: each rank stops after its current step on SIGTERM or SIGUSR1, rank 0 checkpoints, and they exit
with code 75 (``workbench.core.preemption``). torchrun forwards SIGTERM to its ranks; it forwards SIGUSR1
(SLURM's warning before the time limit) only when told to (``--signals-to-handle``, set here through the
environment), and itself exits 1 after its ranks stop, whatever their code: ``<out_dir>/preempted.json`` is
what says the run was stopped to be continued. ``launch_distill`` (the notebook) passes a signal it receives
on to torchrun and raises ``Preempted`` once the ranks have stopped. The notebook's stop button (SIGINT) goes to the
kernel's whole process group, torchrun included, which would pass it on to its ranks as a stop at once: from a kernel,
torchrun starts with SIGINT blocked (it and its ranks never see it), and the kernel passes the stop on as SIGTERM.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.distributed import cleanup, init_distributed
from ..core.errors import ParameterError
from ..core.files import read_jsonl, save_json
from ..core.live import follow
from ..core.lock import hold_lock
from ..core.preemption import (
    Preempted,
    handle_preemption,
    interrupts_blocked,
    interrupts_recorded,
    requested,
    stop_message,
)
from ..core.runs import check_writable
from ..core.written import note_written
from ..data import load_data
from ..models import Teacher, build_teachers, finished_student_folder
from .checkpoint import PREEMPTED
from .config import RUN_FILE, DistillConfig, load_run_config
from .train import DistillRun, describe_run, distill, run_summary

# The signals torchrun passes on to its ranks: its default ones, and SIGUSR1 (SLURM's --signal).
FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"


def torchrun_signal_env() -> dict[str, str]:
    """The environment that makes torchrun pass SIGUSR1 on too: its ``--signals-to-handle`` (``PET_`` variable,
    newer torch) and the variable older torch reads directly."""
    return {"PET_SIGNALS_TO_HANDLE": FORWARDED_SIGNALS, "TORCHELASTIC_SIGNALS_TO_HANDLE": FORWARDED_SIGNALS}


def run_distill(config_path, out_dir=None, random_teachers: bool = False, log_every: int = 10, overwrite: bool = False,
                log=print):
    """What ``python -m workbench distill`` does, in this process: one rank of a torchrun job or the only one."""
    cfg, file_out, relative_to = load_run_config(config_path)
    out_dir = Path(out_dir).resolve() if out_dir else file_out  # --out: from here, before moving
    if out_dir is None:
        raise ParameterError(f"no out_dir: give --out DIR or an out_dir entry in {config_path}")
    # the run file's relative paths (data, weight files) start where the run that wrote it ran
    with handle_preemption(), contextlib.chdir(relative_to or Path.cwd()):
        ranks = init_distributed(cfg.device)
        try:
            if ranks.main:  # before the lock makes the folder: a run that cannot start leaves no trace
                cfg.check_inputs()
                check_writable(Path(out_dir))
            with hold_lock(out_dir, what=cfg.kind) if ranks.main else nullcontext():  # rank 0 writes for all
                return _run(cfg, out_dir, ranks, random_teachers, log_every, overwrite, log)
        finally:
            cleanup()


def _run(cfg: DistillConfig, out_dir, ranks, random_teachers: bool, log_every: int, overwrite: bool,
         log) -> DistillRun:
    if ranks.size > 1 and cfg.device.startswith("cuda:"):
        raise ParameterError(f"device={cfg.device!r} would put every rank on one GPU: under torchrun use device "
                             "'auto' (or 'cuda'): each rank takes the GPU of its LOCAL_RANK")
    say = log if ranks.main else (lambda *_: None)
    say(f"{ranks.size} process(es); global batch {cfg.batch_size} ({cfg.batch_size // ranks.size} per process); "
        f"writing to {Path(out_dir).resolve()}")
    data = load_data(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test,
                     image_size=cfg.input_size, seed=cfg.seed)
    with ranks.main_first():  # rank 0 checks (or, with overwrite, clears) out_dir before anyone writes there
        if ranks.main:
            cfg.claim_out_dir(out_dir, overwrite, log=say, inputs_checked=True)
    # each machine's local rank 0 first: an offline teacher trained on first use is cached once per machine
    # (its $WORKBENCH_CACHE), and the machine's other ranks load it instead of training it again
    with ranks.main_first(per_node=True):
        torch.manual_seed(cfg.seed)  # the same random teachers on every rank (random_teachers)
        teachers = build_teachers(cfg.teachers, cfg.teacher_weights, cfg.preprocessing,
                                  pretrained=not random_teachers)
    t0 = time.time()
    run = distill(cfg, data, teachers, out_dir=out_dir, log_every=log_every, log=say)
    if ranks.main:  # the notebook writes its own, with its probes, over this one
        save_json(run_summary(cfg, data, run, time.time() - t0, ranks.size) | {"random_teachers": random_teachers},
                  Path(out_dir) / "summary.json")
    say(run.describe())
    return run


@dataclass
class LaunchedRun:
    """A finished run of other processes: what the notebook uses of a ``DistillRun``."""
    history: list[dict]
    student_folder: Path  # out_dir/student: the finished student
    runtime_s: float  # wall time of the launch, start-up included
    skipped: list[str] = field(default_factory=list)  # unreadable training files
    resumed_from: int | None = None  # the step the run resumed from, None for a fresh start
    command: list[str] = field(default_factory=list)
    log_file: Path | None = None
    nproc: int = 1
    precision: str = "fp32"  # what the ranks computed in

    def describe(self) -> str:
        return describe_run(f"distilled in {self.runtime_s:.0f}s in {self.nproc} processes, start-up included", self)


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

    Every new record of ``<out_dir>/metrics.jsonl`` goes to ``callback`` (e.g. a ``LivePlot``), those a
    resumed run had written before included, each step once; the processes' output goes to
    ``<out_dir>/distill.log``, whose end is shown if the run fails. ``out_dir`` follows the notebook's
    rules (the same configuration continues, another is refused); pass ``--overwrite`` in ``extra`` to
    clear it instead."""
    cfg, _, _ = load_run_config(config_path)  # a bad file fails here, at once, not in N processes
    extra = list(extra or [])
    overwrite = "--overwrite" in extra
    if overwrite:  # cleared here, before the log is opened in it, not by the processes
        extra.remove("--overwrite")
    out_dir = cfg.claim_out_dir(out_dir, overwrite, log=lambda *_: None)
    metrics = out_dir / "metrics.jsonl"
    cmd = torchrun_command(config_path, nproc, out_dir, extra)
    log_file = out_dir / "distill.log"
    log(f"launching {nproc} processes: {' '.join(cmd[1:])}  (output: {log_file})")
    t0, seen = time.time(), set()
    # torchrun forwards SIGTERM to its ranks; SIGUSR1 too when told (a scheduler may signal every process)
    env = {**os.environ, **torchrun_signal_env()}
    with handle_preemption(), open(log_file, "wb") as out:
        note_written(log_file)
        with interrupts_blocked(interrupts_recorded()):  # in a kernel: the stop button is this process's to pass on
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        forwarded = None  # the signal this process got and passed on

        def running() -> bool:  # a signal to this process (the notebook's kernel) goes on to torchrun, once
            nonlocal forwarded
            if requested() and not forwarded:
                forwarded = requested()
                proc.send_signal(signal.SIGTERM)
            return proc.poll() is None

        try:
            for record in follow(metrics, running, poll_s):
                key = (record.get("step"), "val_loss" in record)  # a step's training record, or its epoch's val
                if key not in seen:  # a rewritten file (a resumed run) is read again: each record once
                    seen.add(key)
                    if callback is not None:
                        callback(record)
        except BaseException:  # interrupted in the notebook: stop the processes too
            proc.terminate()
            proc.wait()
            raise
    text = log_file.read_text(encoding="utf-8", errors="replace")
    marker = out_dir / PREEMPTED
    if proc.returncode != 0 and marker.is_file() and marker.stat().st_mtime >= t0:  # written by this launch
        stopped = json.loads(marker.read_text())
        raise Preempted(stop_message(f"distillation with {nproc} processes", stopped["step"], stopped["checkpoint"],
                                     forwarded or stopped["signal"]))
    if proc.returncode != 0:
        raise RuntimeError(f"distillation with {nproc} processes failed (exit code {proc.returncode}); "
                           f"end of {log_file}:\n{text[-3000:]}")
    final = finished_student_folder(out_dir)
    meta = json.loads((final / "config.json").read_text()) if (final / "config.json").is_file() else {}
    resumed = re.search(r"resumed from step (\d+)", text)
    return LaunchedRun(read_jsonl(metrics)[0], final, time.time() - t0, meta.get("unreadable_images", []),
                       int(resumed.group(1)) if resumed else None, cmd, log_file, nproc, meta.get("precision", "fp32"))


def distill_or_launch(cfg: DistillConfig, data, teachers: dict[str, Teacher], out_dir,
                      callback: Callable[[dict], None] | None = None, log=print) -> DistillRun | LaunchedRun:
    """The 03 notebook's training: ``distill`` in this process, or, with ``cfg.nproc > 1``, that many torchrun
    processes on this machine that run ``<out_dir>/run.yaml`` while this one follows them live."""
    if cfg.nproc > 1:
        return launch_distill(Path(out_dir) / RUN_FILE, out_dir, cfg.nproc, callback=callback, log=log)
    return distill(cfg, data, teachers, out_dir=out_dir, callback=callback, log=log)
