"""Preemption: stop a run at the end of its current step, after a checkpoint, when the cluster or the user asks.

Schedulers warn a job before they stop it: SLURM sends SIGTERM on preemption (then SIGKILL after its
grace time) and, with ``--signal=USR1@120``, SIGUSR1 some time before the time limit. Inside
``handle_preemption()`` both signals only *record* that a stop was asked; the training loops read
``requested()`` once per step, finish the step, write a full checkpoint and raise ``Preempted``:

    with handle_preemption():
        for batch in loader:
            ...one step...
            if requested():
                save_checkpoint()
                raise Preempted(f"{requested()}: stopped after step {step}; rerun to resume")

Why only record: the handler runs between two bytecodes of the main thread, wherever it is (inside a
checkpoint write, inside ``print``); raising or writing there could cut a file or a log line in half.
A second signal (SLURM signals every process, and torchrun forwards its own) is recorded again and
changes nothing, so the checkpoint being written is finished, never interrupted.

``Preempted`` is a ``SystemExit`` whose code is ``EXIT_PREEMPTED`` (75, ``EX_TEMPFAIL`` of sysexits.h:
"a temporary failure; the user is invited to retry"): a script or ``python -m workbench`` exits with 75
without a traceback, a batch script can requeue on it, and in a notebook kernel it stops the cell (the
kernel lives on; rerunning the cell resumes). Handlers are installed only in the main thread (Python
allows no other) and the previous ones are restored when the run ends, so a Jupyter kernel keeps its own.

The stop button of a notebook (JupyterLab's square, ``KernelManager.interrupt_kernel``) sends SIGINT. Python
makes that a ``KeyboardInterrupt`` wherever the kernel is, which is what Ctrl-C should do in a terminal but, in a
training loop, throws away every step since the last checkpoint and may cut the one being written. So in a Jupyter
kernel (an ipykernel runs this process) ``handle_preemption`` takes SIGINT as it takes SIGTERM: the first one is
recorded, the step finishes, the checkpoint is written, the cell stops with ``Preempted`` and rerunning it resumes.
A second SIGINT while the run stops (or still runs) is the user insisting: it goes to the handler the kernel had,
a ``KeyboardInterrupt`` at once (files are written atomically: the last complete checkpoint stays). Outside a
kernel (a script, the command line, torchrun's ranks) SIGINT is left alone: Ctrl-C stops at once, as always.

The interrupt goes to the kernel's whole process group (jupyter_client signals the group), so the processes the
kernel started get it too. Worker processes (``workbench.core.parallel``) share an event with their parent: the
parent sets it when it is asked to stop, and each worker's ``requested()`` sees it; they record SIGINT like the
other stop signals, since whoever pressed the button meant the run, and their parent decides (a script's parent
dies of it and kills them). Data-loading workers forked from a kernel ignore it, as they ignore the others.
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

EXIT_PREEMPTED = 75  # os.EX_TEMPFAIL: "temporary failure, the user is invited to retry"
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)

_received: list[int] = []  # signals received while handle_preemption is active, in order
_depth = 0  # nesting of handle_preemption (a launcher around a training loop installs once)
_shared_stop = None  # in a worker process: the parent's "stop" event (multiprocessing.Event)
_interrupt_handler = None  # in a kernel, while handle_preemption is active: the SIGINT handler it replaced


class Preempted(SystemExit):
    """The run stopped at a step boundary because it was asked to (SIGTERM, SIGUSR1; SIGINT in a kernel) and wrote
    a checkpoint first; rerunning the same command or notebook resumes it. Exits a script with ``EXIT_PREEMPTED``."""

    def __init__(self, message: str):
        super().__init__(EXIT_PREEMPTED)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return type(self), (self.message,)


@dataclass(frozen=True)
class StoppedJob:
    """What a job of a worker pool returns instead of its result when the run is preempted: the step its
    checkpoint holds (0: it had not started)."""

    step: int


def _record(signum, frame) -> None:  # noqa: ARG001  (a signal handler's signature)
    _received.append(signum)


def _record_interrupt(signum, frame) -> None:
    """SIGINT in a kernel: the first one is recorded like SIGTERM; a second one is the kernel's own (at once)."""
    first = signum not in _received
    _received.append(signum)
    if first:
        return
    handler = _interrupt_handler
    (handler if callable(handler) else signal.default_int_handler)(signum, frame)


def in_kernel() -> bool:
    """This process is a Jupyter kernel: an ipykernel runs the IPython shell (a plain IPython terminal is not one,
    nor is a script). Imports nothing that is not already loaded."""
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    shell = sys.modules["IPython"].get_ipython()
    return getattr(shell, "kernel", None) is not None


def interrupts_recorded() -> bool:
    """SIGINT is recorded as a stop request in this process now (inside ``handle_preemption``, in a kernel)."""
    return signal.getsignal(signal.SIGINT) is _record_interrupt


@contextmanager
def interrupts_blocked(block: bool) -> Iterator[None]:
    """SIGINT blocked in this thread during the block (a process started there inherits the mask, keeps it across
    exec and passes it on to its own children); one that comes meanwhile waits, or another thread of this process
    takes it: none is lost."""
    if not block:
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def requested() -> str | None:
    """The name of the signal that asked this run to stop (``"parent"`` for a worker whose parent was asked), or
    None while nobody asked."""
    if _received:
        return signal.Signals(_received[0]).name
    if _shared_stop is not None and _shared_stop.is_set():
        return "parent"
    return None


def signals_received() -> int:
    """How many stop signals arrived since the run began (the first, and any that came while it stopped)."""
    return len(_received)


@contextmanager
def handle_preemption(process_exits: bool = False) -> Iterator[None]:
    """Record SIGTERM and SIGUSR1 (and, in a Jupyter kernel, a first SIGINT) instead of dying of them, for the
    duration of the block; the previous handlers come back afterwards. Outside the main thread nothing is installed
    (Python allows handlers only there), and ``requested()`` stays None. Nested blocks share the outer one's
    handlers and record.

    ``process_exits``: the process ends with the block (a command line). A run that stopped (``Preempted``) then
    ignores further stop signals instead of restoring the default handlers, which would let one kill it while
    it exits: under torchrun, the rank that exits first makes torchrun send SIGTERM to the others."""
    global _depth, _interrupt_handler
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    _received.clear()
    previous = {s: signal.signal(s, _record) for s in SIGNALS}
    if in_kernel():  # the notebook's stop button: the same as SIGTERM (a second press: at once)
        _interrupt_handler = previous[signal.SIGINT] = signal.signal(signal.SIGINT, _record_interrupt)
    _depth, stopping = 1, False
    try:
        yield
    except Preempted:
        stopping = process_exits  # stopped, maybe by another rank's signal: the process now exits with 75
        raise
    finally:
        _depth = 0
        for s, handler in previous.items():
            ignore = stopping and s != signal.SIGINT  # a kernel's interrupt is never ignored
            signal.signal(s, signal.SIG_IGN if ignore else handler if handler is not None else signal.SIG_DFL)
        _interrupt_handler = None
        _received.clear()  # acted upon: nothing after this run reads it as a request to stop


def watch_parent(event) -> None:
    """In a worker process: ``requested()`` also reports ``event`` (the parent's stop), and this process's own
    SIGTERM, SIGUSR1 and SIGINT are recorded for the life of the process (a scheduler signals every process of a
    job, a kernel's interrupt goes to its process group); the parent acts on its own: a second interrupt, or any
    interrupt outside a kernel, ends it and it kills its workers."""
    global _shared_stop
    _shared_stop = event
    if threading.current_thread() is threading.main_thread():
        for s in (*SIGNALS, signal.SIGINT):
            signal.signal(s, _record)


def ignore_stop_signals(worker_id: int = 0) -> None:  # noqa: ARG001  (DataLoader's worker_init_fn signature)
    """A data-loading worker's start: it ignores SIGTERM and SIGUSR1, which a scheduler sends to every process of a
    job, and, forked from a kernel, SIGINT, which the stop button sends to the kernel's process group. The training
    process stops after its step; a worker that died of the signal would fail that step. (Workers end with the
    process they serve.)"""
    for s in (*SIGNALS, signal.SIGINT) if in_kernel() else SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def stop_message(what: str, step: int, where: str | None, signal_name: str | None = None) -> str:
    """The one line a preempted run prints and raises with (``signal_name``: default, the one this process got)."""
    saved = f"checkpoint at step {step}: {where}" if where else "no out_dir, so nothing was saved"
    return (f"{signal_name or requested() or 'stop'} received: {what} stopped after step {step} ({saved}); exit code "
            f"{EXIT_PREEMPTED}. Rerun the same command (or notebook cell) with the same out_dir to resume.")
