"""Images/s of ``workbench.generation.generate`` against calling the diffusers pipeline directly, same batches.

Both sides use one loaded pipeline, the same prompts and seeds, the same batch size, steps, guidance and
resolution. The direct side is the loop a script would write: one pipeline call per batch with a list of
seeded CPU generators, then ``image.save(path)``. The workbench side is the whole ``generate()`` call:
plan, settings lock, resume checks, atomic image writes, manifest lines flushed to disk. Repeats are
interleaved (direct, workbench, direct, ...) so that drifting machine load hits both; medians are printed,
with the overhead against the pipeline calls alone and against pipeline calls plus a plain save.

On a shared or busy machine end-to-end times drift by more than the overhead being measured, so the time
spent *inside* the pipeline calls is also clocked on every side: the time outside them, per image, is
the loop's own cost, and its ratio to the time inside is an overhead figure that load drift barely moves.

    python benchmarks/generate.py                       # tiny offline pipeline on CPU
    python benchmarks/generate.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --resolution 512 \\
        --steps 25 --batch 8 --images 64                # a real checkpoint from the local HF cache, on GPU
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from workbench.core.device import local_device
from workbench.data.imagenet import imagenet100_wnids
from workbench.generation import TINY_MODEL, GenerateConfig, batches, generate, load_pipeline, plan
from workbench.generation.writer import run_batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedPipe:
    """The pipeline, with the seconds spent inside its calls added up."""

    def __init__(self, pipe):
        self.pipe, self.seconds = pipe, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            out = self.pipe(*args, **kwargs)
            sync(self.pipe.device)
            return out
        finally:
            self.seconds += time.perf_counter() - t0

    def __getattr__(self, name):
        return getattr(self.pipe, name)


def direct(pipe, cfg: GenerateConfig, jobs, out: Path, save: bool) -> float:
    """The plain diffusers loop; returns seconds."""
    t0 = time.perf_counter()
    for batch in batches(jobs, cfg.call_size):
        images = pipe(prompt=[j.prompt for j in batch], num_inference_steps=cfg.steps,
                      guidance_scale=cfg.guidance_scale, height=cfg.resolution, width=cfg.resolution, output_type="pil",
                      generator=[torch.Generator("cpu").manual_seed(j.seed) for j in batch]).images
        if save:
            for j, image in zip(batch, images):
                (out / j.wnid).mkdir(parents=True, exist_ok=True)
                image.save(out / j.file)
    sync(pipe.device)
    return time.perf_counter() - t0


def workbench(pipe, cfg: GenerateConfig, out: Path) -> float:
    t0 = time.perf_counter()
    result = generate(cfg, out, pipe=pipe, log=None)
    sync(pipe.device)
    assert result.generated == cfg.images_per_class * len(cfg.classes)
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=TINY_MODEL)
    parser.add_argument("--images", type=int, default=96, help="images per measurement (a multiple of --classes)")
    parser.add_argument("--classes", type=int, default=4, help="the first N ImageNet-100 classes")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = GenerateConfig.from_params(classes=imagenet100_wnids()[:args.classes],
                                     images_per_class=args.images // args.classes, steps=args.steps,
                                     resolution=args.resolution, guidance_scale=args.guidance,
                                     images_per_call=args.batch, model=args.model, device=args.device, dtype=args.dtype)
    device = local_device(cfg.device)
    pipe = load_pipeline(cfg.model, device, cfg.dtype, cfg.scheduler)
    jobs = plan(cfg)
    settings = {**cfg.settings(), "resolution": cfg.resolution}
    run_batch(pipe, jobs[:cfg.batch_size], settings)  # warm-up
    sync(device)

    times = {"direct": [], "direct + save": [], "workbench": []}
    inside = {k: [] for k in times}  # seconds inside pipeline calls
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            runs = (("direct", lambda p, r=r: direct(p, cfg, jobs, Path(tmp) / f"d{r}", save=False)),
                    ("direct + save", lambda p, r=r: direct(p, cfg, jobs, Path(tmp) / f"s{r}", save=True)),
                    ("workbench", lambda p, r=r: workbench(p, cfg, Path(tmp) / f"w{r}")))
            for key, run in runs:
                timed = TimedPipe(pipe)
                times[key].append(run(timed))
                inside[key].append(timed.seconds)
        same = all(np.array_equal(np.asarray(_open(Path(tmp) / "s0" / j.file)),
                                  np.asarray(_open(Path(tmp) / "w0" / j.file))) for j in jobs)

    n = len(jobs)
    med = {k: statistics.median(v) for k, v in times.items()}
    outside = {k: statistics.median(t - i for t, i in zip(times[k], inside[k])) for k in times}
    in_pipe = statistics.median(i for k in inside for i in inside[k])
    print(f"device                  {device} ({torch.get_num_threads()} CPU threads)")
    print(f"config                  {cfg.model}, {n} images in batches of {cfg.batch_size}, {cfg.steps} steps, "
          f"{cfg.resolution}px, guidance {cfg.guidance_scale}, median of {args.repeats} interleaved repeats")
    for k, v in med.items():
        print(f"{k:<23} {n / v:8.2f} images/s   ({', '.join(f'{t:.2f}' for t in times[k])} s)")
    print(f"end-to-end overhead     {100 * (med['workbench'] / med['direct'] - 1):+6.1f} % vs pipeline calls alone, "
          f"{100 * (med['workbench'] / med['direct + save'] - 1):+6.1f} % vs pipeline calls + plain save")
    print(f"inside pipeline calls   {1e3 * in_pipe / n:8.2f} ms/image (median over all runs)")
    for k in times:
        print(f"outside, {k:<14} {1e3 * outside[k] / n:8.2f} ms/image = {100 * outside[k] / in_pipe:5.2f} % of the "
              "pipeline time")
    over_bare = 100 * (outside["workbench"] - outside["direct"]) / in_pipe
    over_save = 100 * (outside["workbench"] - outside["direct + save"]) / in_pipe
    print(f"workbench overhead      {over_bare:+6.2f} % of the pipeline time vs the bare loop (target <= 3 %), "
          f"{over_save:+6.2f} % vs the loop with a plain save")
    print(f"identical images        {'yes' if same else 'NO'} (direct + save vs workbench, same seeds and batches)")


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


if __name__ == "__main__":
    main()
