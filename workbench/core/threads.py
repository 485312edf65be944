"""Sharing the CPU with other jobs: the workbench's processes that train at the same time split the cores between
them (``CoreShare``), thread counts fit the cores this process may use, and a user's OpenMP settings reach every
process the workbench starts.

Why. torch runs its intra-op threads on OpenMP (GNU libgomp in torch's Linux wheels: see
``torch.__config__.parallel_info()``). At the end of each parallel region a libgomp thread that has nothing to
do spins, by default for 300,000 iterations (a few milliseconds), before it sleeps. Alone on the machine that
costs nothing; beside another job (a second kernel, the tests next to a notebook) the spinning thread burns the
core the other job's threads are waiting for, and both slow down far more than sharing explains. A timm ViT
training loop on a 2-core machine: 43.1 s alone, 169.6 s each as two at once (3.9x, where fair sharing is 2x);
with ``OMP_WAIT_POLICY=PASSIVE``, 45.4 s alone and 81 s each as two (1.9x). ``benchmarks/contention.py``
measures the same on 03's distillation step (README, "Benchmarks"): on this 2-core machine, quiet, libgomp's
default gave 1.85 s alone and 4.4x that as two at once; ``PASSIVE`` 2.49 s alone (1.32x slower: a small model's
many short parallel regions pay a wake-up each) and 1.47x as two. A short spin (``GOMP_SPINCOUNT=30000``) kept
the time alone (+2 to 5 %) but was worse as two (7.5x). No setting met both "alone within 5 %" and "two at once
within 2.2x", so the wait policy stays libgomp's (or the user's).

What meets both is to never have more OpenMP threads than cores: ``CoreShare``, an optimizer-step hook that
every ``import workbench`` installs. Each process that trains says so in a small file of a folder all of them
see (one per set of cores); at most twice a second it reads how many train at once and takes its share of the
cores as torch's thread count (2 cores, 2 trainers: 1 thread each, so no thread spins on the core the other one
needs), and takes them all back when it trains alone. Alone it costs one clock read per step and one small file
write every half second. The thread count decides how floating-point sums are split, so a run beside another one can
differ from the same run alone in the last digits: ``WORKBENCH_SHARE_CORES=0`` keeps the thread count fixed
(the test suite sets it; bit-for-bit reruns want it). Measured by ``benchmarks/contention.py`` on this 2-core
machine, quiet: 1.81 s alone (fixed threads: 1.82 s), 1.87x that each as two at once (fixed threads: 5.75x).

When. libgomp reads its environment once, when it is loaded, which is at ``import torch``; setting the variable
afterwards changes nothing in that process. So ``share_cores()`` runs as the very first statement of
``workbench/__init__.py``, before anything imports torch; this module imports nothing heavy. Every way into
the workbench goes through that import first: ``python -m workbench``, torchrun's ranks (``-m workbench``),
the notebooks (``import workbench as wb`` is their first import), papermill and Jupyter kernels running them,
and the tests (``tests/conftest.py`` imports workbench before torch). The variables it sets are in
``os.environ``, so every process started from here inherits them before its own torch loads: the spawned
workers of ``workbench.core.parallel``, torchrun launched by 03, subprocesses of the tests. A script that
imports torch *before* workbench keeps libgomp's default in its own process (its children still get the
policy); set ``OMP_WAIT_POLICY=PASSIVE`` in the shell for it.

What. Only defaults, never an override: ``OMP_NUM_THREADS`` only where a
cgroup CPU quota (a container's ``cpu.max``) allows fewer cores than the affinity mask, which is all libgomp
and torch look at (they already follow ``os.sched_getaffinity``, e.g. under ``taskset``), and only when the
user set neither ``OMP_NUM_THREADS`` nor ``MKL_NUM_THREADS``. Elsewhere the thread count starts as torch's own
and changes only by ``CoreShare``. torch's inter-op pool waits on a condition variable (it does not
spin) and torch's wheels use libgomp, not Intel's OpenMP, so ``KMP_BLOCKTIME`` does not apply.
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import tempfile
import time
import zlib
from collections import deque
from collections.abc import MutableMapping
from pathlib import Path

USER_WAIT = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # either one set: the user chose how OpenMP waits
USER_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # either one set: the user chose torch's thread count


def affinity_cores() -> int:
    """The cores this process may run on (``taskset``, a job scheduler's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_quota(cgroup: str | Path = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time the cgroup quota allows (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``), or None
    without a quota."""
    root = Path(cgroup)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def cpu_cores(cgroup: str | Path = "/sys/fs/cgroup") -> int:
    """The cores this process can keep busy: its affinity mask, capped by the cgroup's quota (rounded up)."""
    cores = affinity_cores()
    quota = cpu_quota(cgroup)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def share_cores(environ: MutableMapping[str, str] | None = None, cgroup: str | Path = "/sys/fs/cgroup") -> dict:
    """Set the defaults above in ``environ`` (``os.environ``) where the user has not; return what it set."""
    env = os.environ if environ is None else environ
    added = {}
    cores = cpu_cores(cgroup)
    if cores < affinity_cores() and not any(k in env for k in USER_THREADS):
        added["OMP_NUM_THREADS"] = str(cores)
    env.update(added)
    return added


SHARE_ENV = "WORKBENCH_SHARE_CORES"  # "0": keep the thread count fixed (bit-for-bit reruns, the test suite)


class CoreShare:
    """The cores of this process's CPU set, split between the workbench processes training on them.

    Called before every optimizer step (``install_core_share``: a global ``torch.optim`` hook, so every training
    loop takes part without knowing it). At most every ``check_s`` seconds it writes, in ``<folder>/<pid>``, until
    when this process counts as training (``busy_s`` from now, or twice its median time per step where steps are
    slower), then counts the processes whose time has not passed and sets torch's thread count to
    ``max(1, min(base, cores // trainers))``. ``base`` is the thread count the process had (torch's default, or
    the user's ``torch.set_num_threads``, which it follows when it changes). A process that stops training gives
    its cores back within ``busy_s`` (at once when it exits).
    """

    def __init__(self, folder: str | Path | None = None, cores: int | None = None, check_s: float = 0.5,
                 busy_s: float = 2.0, clock=time.monotonic, wall=time.time, pid: int | None = None):
        self.cores = cores or cpu_cores()
        self.folder = Path(folder) if folder is not None else default_share_folder()
        self.check_s, self.busy_s, self.clock, self.wall = check_s, busy_s, clock, wall
        self.pid = pid  # None: this process, whichever it is (a forked child that trains is another trainer)
        self.next_check = self.last_step = None
        self.intervals: deque[float] = deque(maxlen=5)  # the last seconds between two steps
        self.base = self.threads = None

    def __call__(self, *hook_args) -> None:
        now = self.clock()
        if self.last_step is not None:
            self.intervals.append(now - self.last_step)
        self.last_step = now
        if self.next_check is not None and now < self.next_check:
            return
        self.next_check = now + self.check_s
        # slow steps keep the claim between two of them; the median ignores a pause (evaluation, an idle kernel)
        step_s = statistics.median(self.intervals) if self.intervals else 0.0
        try:
            trainers = self.announce(max(self.busy_s, 2 * step_s))
        except OSError:  # a folder it may not write: train with the threads it has
            return
        self.set_threads(trainers)

    @property
    def file(self) -> Path:
        return self.folder / str(self.pid or os.getpid())

    def announce(self, busy_s: float) -> int:
        """Say this process trains for ``busy_s`` more seconds; how many processes train now (this one included)."""
        if not self.folder.is_dir():
            for folder in (self.folder.parent, self.folder):
                folder.mkdir(exist_ok=True)
                with contextlib.suppress(OSError):  # every user's processes share the machine's cores
                    folder.chmod(0o1777)
        mine = self.file
        tmp = self.folder / f".{mine.name}.tmp"
        tmp.write_text(f"{self.wall() + busy_s:.3f}")
        os.replace(tmp, mine)
        return 1 + sum(1 for f in self.folder.iterdir() if f != mine and self.training(f))

    def training(self, file: Path) -> bool:
        """``file``'s process still trains: its time has not passed and it is alive (files of dead ones go)."""
        try:
            until = float(file.read_text())
            pid = int(file.name)
        except (OSError, ValueError):
            return False
        if until < self.wall():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            file.unlink(missing_ok=True)
            return False
        except PermissionError:  # another user's process: alive
            pass
        return True

    def set_threads(self, trainers: int) -> None:
        import torch

        current = torch.get_num_threads()
        if self.base is None or current != self.threads:  # first call, or the user set a thread count since
            self.base = current
        threads = max(1, min(self.base, self.cores // trainers))
        if threads != current:
            torch.set_num_threads(threads)
        self.threads = threads

    def leave(self) -> None:
        """This process stops training: the others may take its cores at once."""
        self.file.unlink(missing_ok=True)


def default_share_folder() -> Path:
    """A folder every process of this machine sees, one per set of cores (processes pinned to other cores do not
    share with these)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        cpus = list(range(os.cpu_count() or 1))
    return Path(tempfile.gettempdir()) / "workbench-cores" / f"{zlib.crc32(str(cpus).encode()):08x}"


def install_core_share(environ: MutableMapping[str, str] | None = None) -> CoreShare | None:
    """Every optimizer step of this process takes part in ``CoreShare`` (not with ``WORKBENCH_SHARE_CORES=0``, nor
    on one core); returns it, or None."""
    env = os.environ if environ is None else environ
    if env.get(SHARE_ENV, "1") == "0" or cpu_cores() < 2:
        return None
    import atexit

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    share = CoreShare()
    register_optimizer_step_pre_hook(share)
    atexit.register(share.leave)
    return share
