"""Sharing the CPU with other jobs: thread counts fit the cores this process may use, and a passive OpenMP wait
policy is one export away (it is not the default: alone it costs more than it saves, see below).

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
within 2.2x", so the default stays libgomp's and a shared machine's users ``export OMP_WAIT_POLICY=PASSIVE``.

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
user set neither ``OMP_NUM_THREADS`` nor ``MKL_NUM_THREADS``. Elsewhere the thread count stays torch's own, so
results stay the same to the last digit. torch's inter-op pool waits on a condition variable (it does not
spin) and torch's wheels use libgomp, not Intel's OpenMP, so ``KMP_BLOCKTIME`` does not apply.
"""
from __future__ import annotations

import math
import os
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
