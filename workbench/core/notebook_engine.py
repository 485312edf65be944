"""A papermill engine that preempts like the command line: a signal to papermill stops the notebook after a step.

papermill runs a notebook in a kernel that jupyter_client starts in a session of its own, so a signal sent to the
papermill process never reaches it: SIGTERM (a scheduler's preemption, ``scancel --signal=TERM``) ended papermill
silently and left the kernel training until the scheduler's SIGKILL, with no checkpoint; SIGINT (Ctrl-C) printed a
KeyboardInterrupt traceback from zmq. ``WorkbenchEngine`` is papermill's own engine with one difference, for the
duration of a notebook's execution: SIGTERM, SIGUSR1 and SIGINT to papermill are

- the first: forwarded to the kernel as SIGTERM. A training loop inside ``handle_preemption`` records it, finishes
  its step, writes its checkpoint and ``preempted.json`` and stops the cell with ``Preempted``; papermill saves the
  output notebook as it does after any error, prints the kernel's one-line message instead of a traceback and exits
  with ``EXIT_PREEMPTED`` (75), so a batch script requeues it (as it does where the kernel had the signal straight
  from the scheduler: a cell stopped with ``Preempted`` always means a checkpoint to resume from). A kernel that is
  not in such a loop dies of the SIGTERM (its default): papermill exits with 75 too and says the notebook stopped;
  rerunning it with the same out_dir resumes, since workbench notebooks reload the work they finished. A kernel
  that took the signal but ran on (it came as the training ended) is stopped before its next cell, so a requested
  stop is never lost;
- a second one: the user or the scheduler means it. The kernel's process group is killed (SIGKILL) and papermill
  exits at once with 128 + the signal; files are written atomically, so the last complete checkpoint stays.

The kernel gets SIGTERM whatever papermill got, because that is the signal a workbench kernel stops after a step
on; a kernel that also gets the scheduler's own SIGTERM (SLURM signals every process of a job) records it twice,
which changes nothing. A notebook that ends normally or with another error gets papermill's exact behaviour and
output. Handlers are installed only in the main thread (Python allows no other), and only while the notebook runs;
the previous ones come back afterwards.

papermill finds the engine through its ``papermill.engine`` entry point (``pyproject.toml``), and this module makes
it the default one too (the end of this file), so a plain ``papermill nb.ipynb out.ipynb`` uses it.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from jupyter_client import AsyncKernelManager
from traitlets.utils.importstring import import_item

from .preemption import EXIT_PREEMPTED, SIGNALS, Preempted

# Importing any part of papermill imports papermill.engines, which loads its entry points, this module among them.
# Where this module is imported first, the imports below are what import papermill, and its entry point then finds
# this module half-loaded: the name must exist by then. (The end of the module registers the engine again.)
WorkbenchEngine = None
from papermill.engines import NBClientEngine, papermill_engines  # noqa: E402
from papermill.exceptions import PapermillExecutionError  # noqa: E402

STOP_SIGNALS = (*SIGNALS, signal.SIGINT)  # SIGTERM, SIGUSR1 (where the platform has them) and Ctrl-C
PREEMPTED_ERROR = Preempted.__name__  # the ename of a cell that a training loop stopped after a checkpoint


class NotebookStopped(Exception):
    """Raised before a cell once a stop was asked: the kernel took the forwarded signal but ran on."""


class _Stop:
    """One notebook's execution: the stop signals papermill received, the kernel they go to, the cell running."""

    def __init__(self):
        self.signals: list[int] = []
        self.kernels: list = []  # the kernel managers nbclient made for this notebook (one)
        self.cell: int | None = None  # the index of the cell that started last
        self.before = False  # stopped before the cell after that one, the kernel running on (NotebookStopped)

    def kernel_manager_class(self, base):
        """``base`` (nbclient's kernel manager class) that tells this object which kernel to signal."""
        if isinstance(base, str):
            base = import_item(base)
        kernels = self.kernels

        class KernelManager(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                kernels.append(self)

        return KernelManager

    def before_cell(self, then=None):
        """nbclient's ``on_cell_start`` hook: stops the notebook before a cell once a stop was asked (``then``: the
        hook it replaces, run after it)."""

        def hook(cell, cell_index, **kwargs):
            if self.signals:
                self.before = True
                raise NotebookStopped(f"a stop was asked before cell {cell_index + 1}")
            self.cell = cell_index
            return then(cell=cell, cell_index=cell_index, **kwargs) if then is not None else None

        return hook

    def kernel(self):
        """(provisioner, process) of the kernel, or (None, None) before it started (or where it is not local)."""
        for km in reversed(self.kernels):
            provisioner = getattr(km, "provisioner", None)
            process = getattr(provisioner, "process", None)
            if process is not None:
                return provisioner, process
        return None, None

    def handle(self, signum, frame) -> None:  # noqa: ARG002  (a signal handler's signature)
        self.signals.append(signum)
        provisioner, process = self.kernel()
        if len(self.signals) == 1:
            if process is not None:
                try:
                    process.send_signal(signal.SIGTERM)  # Popen: nothing is sent to a pid it has already reaped
                except OSError:
                    pass  # it died meanwhile: execution ends with a dead kernel, and papermill exits with 75
            return
        if process is not None and process.poll() is None:
            try:  # the kernel leads a session of its own: its group holds what it started (torchrun, workers)
                group = getattr(provisioner, "pgid", None)
                os.killpg(group, signal.SIGKILL) if group == process.pid else process.kill()
            except OSError:
                pass
        code = 128 + signum
        os.write(2, f"{signal.Signals(signum).name} received again: the kernel was killed and papermill stopped at "
                    f"once; exit code {code}. Rerun with the same out_dir to resume from the last complete "
                    "checkpoint.\n".encode())
        os._exit(code)  # at once: no cleanup that could wait on the dead kernel

    @contextmanager
    def handling(self) -> Iterator[None]:
        """``handle`` for the stop signals during the block, in the main thread; the previous handlers afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self.handle) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def stopped_message(self) -> str:
        """The one line papermill ends with when the kernel did not stop with ``Preempted`` (cells numbered as
        papermill's ``--log-output`` numbers them)."""
        if self.cell is None:
            where = "before its first cell"
        elif self.before:
            where = f"after cell {self.cell + 1}"
        else:
            where = f"in cell {self.cell + 1}, its kernel not in a step it could finish first"
        return (f"{signal.Signals(self.signals[0]).name} received: the notebook stopped {where}; exit code "
                f"{EXIT_PREEMPTED}. Rerun it with the same out_dir to resume: workbench notebooks reload the work they "
                "finished.")


def preempted_error(nb) -> str | None:
    """The message of the cell a training loop stopped with ``Preempted``, or None."""
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.output_type == "error" and output.ename == PREEMPTED_ERROR:
                return output.evalue
    return None


def save_as_papermill(nb, output_path) -> None:
    """Write the output notebook as papermill writes one that ended with an error (a note at the top, an anchor before
    the cell); papermill would then raise, with a traceback."""
    from papermill.execute import raise_for_execution_errors  # papermill.execute imports papermill.engines

    try:
        raise_for_execution_errors(nb, output_path)
    except PapermillExecutionError:
        pass


class WorkbenchEngine(NBClientEngine):  # noqa: F811  (the placeholder above)
    """papermill's nbclient engine; a stop signal to papermill stops the notebook after the kernel's current step
    (with a checkpoint), and papermill exits with 75 (see the module's docstring)."""

    @classmethod
    def execute_notebook(cls, nb, kernel_name, **kwargs):
        stop = _Stop()
        kwargs["kernel_manager_class"] = stop.kernel_manager_class(kwargs.get("kernel_manager_class")
                                                                   or AsyncKernelManager)
        kwargs["on_cell_start"] = stop.before_cell(kwargs.get("on_cell_start"))
        with stop.handling():
            try:
                nb = super().execute_notebook(nb, kernel_name, **kwargs)
            except Exception:  # a dead kernel, or NotebookStopped: after a stop signal, the stop; else papermill's
                if not stop.signals:
                    raise
                message = stop.stopped_message()
            else:
                message = preempted_error(nb)
                if message is None:
                    return nb
                save_as_papermill(nb, nb.metadata.get("papermill", {}).get("output_path", kwargs.get("output_path")))
            print(message, file=sys.stderr, flush=True)
            raise Preempted(message) from None


# The default engine. papermill imports this module from its entry point (``register_entry_points`` at the end of
# papermill.engines, just after ``register(None, NBClientEngine)``) and registers the class under its entry point's
# name, "workbench"; registering it under None as well makes it the engine of a plain ``papermill nb out`` (no
# ``--engine``). Nothing else is changed. ("workbench" is registered here too for where this module was imported first:
# papermill then found the placeholder above.)
papermill_engines.register(None, WorkbenchEngine)
papermill_engines.register("workbench", WorkbenchEngine)
