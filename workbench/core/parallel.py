"""Independent jobs on the CPU's cores: a pool of processes, each with its share of the threads.

Small models barely use a second core. A 48-image training step of the offline-world student takes
56 ms on two threads and 78 ms on one, so two single-threaded processes train two students in the
time one takes on both cores: 1.4x the throughput, and nothing about a job depends on its neighbour.

    map_jobs(fn, jobs, shared, workers=2, on_record=live_plot, on_result=collect)

runs ``fn(job, shared, emit)`` for every job: in this process when ``workers`` is 1, otherwise in
``workers`` spawned processes that receive ``shared`` once, at start-up. What a job passes to
``emit`` (its live records) reaches ``on_record`` here while it runs, and always before its result
reaches ``on_result``. ``fn`` must be a module-level function (the processes import it by name).

Preemption: when this process is asked to stop (``workbench.core.preemption``: SIGTERM, SIGUSR1), it sets an
event the workers share, so each job sees ``requested()`` too, finishes its step, saves what it needs and
returns (a ``StoppedJob``); the workers also record the signals they receive themselves. Jobs not started
yet see it at once.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch
import torch.multiprocessing

from .preemption import interrupts_blocked, interrupts_recorded, requested, watch_parent
from .threads import cpu_cores  # the cores this process may use: affinity mask and cgroup quota

_worker: dict = {}  # in a pool process: fn, shared and emit, set once by _init_worker


def auto_workers(n_jobs: int, device: torch.device) -> int:
    """One process per core on CPU (at most one per job); on GPU one, this one."""
    if device.type != "cpu":
        return 1
    return max(1, min(cpu_cores(), n_jobs))


def map_jobs(fn: Callable[[Any, Any, Callable[[dict], None]], Any], jobs: Sequence, shared: Any, workers: int,
             on_record: Callable[[dict], None], on_result: Callable[[int, Any], None]) -> None:
    """Run every job; ``on_result(i, result)`` as job ``i`` ends. Jobs start in the order given."""
    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            on_result(i, fn(job, shared, on_record))
        return
    workers = min(workers, len(jobs))
    threads = max(1, cpu_cores() // workers)
    # spawn: fresh interpreters inherit no thread pool (fork after OpenMP can hang) and it works on every OS;
    # torch's context shares tensors through shared memory instead of copying them through a pipe.
    ctx = torch.multiprocessing.get_context("spawn")
    records = ctx.SimpleQueue()  # put() writes at once: a job's records are in the pipe before its result
    stop = ctx.Event()  # set when this process is asked to stop: the workers' jobs stop after their step
    # in a kernel the stop button's SIGINT reaches the whole process group: the workers start with it blocked and
    # stop through ``stop`` after their step, as this process passes it on (one starting up would die of it)
    with interrupts_blocked(interrupts_recorded()):
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(fn, shared, records, threads, stop))
        futures = {pool.submit(_run_job, job): i for i, job in enumerate(jobs)}
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            if requested() and not stop.is_set():
                stop.set()
            _drain(records, on_record)
            for future in done:
                on_result(futures[future], future.result())
    except BrokenProcessPool as err:
        _terminate(pool)
        raise RuntimeError("a worker process died (out of memory? or, in a script, a call without the "
                           "`if __name__ == '__main__':` guard that spawned processes need); run the jobs in this "
                           "process instead (workers=1; workers = 1 in 05) to see why") from err
    except BaseException:  # a failed job, or an interrupted kernel: stop the others now rather than after their jobs
        _terminate(pool)
        raise
    pool.shutdown(wait=True)
    _drain(records, on_record)


def _init_worker(fn, shared, records, threads: int, stop) -> None:
    torch.set_num_threads(threads)
    watch_parent(stop)
    _worker.update(fn=fn, shared=shared, emit=records.put)


def _run_job(job):
    return _worker["fn"](job, _worker["shared"], _worker["emit"])


def _drain(records, on_record: Callable[[dict], None]) -> None:
    while not records.empty():
        on_record(records.get())


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the running jobs too, not only the pending ones (before Python 3.14 there is no public way)."""
    for p in list((pool._processes or {}).values()):
        p.kill()  # not SIGTERM: a worker records that as a request to stop after its step (preemption)
    pool.shutdown(wait=True, cancel_futures=True)  # its manager thread sees the workers gone and reaps them
