"""Throughput of task-distillation students on CPU: one process using every core vs one process per core.

The students of ``workbench.distillation.task`` are independent jobs. Small ones barely use a second thread,
so ``workbench.core.parallel.map_jobs`` trains them side by side, one single-threaded process per core. This
trains the same ``jobs`` students (the probed student of 03's default run: offline world, 48-image
steps, an untrained teacher, since its weights do not change the cost) both ways and prints student
steps per second, the pool's start-up included, and the speed-up. ``--repeats R`` alternates the two
R times and keeps each one's best (the machine may be shared).

    python benchmarks/task_students.py [--jobs 4] [--steps 100] [--workers 0] [--repeats 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from workbench import create_teacher, load_data
from workbench.core.parallel import auto_workers, cpu_cores, map_jobs
from workbench.distillation.task import (
    StudentJob,
    TaskDistillConfig,
    eval_batches,
    labelled_subset,
    probe_teacher,
    run_student,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="students to train (default 4)")
    parser.add_argument("--steps", type=int, default=100, help="steps per student (default 100)")
    parser.add_argument("--workers", type=int, default=0, help="processes at once (default 0: one per core)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    device = torch.device("cpu")
    cfg = TaskDistillConfig(student_steps=args.steps, repeats=1)
    data = load_data("world", n_train=600, n_test=250)
    labelled = labelled_subset(data, cfg.task, cfg.labels_per_class, seed=0)
    teacher, _ = probe_teacher(create_teacher("world_shape", pretrained=False), labelled, len(data.tasks[cfg.task]),
                               device, seed=0)
    live_set = [next(eval_batches(data, cfg.task, batch_size=250))]
    shared = (cfg, data, len(data.tasks[cfg.task]), live_set, device)
    jobs = [StudentJob("probed", seed, teacher, labelled) for seed in range(args.jobs)]
    workers = args.workers or auto_workers(len(jobs), device)
    threads = torch.get_num_threads()
    print(f"{args.jobs} students x {args.steps} steps of {cfg.batch_size} images ({cfg.student}); "
          f"{cpu_cores()} cores, {threads} torch threads in this process")

    best = {}
    for _ in range(args.repeats):
        for name, n in (("one process", 1), (f"{workers} processes", workers)):
            t0 = time.perf_counter()
            map_jobs(run_student, jobs, shared, n, on_record=lambda r: None, on_result=lambda i, r: None)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    total = args.jobs * args.steps
    for name, seconds in best.items():
        print(f"  {name:<12} {seconds:6.1f} s  {total / seconds:6.1f} student steps/s  "
              f"({1000 * seconds / total:.0f} ms per step)")
    one, many = best.values()
    print(f"  speed-up {one / many:.2f}x (the pool's start-up, about 5 s of importing torch, included)")


if __name__ == "__main__":
    main()
