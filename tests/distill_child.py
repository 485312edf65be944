"""A tiny distillation run in a process of its own, for the fault-injection tests (tests/test_faults.py).

    python tests/distill_child.py OUT_DIR [--marker FILE] [--pause-at STEP] [--hang-in-checkpoint N]
                                          [--wait-for-signal-at STEP] [--second-signal-in-checkpoint]

The tests start ``run`` in processes forked from a multiprocessing forkserver that has already imported
torch, timm and the workbench (each child is still a process of its own, killed with SIGKILL), which
saves the import time of every child.

Two random-weight offline teachers, a tiny ViT student, 64 images of the offline world, 3 epochs of
8 steps, a checkpoint every 4 steps. ``marker`` gets one line per training step, so the parent can
kill the process after step k; ``pause_at=k`` makes it wait after step k (an exact kill point);
``hang_in_checkpoint=n`` stops half-way through writing the n-th checkpoint (its optimizer file cut
in half on disk) and waits there to be killed. ``wait_for_signal_at=k`` waits after step k until a stop
signal (SIGTERM, SIGUSR1) has arrived, so that the preemption lands in a known step;
``second_signal_in_checkpoint`` then waits inside the preemption's checkpoint write (marker line
"writing") for a second signal. Log lines (and a traceback, if any) go to ``log``.

``run_task`` is the same for task distillation (05): two students of one seed, 30 steps each, in this
process (``workers=2``: each in a worker process of its own); its marker gets "<student> <step>" for each
live record (steps 0, 25, 50, ... and the last).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

import torch

import workbench as wb
import workbench.core.files as wio
from workbench.core.preemption import requested, signals_received
from workbench.distillation import DistillConfig, distill
from workbench.distillation.task import TaskDistillConfig, task_distill

STEPS_PER_EPOCH = 8  # 64 images / batch 8
STEPS = 3 * STEPS_PER_EPOCH
CKPT_EVERY = 4


def wait_for(condition, timeout: float = 120) -> None:
    t0 = time.time()
    while not condition() and time.time() - t0 < timeout:
        time.sleep(0.005)


def child_outputs(log: str | None, marker: str | None):
    """One thread (the same arithmetic in every child, whatever the parent's thread settings); ``say`` writes a
    flushed line to ``log`` (stdout without one), ``mark`` one to ``marker`` (nothing without one)."""
    torch.set_num_threads(1)
    log_file = open(log, "a") if log else sys.stdout
    marker_file = open(marker, "a") if marker else None

    def say(line: str) -> None:
        log_file.write(line + "\n")
        log_file.flush()

    def mark(line: str) -> None:
        if marker_file is not None:
            marker_file.write(line + "\n")
            marker_file.flush()

    return say, mark


def run(out_dir: str, marker: str | None = None, pause_at: int | None = None, hang_in_checkpoint: int | None = None,
        log: str | None = None, wait_for_signal_at: int | None = None,
        second_signal_in_checkpoint: bool = False) -> None:
    say, mark = child_outputs(log, marker)

    def on_step(record):
        mark(f"{record['step']}")
        if pause_at is not None and record["step"] == pause_at:
            time.sleep(600)  # the parent kills us here
        if wait_for_signal_at is not None and record["step"] == wait_for_signal_at and "loss" in record:
            wait_for(requested)  # the parent signals us here: this step is the one to stop after

    if hang_in_checkpoint:
        real_save, writes = wio.save_file, []

        def save_file(tensors, filename, metadata=None):
            if Path(filename).name.startswith(".optimizer.safetensors."):  # a checkpoint's temporary file
                writes.append(filename)
                if len(writes) == hang_in_checkpoint:
                    real_save(tensors, filename, metadata=metadata)
                    os.truncate(filename, os.path.getsize(filename) // 2)
                    mark("writing")
                    time.sleep(600)  # killed half-way through the write
            return real_save(tensors, filename, metadata=metadata)

        wio.save_file = save_file

    if second_signal_in_checkpoint:
        real_save_file = wio.save_file

        def save_file(tensors, filename, metadata=None):
            if requested() and Path(filename).name.startswith(".optimizer.safetensors."):  # the stop's checkpoint
                mark("writing")
                wait_for(lambda: signals_received() >= 2)  # the second signal arrives while this file is written
            return real_save_file(tensors, filename, metadata=metadata)

        wio.save_file = save_file

    try:
        torch.manual_seed(0)
        teachers = {n: wb.create_teacher(n, pretrained=False) for n in ("world_colour", "world_shape")}
        data = wb.load_data("world", n_train=64, n_test=16)
        cfg = DistillConfig(epochs=3, batch_size=8, student="wb_vit_tiny_patch8_32", seed=3, ckpt_every=CKPT_EVERY,
                            keep_checkpoints=2)
        result = distill(cfg, data, teachers, out_dir=out_dir, callback=on_step, log_every=1, log=say)
        say(f"finished: {len(result.history)} steps, resumed_from={result.resumed_from}")
    except BaseException:
        say(traceback.format_exc())
        raise


def run_task(out_dir: str, marker: str | None = None, wait_for_signal_at: tuple[str, int] | None = None,
             log: str | None = None, workers: int = 1, steps: int = 30) -> None:
    say, mark = child_outputs(log, marker)

    def on_record(record):
        mark(f"{record['student']} {record['step']}")
        if wait_for_signal_at == (record["student"], record["step"]):
            wait_for(requested)

    try:
        torch.manual_seed(0)
        teachers = {n: wb.create_teacher(n, pretrained=False) for n in ("world_colour", "world_shape")}
        data = wb.load_data("world", n_train=120, n_test=40)
        cfg = TaskDistillConfig(student="wb_vit_tiny_patch8_32", labels_per_class=3, student_steps=steps, batch_size=16,
                                finetune_steps=2, repeats=1, students=["probed", "labels"], workers=workers)
        run = task_distill(cfg, data, teachers, out_dir=out_dir, callback=on_record, log=say)
        say(f"finished: {run.students}")
    except BaseException:
        say(traceback.format_exc())
        raise


def hold_lock(folder: str, name: str, ready: str) -> None:
    """Hold a workbench lock of ``folder`` (``name``: the run's, or a shard's) until killed; ``ready`` appears once
    it is held."""
    from workbench.core.lock import hold_lock as hold

    with hold(folder, what="a test holder", name=name):
        Path(ready).touch()
        time.sleep(600)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--marker")
    parser.add_argument("--pause-at", type=int)
    parser.add_argument("--hang-in-checkpoint", type=int)
    parser.add_argument("--wait-for-signal-at", type=int)
    parser.add_argument("--second-signal-in-checkpoint", action="store_true")
    args = parser.parse_args()
    run(args.out_dir, args.marker, args.pause_at, args.hang_in_checkpoint,
        wait_for_signal_at=args.wait_for_signal_at, second_signal_in_checkpoint=args.second_signal_in_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
