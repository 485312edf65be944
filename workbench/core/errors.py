"""The workbench's own exceptions: bad input ends in one of these, with one message that says what to do.

Every failure a researcher can cause (a parameter, a data folder, a weight file, an out_dir) is raised as a
``WorkbenchError``, whose message names the parameter, the value or file, what was expected and what to type
instead. A library's exception that caused it stays chained (``raise ... from err``) for whoever needs the detail,
but the last line a notebook or the command line shows is the workbench's. Each class also derives from the builtin
exception of its kind, so ``except ValueError`` (or ``OSError``) written against the libraries still catches it.

A leaf module: it imports nothing of the package, so every module can raise these.
"""
from __future__ import annotations


def cause(err: BaseException, lines: int = 3, chars: int = 400) -> str:
    """A library's exception in a workbench message: its type and first lines, as one line."""
    text = " ".join(line.strip() for line in str(err).strip().splitlines()[:lines])[:chars]
    return f"{type(err).__name__}: {text}"


class WorkbenchError(Exception):
    """Bad input, reported by the workbench: the message says which input and what to use instead."""


class ParameterError(WorkbenchError, ValueError):
    """A parameter's value: of the wrong type, out of bounds, unknown, or at odds with another parameter."""


class OutDirError(WorkbenchError, ValueError):
    """An out_dir that cannot hold this run: a file, unwritable, or holding another run or files of another program."""


class OutDirBusy(WorkbenchError, RuntimeError):
    """An out_dir another live run is writing in (its pid and host in the message)."""


class DataError(WorkbenchError, ValueError):
    """A data folder that cannot serve the run: missing, empty, of another layout, or too small."""


class DatasetNotFound(DataError, FileNotFoundError):
    """A named dataset's root is missing or incomplete; the message says what is expected and how to get it."""


class WeightsError(WorkbenchError, ValueError):
    """A weight file that cannot be loaded: unreadable, cut short, of another format or of another model."""


class UnsafeCheckpoint(WeightsError):
    """A pickle-based checkpoint that needs more than tensors to load (it could run code): refused."""


class ResourceError(WorkbenchError, MemoryError):
    """A run that needs more memory than this machine has, estimated from its configuration before it starts."""


class NonFiniteLoss(WorkbenchError, RuntimeError):
    """Training diverged: the loss is NaN or infinite."""


class MissingFile(WorkbenchError, FileNotFoundError):
    """A file or folder the run needs is not there: a data folder, a weight file, a model not in the local cache."""


class MissingPackage(WorkbenchError, ImportError):
    """An optional package a parameter asks for (an extra: ``logger=tensorboard``) is not installed; the message says
    what to install."""
