"""One point of a sweep as submitit runs it: the point's command in a child process, and its state on disk.

This module imports nothing of the workbench (the standard library and submitit only) and the sweep sends it to
the job by value (``cloudpickle.register_pickle_by_value``): the job's process then never imports the workbench and
torch, whose start-up would double every point's. It starts the command, which does.

``status/<point>.json`` records the state (``running``, then ``done``, ``failed`` or ``preempted``: the command's
exit 0, another code, or 75, ``EX_TEMPFAIL``, the workbench's "stopped at a checkpoint: rerun me"), the exit code,
the host and the command's pid (so a reader can tell a run that died from one that runs), the times and the
attempt.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import submitit

EXIT_PREEMPTED = 75  # workbench.core.preemption's code, repeated here so that the job needs no workbench import

_running: subprocess.Popen | None = None  # in the job's process: the point's command, which checkpoint() stops


@dataclass
class PointJob:
    """Runs one point's command in the submitit job and records its state in ``status/<name>.json``. submitit
    calls ``checkpoint`` when the job is warned (SLURM's signal before the time limit, the local executor's
    time-out): the command is asked to stop (SIGTERM: it finishes its step and checkpoints) and the same job is
    requeued, which resumes the point in its out_dir."""
    out: str
    name: str
    command: list[str]
    cwd: str

    def __call__(self) -> str:
        global _running
        status, log_path = Path(self.out) / "status" / f"{self.name}.json", Path(self.out) / "logs" / f"{self.name}.log"
        attempt = read_status(status).get("attempt", 0) + 1
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"=== attempt {attempt} on {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{' '.join(self.command)}\n".encode())
            log.flush()
            started = time.time()
            _running = subprocess.Popen(self.command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
            record = {"state": "running", "exit_code": None, "host": socket.gethostname(), "pid": _running.pid,
                      "started": started, "ended": None, "attempt": attempt, "command": self.command}
            write_status(status, record)
            try:
                code = _running.wait()
            except BaseException:  # this job is being stopped: the point stops at a step boundary, with a checkpoint
                code = stop(_running)
                raise
            finally:
                state = "done" if code == 0 else "preempted" if code == EXIT_PREEMPTED else "failed"
                write_status(status, record | {"state": state, "exit_code": code, "ended": time.time()})
        if state == "failed":
            raise RuntimeError(f"point {self.name} exited with {code}: see {log_path}")
        return state

    def checkpoint(self, *args, **kwargs):
        if _running is not None:
            stop(_running)  # __call__ records "preempted" as the command exits
        return submitit.helpers.DelayedSubmission(PointJob(self.out, self.name, self.command, self.cwd))


def stop(process: subprocess.Popen, grace_s: float = 600) -> int:
    """Ask a point's command to stop as a scheduler would: SIGTERM, after which a stage finishes its step, writes a
    checkpoint and exits 75; killed if it has not within ``grace_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def read_status(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def write_status(path: Path, record: dict) -> None:
    """Written whole or not at all (a temporary file renamed): a reader never sees half a record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)
