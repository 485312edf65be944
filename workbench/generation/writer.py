"""Synthetic ImageNet clones: class-conditional Stable Diffusion images into an ImageFolder, resumable and sharded.

    cfg = GenerateConfig.from_params(classes="imagenet100", images_per_class=1300)
    generate(cfg, "data/in100-sd", shard=Shard(0, 4))   # one of four GPUs or machines; rerun to resume
    records = read_manifest("data/in100-sd")            # every image: class, prompt, seed, guidance, steps, model

What ``out_dir`` holds:

    <wnid>/<index:05d>.png        the images: an ImageFolder that ``workbench.load_data`` reads as it is
    generation.json               the settings that decide the pixels; a rerun with other settings is refused
    manifest-<i>-of-<n>.jsonl     one JSON record per image, one file per shard (no two writers share a file)

Determinism. Image ``k`` of class ``w`` has its own seed, ``stable_seed(seed, w, k)``, and its own prompt
(the background of ``name_hypernym_background`` is drawn from the same kind of seed). All images are
laid out in one plan (classes in the order given, then index), cut into batches of ``batch_size``,
and batch ``b`` belongs to shard ``b mod n``: every image is computed in the same batch, with the
same companions, whatever the sharding, so shards together give the files of one run, pixel for
pixel on the same hardware. The initial noise comes from CPU generators, the same on any device.

Crash safety. Images are written to a temporary name and renamed; a batch's manifest lines are
appended (and flushed to disk) after its images. A rerun removes this shard's leftover temporary
files, skips batches whose images all exist, recomputes a partly written batch whole (same numbers)
and writes only its missing images, and rebuilds manifest lines lost to a crash from the plan.

Preemption and writers. SIGTERM or SIGUSR1 (``workbench.core.preemption``) lets the batch being computed
finish: its images and manifest lines are written, then the shard stops with ``Preempted`` (exit code 75;
a rerun continues with the next batch). Each shard holds a lock of its own in the folder
(``.workbench-shard-<i>-of-<n>.lock``): the shards of one clone write the folder together, and a second
process on the same shard is refused at once, naming the first.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.device import local_device
from ..core.files import append_jsonl, read_jsonl, save_image, save_json, save_jsonl
from ..core.lock import hold_lock
from ..core.preemption import EXIT_PREEMPTED, Preempted, handle_preemption, requested
from .config import GenerateConfig
from .pipelines import default_resolution, load_pipeline, locate_model, resolve_dtype
from .prompts import prompt_class, prompt_strategy, stable_seed

SETTINGS_FILE = "generation.json"
MANIFEST_GLOB = "manifest-*-of-*.jsonl"
# the record fields that must agree when two manifest files describe the same image
IDENTITY = ("wnid", "index", "prompt", "negative_prompt", "seed", "guidance_scale", "steps", "model", "scheduler",
            "resolution")


# ----------------------------------------------------------------------------- the plan and its shards

@dataclass(frozen=True)
class ImageJob:
    wnid: str
    index: int
    seed: int
    prompt: str
    file: str  # relative to out_dir: "<wnid>/<index:05d>.<ext>"


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {self.index}/{self.count}")

    def __str__(self):
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` (0-based: ``0/4`` ... ``3/4``)."""
        try:
            i, n = (int(v) for v in str(text).split("/"))
        except ValueError:
            raise ValueError(f"shard must look like i/n, e.g. 0/4, got {text!r}") from None
        return cls(i, n)

    @classmethod
    def from_env(cls) -> Shard:
        """``RANK`` / ``WORLD_SIZE`` as torchrun sets them; one shard of one otherwise."""
        if "WORLD_SIZE" in os.environ:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"]))
        return cls()


def image_seed(seed: int, wnid: str, index: int) -> int:
    return stable_seed(seed, "image", wnid, index)


def plan(cfg: GenerateConfig) -> list[ImageJob]:
    """Every image of the run, classes in the order given, then index."""
    strategy = prompt_strategy(cfg.prompt)
    return [ImageJob(w, k, image_seed(cfg.seed, w, k), strategy(w, k, cfg.seed), f"{w}/{k:05d}.{cfg.image_format}")
            for w in cfg.classes for k in range(cfg.images_per_class)]


def batches(jobs: list[ImageJob], batch_size: int) -> list[list[ImageJob]]:
    return [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]


def shard_batches(all_batches: list[list[ImageJob]], shard: Shard) -> list[list[ImageJob]]:
    """Whole batches, round robin: disjoint shards whose union is the plan, each image in its one batch."""
    return all_batches[shard.index::shard.count]


# ----------------------------------------------------------------------------- manifest

def manifest_path(out_dir, shard: Shard) -> Path:
    return Path(out_dir) / f"manifest-{shard.index:05d}-of-{shard.count:05d}.jsonl"


def read_manifest(out_dir) -> list[dict]:
    """All shards' records merged: one per image file, sorted by file. Conflicting records raise."""
    merged: dict[str, dict] = {}
    for path in sorted(Path(out_dir).glob(MANIFEST_GLOB)):
        for r in read_jsonl(path)[0]:
            old = merged.get(r["file"])
            if old is not None and any(old.get(k) != r.get(k) for k in IDENTITY):
                raise ValueError(f"{out_dir}: two manifest records for {r['file']} disagree "
                                 f"({path.name}); was the folder written with different settings?")
            if old is None or (old.get("nsfw") is None and r.get("nsfw") is not None):
                merged[r["file"]] = r
    return [merged[f] for f in sorted(merged)]


def _record(job: ImageJob, batch: list[ImageJob], settings: dict, model_revision: str | None, device: torch.device,
            dtype: torch.dtype, nsfw: bool | None) -> dict:
    return {
        "file": job.file, "wnid": job.wnid, "class_name": prompt_class(job.wnid).name, "index": job.index,
        "prompt": job.prompt, "negative_prompt": settings["negative_prompt"], "seed": job.seed,
        "guidance_scale": settings["guidance_scale"], "steps": settings["steps"], "model": settings["model"],
        "model_revision": model_revision, "scheduler": settings["scheduler"], "resolution": settings["resolution"],
        "dtype": str(dtype).removeprefix("torch."), "device": device.type,
        # the batch the image was computed in (its first file, its size, the image's place): rerunning that
        # batch reproduces the image bit for bit; alone it is reproduced up to float rounding
        "batch": batch[0].file, "batch_size": len(batch), "batch_position": batch.index(job), "nsfw": nsfw,
    }


# ----------------------------------------------------------------------------- generation

@dataclass
class GenerationResult:
    out_dir: Path
    shard: Shard
    planned: int  # images of this shard
    generated: int  # written by this call
    skipped: int  # already there
    seconds: float  # generation time (model loading excluded)
    load_seconds: float
    manifest: Path

    @property
    def images_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0


def _lock_settings(out: Path, cfg: GenerateConfig) -> dict | None:
    """The folder's settings (``generation.json``); refuses settings that would change existing images.

    Returns ``None`` when the folder has none yet and the resolution must come from the model."""
    path = out / SETTINGS_FILE
    wanted = cfg.settings()
    if not path.is_file():
        return wanted if wanted["resolution"] is not None else None
    have = json.loads(path.read_text())["settings"]
    if wanted["resolution"] is None:
        wanted["resolution"] = have["resolution"]
    diff = {k: (have.get(k), wanted[k]) for k in wanted if have.get(k) != wanted[k]}
    if diff:
        lines = ", ".join(f"{k}: folder {a!r}, this run {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{out} already holds images generated with other settings ({lines}). Use another out_dir, "
                         "or the folder's settings to resume or extend it (classes and images_per_class may "
                         "change), or "
                         "delete the folder to start over (notebook 01: overwrite = True)")
    return have


def _remove_leftovers(out: Path, jobs: list[ImageJob]) -> int:
    """Delete temporary files of this shard's images left by a killed run (other shards' are not touched)."""
    mine: dict[Path, set[str]] = {}
    for j in jobs:
        folder, name = (out / j.file).parent, Path(j.file).name
        mine.setdefault(folder, set()).add(name)
    removed = 0
    for folder, names in mine.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):  # temporaries are ".<name>.<random>.tmp" (workbench.core.files)
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.name[1:].rsplit(".", 2)[0] in names:
                os.unlink(entry.path)
                removed += 1
    return removed


def _reconcile_manifest(out: Path, path: Path, my_batches, settings, model_revision: Callable[[], str | None],
                        device, dtype) -> None:
    """Make this shard's manifest match its files: drop lines cut by a crash and records of deleted files,
    rebuild records of images written just before a crash. Rewritten atomically, only when needed."""
    records, bad = read_jsonl(path)
    by_file: dict[str, dict] = {}
    for r in records:
        if (out / r["file"]).is_file():
            by_file[r["file"]] = r
    for batch in my_batches:
        for job in batch:
            if job.file not in by_file and (out / job.file).is_file():
                by_file[job.file] = _record(job, batch, settings, model_revision(), device, dtype, nsfw=None)
    if bad or len(by_file) != len(records):
        save_jsonl([by_file[f] for f in sorted(by_file)], path)


def run_batch(pipe, jobs: list[ImageJob], settings: dict) -> tuple[list, list]:
    """One pipeline call for a batch: its images (PIL) and NSFW flags (None where the model has no checker)."""
    generators = [torch.Generator("cpu").manual_seed(j.seed) for j in jobs]
    negative = [settings["negative_prompt"]] * len(jobs) if settings["negative_prompt"] else None
    out = pipe(prompt=[j.prompt for j in jobs], negative_prompt=negative, num_inference_steps=settings["steps"],
               guidance_scale=settings["guidance_scale"], height=settings["resolution"], width=settings["resolution"],
               generator=generators, output_type="pil")
    nsfw = getattr(out, "nsfw_content_detected", None) or [None] * len(jobs)
    return out.images, [None if f is None else bool(f) for f in nsfw]


def generate(cfg: GenerateConfig, out_dir, shard: Shard | None = None, pipe=None,
             log: Callable[[str], None] | None = print, log_every_s: float = 30.0) -> GenerationResult:
    """Generate this shard's missing images (all of them the first time); safe to rerun and to kill.

    ``pipe``: an already loaded pipeline for ``cfg.model`` (else it is loaded, only if there is work).
    ``shard``: ``Shard(i, n)``; default from torchrun's ``RANK`` / ``WORLD_SIZE``, else the whole plan.
    """
    shard = shard or Shard.from_env()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with handle_preemption(), hold_lock(out, what=f"generation shard {shard}", name=shard_lock_name(shard)):
        return _generate(cfg, out, shard, pipe, log, log_every_s)


def shard_lock_name(shard: Shard) -> str:
    """One lock per shard: the shards of a clone write one folder at once, two processes on one shard never."""
    return f".workbench-shard-{shard.index:05d}-of-{shard.count:05d}.lock"


def _generate(cfg: GenerateConfig, out: Path, shard: Shard, pipe, log, log_every_s: float) -> GenerationResult:
    device = local_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    say = log or (lambda _: None)

    settings = _lock_settings(out, cfg)
    my_batches = shard_batches(batches(plan(cfg), cfg.call_size), shard)
    my_jobs = [j for b in my_batches for j in b]
    _remove_leftovers(out, my_jobs)
    todo = [b for b in my_batches if not all((out / j.file).is_file() for j in b)]

    revision: list[str | None] = []

    def model_revision() -> str | None:  # located once, and only when needed: a finished folder needs no model
        if not revision:
            revision.append(locate_model(cfg.model)[1])  # fails at once, naming the model, when it is absent
        return revision[0]

    t0 = time.perf_counter()
    if todo or settings is None:
        model_revision()
        if pipe is None:
            pipe = load_pipeline(cfg.model, device, cfg.dtype, cfg.scheduler)
        if settings is None:
            settings = {**cfg.settings(), "resolution": default_resolution(pipe)}
    load_s = time.perf_counter() - t0
    if not (out / SETTINGS_FILE).is_file():
        save_json({"about": "settings that decide every image of this folder (workbench.generation)",
                   "settings": settings}, out / SETTINGS_FILE)
    mpath = manifest_path(out, shard)
    _reconcile_manifest(out, mpath, my_batches, settings, model_revision, device, dtype)

    skipped = sum((out / j.file).is_file() for j in my_jobs)
    say(f"shard {shard}: {len(my_jobs)} images planned, {skipped} already there, {len(my_jobs) - skipped} to generate "
        f"({cfg.model}, {settings['resolution']}px, {settings['steps']} steps, guidance {settings['guidance_scale']}, "
        f"{device}, {str(dtype).removeprefix('torch.')})")
    generated, t_start, t_log = 0, time.perf_counter(), time.perf_counter()
    for n, batch in enumerate(todo, 1):
        images, nsfw = run_batch(pipe, batch, settings)
        records = []
        for job, image, flag in zip(batch, images, nsfw):
            path = out / job.file
            if path.is_file():  # written before a crash: never overwritten
                continue
            save_image(image, path, cfg.image_format)
            records.append(_record(job, batch, settings, model_revision(), device, dtype, flag))
        append_jsonl(mpath, records, sync=True)
        generated += len(records)
        now = time.perf_counter()
        if now - t_log >= log_every_s or n == len(todo):
            t_log = now
            say(f"shard {shard}: batch {n}/{len(todo)}, {generated} images in {now - t_start:.1f}s "
                f"({generated / (now - t_start):.2f} images/s)")
        if requested() and n < len(todo):  # the batch's images and manifest lines are written: stop cleanly here
            message = (f"{requested()} received: generation of shard {shard} stopped after batch {n}/{len(todo)} "
                       f"({skipped + generated} of its {len(my_jobs)} images written, each whole, with its manifest "
                       f"line); exit code {EXIT_PREEMPTED}. Rerun the same command (or notebook cell) to continue "
                       "with the next batch.")
            say(message)
            raise Preempted(message)
    return GenerationResult(out, shard, len(my_jobs), generated, skipped, time.perf_counter() - t_start, load_s, mpath)


def regenerate(out_dir, file: str, pipe) -> PIL.Image.Image:  # noqa: F821
    """Recompute one image from the manifest: its batch is rerun with the same prompts and seeds."""
    records = read_manifest(out_dir)
    target = next((r for r in records if r["file"] == file), None)
    if target is None:
        raise KeyError(f"{file} is not in the manifest of {out_dir}")
    mates = sorted((r for r in records if r["batch"] == target["batch"]), key=lambda r: r["batch_position"])
    if [r["batch_position"] for r in mates] != list(range(target["batch_size"])):
        mates = [target]  # batch mates missing from the manifest: alone, equal up to float rounding
    jobs = [ImageJob(r["wnid"], r["index"], r["seed"], r["prompt"], r["file"]) for r in mates]
    images, _ = run_batch(pipe, jobs, target)
    return images[[j.file for j in jobs].index(file)]
