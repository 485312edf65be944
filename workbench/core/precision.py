"""The arithmetic a run computes in, picked once per run: fp32, or bf16 (fp16 on CUDA) autocast.

    precision = resolve_precision("auto", device, trial=lambda p: one_step(p), shapes={...})
    with autocast(precision, device):
        ...

``auto`` picks bf16 only where the device computes it natively *and* it is faster for the run's models:

- CUDA: bf16 where the GPU supports it (every GPU since Ampere), fp32 elsewhere.
- CPU: bf16 only when the processor has bf16 dot-product instructions (``avx512_bf16`` or ``amx_bf16``
  among its flags; elsewhere oneDNN emulates bf16 and it is slower), and then only when a few timed
  training steps of the run's own models say bf16 is at least ``MIN_GAIN`` faster than fp32: a small model on
  few tokens loses more to the casts than it gains in the matrix products (README: precision). The timing is
  made once per machine, software and shapes, and kept under ``$WORKBENCH_CACHE/precision``; not kept when the
  process got less than half its threads' time while it timed (other jobs had the cores: the next run times
  again), since a decision timed on a busy machine can be wrong either way.

``WORKBENCH_NATIVE_BF16=0`` (or ``1``) overrides what the flags say: the test suite sets 0, so that its runs
compute in fp32 whatever the machine and never time anything.

Autocast runs the matrix products in the lower precision; weights, gradients, optimizer state, losses and
standardization statistics stay fp32 (the losses and statistics cast their inputs to fp32).
"""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from .errors import ParameterError
from .files import cache_dir, config_hash, save_json

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU instructions that compute bf16 dot products natively
MIN_GAIN = 1.05  # auto takes bf16 on a CPU only when fp32 time / bf16 time is at least this
TRIAL_STEPS = 5  # timed steps of each precision, alternating, after one untimed step of each
TIMING_VERSION = 2  # part of the cached decision's key: decisions timed another way are timed again
BUSY_SHARE = 0.5  # a timing whose process got less CPU than this share of its threads' wall time is not kept


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The processor's feature flags (Linux); empty where they cannot be read."""
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def native_bf16(device: torch.device) -> bool:
    """The device computes bf16 matrix products natively (``WORKBENCH_NATIVE_BF16``: 0 or 1 says so instead)."""
    if os.environ.get("WORKBENCH_NATIVE_BF16") in ("0", "1"):
        return os.environ["WORKBENCH_NATIVE_BF16"] == "1" and device.type in ("cpu", "cuda")
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_flags() & set(BF16_FLAGS))
    return False


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ParameterError(f"precision fp16 needs a CUDA device (this run is on {device}): use bf16, fp32 or auto")


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Autocast to the precision (``fp32``: none)."""
    check_precision(precision, device)
    if precision in ("bf16", "fp16"):
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return torch.autocast(device.type, enabled=False)


def time_trials(trial: Callable[[str], None], candidates: tuple[str, ...],
                steps: int = TRIAL_STEPS) -> dict[str, float]:
    """Seconds per step of ``trial(precision)`` for each candidate: one untimed step each, then ``steps`` rounds
    that alternate them (so a change of load weighs on all alike); the fastest of each (another job can only
    slow a step down, so the fastest is the least disturbed)."""
    for p in candidates:
        trial(p)
    times: dict[str, list[float]] = {p: [] for p in candidates}
    for _ in range(steps):
        for p in candidates:
            t0 = time.perf_counter()
            trial(p)
            times[p].append(time.perf_counter() - t0)
    return {p: min(t) for p, t in times.items()}


def resolve_precision(precision: str, device: torch.device, trial: Callable[[str], None] | None = None,
                      shapes: dict | None = None, log=print) -> str:
    """The precision a run computes in: ``precision``, or for ``auto`` what the module docstring says.

    ``trial(p)``: one training step of the run's models in precision ``p`` that changes nothing they keep (no
    optimizer step; the caller restores what it draws); ``shapes``: what the timing depends on besides the
    machine (models, batch, input size), the key of the cached decision."""
    check_precision(precision, device)
    if precision != "auto":
        return precision
    if not native_bf16(device):
        return "fp32"
    if device.type == "cuda" or trial is None:
        return "bf16"
    key = {"machine": platform.node(), "cpu": sorted(cpu_flags() & set(BF16_FLAGS)), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "timing": TIMING_VERSION, **(shapes or {})}
    path = cache_dir("precision") / f"{config_hash(key)}.json"
    if path.is_file():
        return json.loads(path.read_text())["precision"]
    wall, cpu = time.perf_counter(), time.process_time()
    seconds = time_trials(trial, ("fp32", "bf16"))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gain = seconds["fp32"] / seconds["bf16"]
    chosen = "bf16" if gain >= MIN_GAIN else "fp32"
    told = (f"precision auto: {chosen} (a step takes {seconds['fp32'] * 1e3:.0f} ms in fp32, "
            f"{seconds['bf16'] * 1e3:.0f} ms in bf16 autocast on this CPU")
    # other jobs had the cores (a timing too short to tell is taken as it is): not a decision to keep
    if wall > 0.05 and cpu < BUSY_SHARE * wall * torch.get_num_threads():
        log(f"{told}; the machine was busy while it timed them: this run's choice only, timed again next run)")
        return chosen
    save_json({"precision": chosen, "seconds_per_step": seconds, "gain": round(gain, 3), "key": key}, path)
    log(f"{told}; decided once, kept in {path})")
    return chosen
