"""A tiny distillation run in a process of its own, for the fault-injection tests (tests/test_faults.py).

    python tests/distill_child.py OUT_DIR [--marker FILE] [--pause-at STEP] [--hang-in-checkpoint N]

The tests start ``run`` in processes forked from a multiprocessing forkserver that has already imported
torch, timm and the workbench (each child is still a process of its own, killed with SIGKILL), which
saves the import time of every child.

Two random-weight offline teachers, a tiny ViT student, 64 images of the offline world, 3 epochs of
8 steps, a checkpoint every 4 steps. ``marker`` gets one line per training step, so the parent can
kill the process after step k; ``pause_at=k`` makes it wait after step k (an exact kill point);
``hang_in_checkpoint=n`` stops half-way through writing the n-th checkpoint (its optimizer file cut
in half on disk) and waits there to be killed. Log lines (and a traceback, if any) go to ``log``.
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
from workbench.distillation import DistillConfig, distill

STEPS_PER_EPOCH = 8  # 64 images / batch 8
STEPS = 3 * STEPS_PER_EPOCH
CKPT_EVERY = 4


def run(out_dir: str, marker: str | None = None, pause_at: int | None = None, hang_in_checkpoint: int | None = None,
        log: str | None = None) -> None:
    torch.set_num_threads(1)  # the same arithmetic in every child, whatever the parent's thread settings
    log_file = open(log, "a") if log else sys.stdout
    marker_file = open(marker, "a") if marker else None

    def say(line: str) -> None:
        log_file.write(line + "\n")
        log_file.flush()

    def on_step(record):
        if marker_file is not None:
            marker_file.write(f"{record['step']}\n")
            marker_file.flush()
        if pause_at is not None and record["step"] == pause_at:
            time.sleep(600)  # the parent kills us here

    if hang_in_checkpoint:
        real_save, writes = wio.save_file, []

        def save_file(tensors, filename, metadata=None):
            if Path(filename).name.startswith(".optimizer.safetensors."):  # a checkpoint's temporary file
                writes.append(filename)
                if len(writes) == hang_in_checkpoint:
                    real_save(tensors, filename, metadata=metadata)
                    os.truncate(filename, os.path.getsize(filename) // 2)
                    marker_file.write("writing\n")
                    marker_file.flush()
                    time.sleep(600)  # killed half-way through the write
            return real_save(tensors, filename, metadata=metadata)

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--marker")
    parser.add_argument("--pause-at", type=int)
    parser.add_argument("--hang-in-checkpoint", type=int)
    args = parser.parse_args()
    run(args.out_dir, args.marker, args.pause_at, args.hang_in_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
