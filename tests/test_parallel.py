import multiprocessing
import os

import pytest
import torch

from workbench.core.parallel import auto_workers, cpu_cores, map_jobs


def square_and_report(job, shared, emit):
    """A job as the pool runs it (module level: the worker processes import it by name)."""
    for step in range(3):
        emit({"job": job, "step": step})
    if job == "boom":
        raise ValueError("job 'boom' failed")
    if job == "crash":
        os._exit(1)  # as the kernel's out-of-memory killer would
    return job * shared, torch.get_num_threads(), os.getpid()


def run(jobs, workers):
    records, results, events = [], {}, []

    def on_record(r):
        records.append(r)
        events.append(("record", r["job"], r["step"]))

    def on_result(i, result):
        results[i] = result
        events.append(("result", jobs[i], None))

    map_jobs(square_and_report, jobs, 10, workers, on_record, on_result)
    return records, results, events


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_every_job_runs_and_its_records_come_before_its_result(workers):
    jobs = [1, 2, 3, 4, 5]
    records, results, events = run(jobs, workers)
    assert {i: r[0] for i, r in results.items()} == {i: 10 * j for i, j in enumerate(jobs)}
    assert sorted((r["job"], r["step"]) for r in records) == [(j, s) for j in jobs for s in range(3)]
    for job in jobs:
        done = events.index(("result", job, None))
        assert all(events.index(("record", job, s)) < done for s in range(3))
    pids = {r[2] for r in results.values()}
    if workers == 1:
        assert pids == {os.getpid()}
    else:  # other processes, each with its share of the cores
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
        assert {r[1] for r in results.values()} == {max(1, cpu_cores() // 2)}


@pytest.mark.slow
def test_a_failing_job_raises_here_and_stops_the_pool():
    with pytest.raises(ValueError, match="job 'boom' failed"):
        run([1, "boom", 3, 4], workers=2)
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


@pytest.mark.slow
def test_a_worker_that_dies_is_reported_with_what_to_do():
    with pytest.raises(RuntimeError, match="worker process died.*workers=1"):
        run([1, "crash", 3], workers=2)
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


def test_auto_workers_is_one_per_core_on_cpu_and_one_on_gpu():
    assert auto_workers(100, torch.device("cpu")) == cpu_cores()
    assert auto_workers(1, torch.device("cpu")) == 1
    assert auto_workers(100, torch.device("cuda")) == 1
