"""Write the numbered notebooks from the cell sources below (outputs empty, kernel python3).

The notebooks are committed as .ipynb; this script is how they are edited, so that a diff of a
notebook is a diff of this file. Run: python tools/make_notebooks.py
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)}


def code(text: str, tags: list[str] | None = None) -> dict:
    meta = {"tags": tags} if tags else {}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [],
            "source": text.strip("\n").splitlines(keepends=True)}


def notebook(name: str, cells: list[dict]) -> dict:
    stem = name.split("_")[0]
    cells = [{"id": f"nb{stem}-{i:02d}", **cell} for i, cell in enumerate(cells)]  # stable ids: clean diffs
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


DISTILL = [
    md("""
# 03 · Distill several teachers into one student (UNIC)

Each pretrained encoder is good at something different. UNIC (Sariyildiz et al., ECCV 2024) distills
several of them into a single ViT student so that it is good at *all* their tasks. The recipe, each
part switchable below:

- **feature standardization** of every teacher's CLS and patch features (running mean/std, or PHI-S);
- a **ladder of expendable projectors**: one small MLP per student block and teacher, summed, dropped after training;
- **teacher dropping**: per image, keep the teacher the student matches worst, drop the others with probability `tdrop_p`.

The defaults run on the **built-in offline world**: 32x32 images whose *shape* and *colour* vary independently,
and two specialist teachers, `world_shape` (sees only edges, so colour-blind) and `world_colour` (sees only
pixel colours, so shape-blind). A good student should match the shape specialist on shape *and* the colour
specialist on colour. Real teachers are timm models whose weights are in your local Hugging Face cache:
`papermill 03_distill.ipynb out.ipynb -p teachers vit_base_patch16_224.dino,deit3_base_patch16_224.fb_in1k -p student vit_base_patch16_224 -p data /path/to/imagenet`.

On several GPUs set `nproc`: the notebook writes its parameters to `<out_dir>/run.yaml`, launches
`torchrun --nproc_per_node <nproc> -m workbench distill --config <out_dir>/run.yaml` and plots the run live
from `<out_dir>/metrics.jsonl`; the same file runs on several machines from a terminal (see the README).
"""),
    code("""
teachers = "world_colour,world_shape"  # comma-separated, or a YAML list with papermill -y
student = "wb_vitc_tiny_patch8_32"     # any timm ViT; this one is sized for the 32x32 offline world
data = "world"                         # "world", or an ImageFolder path (<class>/<image>, or train/ + val/)
image_size = "auto"                    # student input size: "auto" (the student's own) or pixels, a multiple of its patch
epochs = 8
batch_size = 64
lr = 0.002
tdrop_p = 0.5                          # teacher dropping probability (0 disables it)
ladder = "all"                         # "all" blocks, "last" (plain projector baseline), or indices like "1,3"
standardize = "running"                # "running", "phis" or "none"
seed = 0
device = "auto"                        # "auto" picks CUDA when present
nproc = 1                              # 1 trains in this kernel; N > 1 runs torchrun with N processes (N GPUs)
torch_compile = False                  # torch.compile the student and ladder (long GPU runs)
n_train = 6000                         # offline world only: training images
n_test = 2000                          # offline world only: test images for the probes
ckpt_every = 0                         # checkpoint every N steps; 0: at the end of every epoch
keep_checkpoints = 3                   # how many of the newest checkpoints to keep for resuming
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/03_distill"
""", tags=["parameters"]),
    code("""
import time

from IPython.display import Markdown, display

import workbench as wb
from workbench import report
from workbench.distill import check_batch_size
from workbench.io import save_json
from workbench.launch import launch_distill, save_run_config
from workbench.live import LivePlot
from workbench.params import as_bool, as_int, check_injected_parameters
from workbench.probe import probe_models
from workbench.runs import prepare_out_dir
from workbench.students import student_image_size

t_start = time.time()
check_injected_parameters(globals())  # a papermill -p name this notebook does not have
cfg = wb.DistillConfig.from_params(teachers=teachers, student=student, data=data, image_size=image_size, epochs=epochs,
                                   batch_size=batch_size, lr=lr, tdrop_p=tdrop_p, ladder=ladder,
                                   standardize=standardize, seed=seed, device=device, torch_compile=torch_compile)
n_train, n_test = as_int(n_train, "n_train", minimum=10), as_int(n_test, "n_test", minimum=10)
nproc = as_int(nproc, "nproc", minimum=1)
ckpt_every = as_int(ckpt_every, "ckpt_every", minimum=0)
keep_checkpoints = as_int(keep_checkpoints, "keep_checkpoints", minimum=1)
overwrite = as_bool(overwrite, "overwrite")
dev = wb.pick_device(cfg.device)
ds = wb.load_data(cfg.data, n_train=n_train, n_test=n_test, image_size=cfg.image_size or student_image_size(cfg.student),
                  seed=cfg.seed)
check_batch_size(cfg.batch_size, len(ds.train), ds.name)
record = {**cfg.results_key(), **({"n_train": n_train, "n_test": n_test} if cfg.data == "world" else {})}
out = prepare_out_dir(out_dir, record, overwrite, kind="03_distill")
run_file = save_run_config(out / "run.yaml", cfg, out_dir=out, n_train=n_train, n_test=n_test, ckpt_every=ckpt_every,
                           keep_checkpoints=keep_checkpoints)
print(f"device {dev}; writing to {out.resolve()}")
print(f"the same run from a terminal: torchrun --nproc_per_node {nproc} -m workbench distill --config {run_file}")
cfg
"""),
    md("""
## The data

Every model sees the same images in [0, 1] and applies its own resizing and normalisation.
"""),
    code("""
print(ds.describe())
sample = [ds.test[i] for i in range(24)]
titles = [" / ".join(ds.tasks[t][int(y[t])] for t in ds.tasks) for _, y in sample]
report.show(report.image_grid([x.numpy() for x, _ in sample], titles))
"""),
    md("""
## The teachers

Offline teachers are trained on first use (about half a minute) and cached under `$WORKBENCH_CACHE`
(default `~/.cache/workbench`); later runs load them. Real teachers load from the local Hugging Face cache.
"""),
    code("""
teacher_models = {name: wb.create_teacher(name) for name in cfg.teachers}
for name, m in teacher_models.items():
    print(f"{name}: {sum(p.numel() for p in m.parameters()) / 1e6:.2f}M parameters, {m.embed_dim}-d features")
"""),
    md("""
## Distillation

The left panel is the distillation loss against each teacher (standardized features, so the teachers
are comparable); the right one is alpha, each teacher's share of the loss after teacher dropping. With
dropping on, the teacher the student matches worst gets the larger share. With `nproc > 1` the training
runs in `nproc` torchrun processes and the plot follows their `metrics.jsonl`.

**Nothing is lost when the run dies.** Every `ckpt_every` steps (default: every epoch) the whole training
state goes to `out_dir/checkpoints/` (weights, optimizer, standardization statistics, random generators,
position in the data, the curves so far), written atomically. Interrupt the kernel, or kill the job, and
run the notebook again with the same `out_dir`: it prints `resumed from step N` and ends with the same
student as an uninterrupted run. A different configuration in that `out_dir` is refused;
`overwrite = True` starts over. A run that already finished is simply reloaded.
"""),
    code("""
live = LivePlot(title=f"{cfg.student} <- {', '.join(cfg.teachers)}")
if nproc > 1:  # other processes train; this kernel follows out/metrics.jsonl
    run = launch_distill(run_file, out, nproc, callback=live)
else:
    run = wb.distill(cfg, ds, teacher_models, out_dir=out, callback=live, ckpt_every=ckpt_every, keep=keep_checkpoints)
live.refresh()
live.save(out / "training.png")
student_model = wb.load_student(run.checkpoint, device=dev)
print(f"distilled in {run.runtime_s:.0f}s" + (" of training" if nproc == 1 else f" in {nproc} processes, start-up included")
      + (f", resumed from step {run.resumed_from}" if run.resumed_from is not None else "")
      + (f", {len(run.skipped)} unreadable training images skipped" if run.skipped else "")
      + f"; student: {run.checkpoint}")
"""),
    md("""
## Linear probes on frozen features

A logistic-regression probe per task on each model's pooled feature (teachers) or final CLS token
(student; the projectors are gone). The bottom row is the student's gain over the *best* teacher of each task.
"""),
    code("""
encoders = {name: (lambda x, m=m: m(x).cls) for name, m in teacher_models.items()}
encoders["student"] = student_model.embed
probe = probe_models(encoders, ds, dev)
gains = report.gain_over_best_teacher(probe, cfg.teachers)
display(Markdown(report.markdown_table(probe, gains)))
fig = report.accuracy_figure(probe, gains, title="Linear probe top-1 (%); labels: student minus best teacher")
fig.savefig(out / "probe.png")
report.show(fig)
"""),
    code("""
summary = {
    "teachers": cfg.teachers,
    "student": cfg.student,
    "config": cfg.to_dict(),
    "data": ds.describe(),
    "runtime_s": round(time.time() - t_start, 1),
    "distill_s": round(run.runtime_s, 1),
    "nproc": nproc,
    "final_loss": run.history[-1]["loss"],
    "resumed_from_step": run.resumed_from,
    "unreadable_train_images": len(run.skipped),
    "empty_classes": ds.empty_classes,
    "probe": probe,
    "gain_over_best_teacher": gains,
    "checkpoint": str(run.checkpoint),
}
save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
"""),
]


PROBE = [
    md("""
# 02 · Probe the teachers on frozen features

Before distilling, look at what each teacher is good at. Every teacher encodes the data once (features
are cached on disk, keyed by model weights, data and feature kind), then three probes read the frozen
features:

- **linear**: multinomial logistic regression on L2-normalised features, weight decay chosen on a held-out
  20% per class, refit on all training data (the t-ReX / CoG protocol);
- **k-NN**: cosine similarity, temperature-weighted votes of the k nearest training images, k in 10/20/100/200;
- **few-shot**: the linear probe trained on N images per class (mean and spread over 3 draws).

The defaults probe the two specialists of the built-in offline world: each should be strong on its own factor
and near chance on the other. Real teachers (`dino_vitb16`, `deit3_vitb16`, `dinov2_vitb14`, `clip_vitb16`, ...,
or any timm name) load from the local Hugging Face cache; iBOT and dBOT from their official checkpoint files
(`-p checkpoints ibot_vitb16=/path/checkpoint_teacher.pth`). `data` can be any ImageFolder, e.g. the synthetic
clone from notebook 01 for training and real ImageNet val (`train/` + `val/` folders).
"""),
    code("""
teachers = "world_colour,world_shape"  # registry names or timm names; comma-separated or a YAML list
data = "world"                         # "world", or an ImageFolder path (<class>/<image>, or train/ + val/)
probe = "both"                         # "linear", "knn" or "both"
shots = "1,5,25"                       # few-shot probes: images per class ("" for none)
feature = "cls"                        # "cls", "patch_mean" or "cls+patch_mean"
checkpoints = ""                       # optional checkpoint file per teacher (see above)
image_size = 224                       # ImageFolder data: images are decoded at this size
n_train = 6000                         # offline world only
n_test = 2000
device = "auto"
overwrite = False                      # True: delete the results already in out_dir and start over
out_dir = "runs/02_probe_teachers"
""", tags=["parameters"]),
    code("""
import time

from IPython.display import Markdown, display

import workbench as wb
from workbench import report
from workbench.io import save_json
from workbench.params import as_bool, as_choice, as_int, as_list, as_pairs, check_injected_parameters
from workbench.probe import model_fingerprint, probe_encoder
from workbench.runs import prepare_out_dir
from workbench.teachers import FEATURE_KINDS, check_teacher_names

t_start = time.time()
check_injected_parameters(globals())  # a papermill -p name this notebook does not have
teacher_names = check_teacher_names(as_list(teachers, "teachers"))
probe = as_choice(probe, "probe", ["linear", "knn", "both"])
shot_counts = tuple(as_int(s, "shots", minimum=1) for s in as_list(shots, "shots", allow_empty=True))
feature = as_choice(feature, "feature", FEATURE_KINDS)
checkpoint_files = as_pairs(checkpoints, "checkpoints", keys=teacher_names)
image_size = as_int(image_size, "image_size", minimum=8)
n_train, n_test = as_int(n_train, "n_train", minimum=10), as_int(n_test, "n_test", minimum=10)
overwrite = as_bool(overwrite, "overwrite")
dev = wb.pick_device(device)
record = {"teachers": teacher_names, "data": data, "probe": probe, "shots": list(shot_counts), "feature": feature,
          "checkpoints": checkpoint_files, "image_size": image_size,
          **({"n_train": n_train, "n_test": n_test} if data == "world" else {})}
out = prepare_out_dir(out_dir, record, overwrite, kind="02_probe_teachers")  # one configuration per out_dir
print(f"device {dev}; writing to {out.resolve()}")
"""),
    code("""
ds = wb.load_data(data, n_train=n_train, n_test=n_test, image_size=image_size)
print(ds.describe())
"""),
    md("""
## Features and probes

First run: each teacher encodes the train and test splits (offline teachers are trained first if they are
not cached). Later runs read the cached features.
"""),
    code("""
results = {}
for name in teacher_names:
    teacher = wb.create_teacher(name, checkpoint=checkpoint_files.get(name)).to(dev)
    encode = lambda x, m=teacher: m(x).pooled(feature)
    results[name] = probe_encoder(f"{name}/{feature}", encode, model_fingerprint(teacher), ds, dev,
                                  linear=probe in ("linear", "both"), knn=probe in ("knn", "both"), shots=shot_counts)
"""),
    md("""
## Teachers x tasks
"""),
    code("""
main = "linear" if probe in ("linear", "both") else "knn"
table = {name: (r["linear"] if main == "linear" else {t: v[20] for t, v in r["knn"].items()})
         for name, r in results.items()}
display(Markdown(f"**{'linear probe' if main == 'linear' else '20-NN'} top-1 (%)**\\n\\n" + report.markdown_table(table)))
if probe == "both":
    knn20 = {name: {t: v[20] for t, v in r["knn"].items()} for name, r in results.items()}
    display(Markdown("**20-NN top-1 (%)**\\n\\n" + report.markdown_table(knn20)))
fig = report.accuracy_figure(table, title=f"{feature} features: {'linear' if main == 'linear' else '20-NN'} top-1 (%)")
fig.savefig(out / "probe.png")
report.show(fig)
if shot_counts:
    fig = report.few_shot_figure({n: r["few_shot"] for n, r in results.items()})
    fig.savefig(out / "few_shot.png")
    report.show(fig)
"""),
    code("""
summary = {
    "teachers": teacher_names,
    "config": {"data": data, "probe": probe, "shots": list(shot_counts), "feature": feature,
               "checkpoints": checkpoint_files, "image_size": image_size, "device": str(dev)},
    "data": ds.describe(),
    "runtime_s": round(time.time() - t_start, 1),
    "probe": table,
    "linear": {n: r["linear"] for n, r in results.items()},
    "knn": {n: r["knn"] for n, r in results.items()},
    "few_shot": {n: r["few_shot"] for n, r in results.items()},
    "skipped_images": {n: r["skipped"] for n, r in results.items()},
}
save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
"""),
]

SYNTHETIC = [
    md("""
# 01 · A synthetic ImageNet clone with Stable Diffusion

*Do we still need real images?* ImageNet-SD (Sariyildiz et al., *Fake it till you make it: Learning transferable
representations from synthetic ImageNet clones*, CVPR 2023) generates an ImageNet clone with Stable Diffusion,
trains on it, and evaluates on real images. This notebook makes such a clone: for every class (a WordNet id),
`images_per_class` images from a text prompt built from the class's WordNet metadata, written as an ImageFolder
(`<out_dir>/<wnid>/<index>.png`) that the other notebooks read directly (`data = out_dir`), with a manifest that
records, for every image, the class, prompt, seed, guidance, steps and model, so any image can be regenerated.

> **The default run only exercises the machinery.** Without network, `model = "tiny-offline"` is a tiny
> Stable Diffusion pipeline that the workbench builds from configs with **random weights**: its images are
> coloured noise, not tenches. Real images need real weights, e.g.
> `papermill 01_synthetic_imagenet.ipynb out.ipynb -p model stable-diffusion-v1-5/stable-diffusion-v1-5 -p classes imagenet100 -p images_per_class 1300 -p steps 50`
> on a GPU, with the checkpoint in your local Hugging Face cache (`hf download stable-diffusion-v1-5/stable-diffusion-v1-5`
> on a machine with network). Nothing is downloaded here; a missing model fails at once and says how to get it.

Rerunning with the same `out_dir` resumes: finished images are kept, the missing ones generated. Settings
that would change existing images are refused; `overwrite = True` deletes them and starts over.

For a full clone, use the command line on several GPUs or machines; each run takes a disjoint shard, and
rerunning resumes:
`python -m workbench generate --classes imagenet100 --images-per-class 1300 --out data/in100-sd --shard 0/4`
(or `torchrun --nproc-per-node 8 -m workbench generate ...`).
"""),
    code("""
classes = "n02869837,n01749939,n02488291,n02107142"  # "imagenet100", "imagenet1k", wnids (comma-separated or a YAML list), or a .txt file
prompt = "name_hypernym_background"  # name, name_hypernym, name_definition, name_hypernym_background, or a template like "a photo of a {name}"
images_per_class = 4
guidance_scale = 2.0                   # low guidance gives more diverse images (ImageNet-SD)
steps = 4                              # denoising steps; 25-50 for a real model
model = "tiny-offline"                 # random weights, offline; real: "stable-diffusion-v1-5/stable-diffusion-v1-5" or a diffusers folder
resolution = "auto"                    # "auto": the model's own (64 tiny-offline, 512 SD 1.x), or pixels (a multiple of 8)
scheduler = "default"                  # the checkpoint's own, or ddim, pndm, euler, euler_a, dpm++, unipc, lms
batch_size = 8
dtype = "auto"                         # fp16 on CUDA, fp32 on CPU; or fp32, fp16, bf16
seed = 0                               # every image's seed and background derive from it
device = "auto"                        # "auto" picks CUDA when present
overwrite = False                      # True: delete the images already in out_dir and start over
out_dir = "runs/01_synthetic_imagenet"
""", tags=["parameters"]),
    code("""
import time
from pathlib import Path

from IPython.display import Markdown, display

import workbench as wb
from workbench import report
from workbench.diffusion import TINY_MODEL, default_resolution, load_pipeline
from workbench.generate import GenerateConfig, audit, class_counts, contact_sheet, generate, read_manifest
from workbench.imagenet import class_info
from workbench.io import save_json
from workbench.params import as_bool, check_injected_parameters
from workbench.prompts import STRATEGIES, example_prompts
from workbench.runs import clear_out_dir

t_start = time.time()
check_injected_parameters(globals())  # a papermill -p name this notebook does not have
cfg = GenerateConfig.from_params(classes=classes, prompt=prompt, images_per_class=images_per_class,
                                 guidance_scale=guidance_scale, steps=steps, model=model, resolution=resolution,
                                 scheduler=scheduler, batch_size=batch_size, dtype=dtype, seed=seed, device=device)
overwrite = as_bool(overwrite, "overwrite")
dev = wb.pick_device(cfg.device)
out = Path(out_dir)
if overwrite and out.is_dir():
    clear_out_dir(out)  # only a folder the workbench wrote (it holds generation.json)
    print(f"overwrite=True: cleared {out}")
print(f"{len(cfg.classes)} classes x {cfg.images_per_class} images with {cfg.model} on {dev}; writing to {out.resolve()}")
if cfg.model == TINY_MODEL:
    print("model = 'tiny-offline': random weights, the images will be noise (this run tests the machinery)")
cfg
"""),
    md("""
## The classes

Each class is a WordNet noun synset: its names (lemmas), its definition, and a chain of hypernyms up to
*entity*. All of it ships with the workbench (`workbench/assets/imagenet_metadata.json`, generated from timm's
class lists and WordNet 3.0 by `tools/make_imagenet_metadata.py`), so nothing else is needed at run time.
"""),
    code("""
shown = cfg.classes[:12]
rows = ["| wnid | name | hypernyms (direct first) | definition |", "|---|---|---|---|"]
for w in shown:
    info = class_info(w)
    chain = " > ".join(info.hypernym_names[:4]) + (" > ... > entity" if len(info.hypernyms) > 4 else "")
    rows.append(f"| {w} | {', '.join(info.names)} | {chain} | {info.definition} |")
display(Markdown("\\n".join(rows) + (f"\\n\\n... and {len(cfg.classes) - len(shown)} more" if len(cfg.classes) > 12 else "")))
"""),
    md("""
## Prompts

The four prompt strategies of ImageNet-SD, for the first class: the class name `c`; `c, h_c` with its
hypernym, which tells apart classes that share a name (*crane* the bird, *crane* the machine); `c, d_c` with
its definition; and `c, h_c inside b` with a background `b` drawn per image from the 365 Places365 scenes.
Backgrounds come from a seed derived from (`seed`, wnid, image index): every prompt can be rebuilt.
The strategy chosen by `prompt` is marked.
"""),
    code("""
first = cfg.classes[0]
rows = ["| strategy | example prompts |", "|---|---|"]
for name in STRATEGIES:
    mark = " **(chosen)**" if name == cfg.prompt else ""
    rows.append(f"| `{name}`{mark} | " + "<br>".join(example_prompts(name, [first], 3, cfg.seed)[first]) + " |")
if cfg.prompt not in STRATEGIES:
    rows.append(f"| template `{cfg.prompt}` **(chosen)** | " + "<br>".join(example_prompts(cfg.prompt, [first], 3, cfg.seed)[first]) + " |")
display(Markdown("\\n".join(rows)))
chosen = example_prompts(cfg.prompt, cfg.classes[:6], 2, cfg.seed)
print("chosen strategy, first prompts of each class:")
for w, ps in chosen.items():
    print(f"  {w}: {' | '.join(ps)}")
"""),
    md("""
## The model

A hub id is read from the local Hugging Face cache only (`local_files_only`); a folder is read as it is. The
tiny offline pipeline is built on first use from configs (UNet, VAE with 8x downsampling, CLIP text encoder,
and a CLIP tokenizer whose vocabulary and merges the workbench writes itself), saved with `save_pretrained`
under `$WORKBENCH_CACHE/models`, and loaded back through the same `from_pretrained` call as a real checkpoint.
"""),
    code("""
t0 = time.time()
pipe = load_pipeline(cfg.model, dev, cfg.dtype, cfg.scheduler)
sizes = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")}
side = cfg.resolution or default_resolution(pipe)
print(f"{type(pipe).__name__} loaded in {time.time() - t0:.1f}s; scheduler {type(pipe.scheduler).__name__}; "
      + ", ".join(f"{k} {v / 1e6:.2f}M parameters" for k, v in sizes.items()) + f"; images of {side}x{side} px")
"""),
    md("""
## Generation

One pipeline call per batch; every image has its own seed (CPU generators: the same noise on any device).
Images are written under a temporary name and renamed, then their manifest lines are appended: rerunning this
cell (or the notebook, or the command line) skips finished images and never leaves a half-written file.
"""),
    code("""
result = generate(cfg, out, pipe=pipe)
print(f"{result.generated} images generated in {result.seconds:.1f}s ({result.images_per_s:.2f} images/s), "
      f"{result.skipped} already there")
"""),
    md("""
## Contact sheet

One row per class, its first images. With `tiny-offline` these are noise by construction (random weights);
with a real checkpoint, each row should show the class.
"""),
    code("""
fig = contact_sheet(out, cfg.classes, per_class=8, max_classes=16)
fig.savefig(out / "contact_sheet.png")
report.show(fig)
"""),
    md("""
## What is on disk

Images per class, and the manifest checked against the files (every image has one record, every record one
image, no temporary file left, every image decodes). The folder is a plain ImageFolder: `wb.load_data(out_dir)`
reads it, as the distillation notebook does with `data = out_dir`.
"""),
    code("""
counts = class_counts(out)
check = audit(out)
rows = ["| wnid | name | images |", "|---|---|---:|"]
rows += [f"| {w} | {class_info(w).name} | {counts.get(w, 0)} |" for w in cfg.classes[:20]]
display(Markdown("\\n".join(rows) + (f"\\n\\n... and {len(cfg.classes) - 20} more classes" if len(cfg.classes) > 20 else "")))
missing = {w: cfg.images_per_class - counts.get(w, 0) for w in cfg.classes if counts.get(w, 0) < cfg.images_per_class}
print(f"{sum(counts.values())} images in {len(counts)} classes; classes short of {cfg.images_per_class}: {missing or 'none'}")
print("manifest:", {k: (v if isinstance(v, int) else len(v)) for k, v in check.items()})
assert not missing and not (check["unrecorded"] or check["missing"] or check["temporary"] or check["unreadable"])
records = read_manifest(out)
print("a manifest record:", records[0])
data = wb.load_data(str(out), image_size=side)
print(data.describe())
"""),
    code("""
summary = {
    "classes": len(cfg.classes),
    "images_per_class": cfg.images_per_class,
    "images": sum(counts.get(w, 0) for w in cfg.classes),
    "counts": {w: counts.get(w, 0) for w in cfg.classes},
    "config": cfg.to_dict(),
    "resolution": side,
    "random_weights": cfg.model == TINY_MODEL,
    "example_prompts": chosen,
    "generated": result.generated,
    "skipped": result.skipped,
    "images_per_s": round(result.images_per_s, 3),
    "manifest": {"records": check["records"], "unrecorded": len(check["unrecorded"]), "missing": len(check["missing"]),
                 "temporary": len(check["temporary"]), "unreadable": len(check["unreadable"]),
                 "nsfw_flagged": len(check["nsfw_flagged"])},
    "contact_sheet": str(out / "contact_sheet.png"),
    "runtime_s": round(time.time() - t_start, 1),
}
save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
"""),
]

NOTEBOOKS = {"01_synthetic_imagenet.ipynb": SYNTHETIC, "02_probe_teachers.ipynb": PROBE, "03_distill.ipynb": DISTILL}

if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        path = ROOT / "notebooks" / name
        path.write_text(json.dumps(notebook(name, cells), indent=1, ensure_ascii=False) + "\n")
        print("wrote", path.relative_to(ROOT))
