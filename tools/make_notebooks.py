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

**`objective = "task"`** distills for *one* task instead (last section): probe each teacher on a few labelled
images of the task, keep the best probed teacher, and distill its predictions into a small student, with
extra unlabelled images; baselines side by side. Give it its own `out_dir` (e.g. `-p out_dir runs/03_task`).
"""),
    code("""
objective = "features"                 # "features": distill the teachers' features (UNIC); "task": one task (last section)
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
# objective = "task" only (teachers, student, data, lr, seed as above):
task = "shape"                         # the task to distill: "shape" or "colour" (offline world), "classes" (ImageFolder)
labels_per_class = 10                  # labelled training images per class; the other images have no labels
extra = "world"                        # extra distillation images: "world" (rendered on the fly), "unlabelled", "none", or a folder (e.g. 01's clone)
students = "labels,finetuned,probed"   # trained side by side; "probed_mix" adds the mixing variant
kd_weight = 0.9                        # a in (1 - a) * CE + a * T^2 * KL(teacher || student)
temperature = 1.0                      # T
mix = 1.0                              # probed_mix: blend weights ~ Beta(mix, mix)
steps = 300                            # training steps per student
task_batch_size = 48                   # images per step: a third labelled, the rest extra (for the students with a teacher)
finetune_steps = 50                    # the fine-tuned teacher's short schedule
student_init = "random"                # or a checkpoint folder of objective "features", e.g. "runs/03_distill/checkpoint"
repeats = 3                            # seeds seed, seed + 1, ...: mean and spread
task_workers = 0                       # CPU: students trained at once, each in its own process (0: one per core)
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
from workbench.params import as_bool, as_choice, as_int, check_injected_parameters
from workbench.probe import probe_models
from workbench.runs import prepare_out_dir
from workbench.students import student_image_size
from workbench.task_distill import TaskDistillConfig, TaskLivePlot, results_figure, task_distill, task_table

t_start = time.time()
check_injected_parameters(globals())  # a papermill -p name this notebook does not have
objective = as_choice(objective, "objective", ["features", "task"])
if objective == "features":
    cfg = wb.DistillConfig.from_params(teachers=teachers, student=student, data=data, image_size=image_size,
                                       epochs=epochs, batch_size=batch_size, lr=lr, tdrop_p=tdrop_p, ladder=ladder,
                                       standardize=standardize, seed=seed, device=device, torch_compile=torch_compile)
else:
    cfg = TaskDistillConfig.from_params(teachers=teachers, student=student, data=data, batch_size=task_batch_size, lr=lr,
                                        seed=seed, device=device, task=task, labels_per_class=labels_per_class,
                                        extra=extra, students=students, kd_weight=kd_weight, temperature=temperature,
                                        mix=mix, steps=steps, finetune_steps=finetune_steps,
                                        student_init=student_init, repeats=repeats, workers=task_workers)
n_train, n_test = as_int(n_train, "n_train", minimum=10), as_int(n_test, "n_test", minimum=10)
nproc = as_int(nproc, "nproc", minimum=1)
ckpt_every = as_int(ckpt_every, "ckpt_every", minimum=0)
keep_checkpoints = as_int(keep_checkpoints, "keep_checkpoints", minimum=1)
overwrite = as_bool(overwrite, "overwrite")
dev = wb.pick_device(cfg.device)
ds = wb.load_data(cfg.data, n_train=n_train, n_test=n_test, image_size=getattr(cfg, "image_size", None)
                  or student_image_size(cfg.student), seed=cfg.seed)
if objective == "features":
    check_batch_size(cfg.batch_size, len(ds.train), ds.name)
record = {**cfg.results_key(), **({"n_train": n_train, "n_test": n_test} if cfg.data == "world" else {})}
out = prepare_out_dir(out_dir, record, overwrite, kind="03_distill" if objective == "features" else "03_task")
print(f"objective {objective!r}; device {dev}; writing to {out.resolve()}")
if objective == "features":
    run_file = save_run_config(out / "run.yaml", cfg, out_dir=out, n_train=n_train, n_test=n_test,
                               ckpt_every=ckpt_every, keep_checkpoints=keep_checkpoints)
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
## Objective `features`: distillation

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
if objective == "features":
    live = LivePlot(title=f"{cfg.student} <- {', '.join(cfg.teachers)}")
    if nproc > 1:  # other processes train; this kernel follows out/metrics.jsonl
        run = launch_distill(run_file, out, nproc, callback=live)
    else:
        run = wb.distill(cfg, ds, teacher_models, out_dir=out, callback=live, ckpt_every=ckpt_every,
                         keep=keep_checkpoints)
    live.refresh()
    live.save(out / "training.png")
    student_model = wb.load_student(run.checkpoint, device=dev)
    print(f"distilled in {run.runtime_s:.0f}s" + (" of training" if nproc == 1 else f" in {nproc} processes, start-up included")
          + (f", resumed from step {run.resumed_from}" if run.resumed_from is not None else "")
          + (f", {len(run.skipped)} unreadable training images skipped" if run.skipped else "")
          + f"; student: {run.checkpoint}")
"""),
    md("""
### Linear probes on frozen features

A logistic-regression probe per task on each model's pooled feature (teachers) or final CLS token
(student; the projectors are gone). The bottom row is the student's gain over the *best* teacher of each task.
"""),
    code("""
if objective == "features":
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
if objective == "features":
    summary = {
        "objective": objective,
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
    md("""
## Objective `task`: probe the teacher, distill its predictions

With one target task, the good practice is to *probe* a large teacher rather than fine-tune it, and to distill the
probed teacher's predictions into the small student, on many more images than are labelled. For each seed:
`labels_per_class` labelled training images per class; a linear probe (the probe of 02, its weight decay chosen by
held-out cross-entropy, since the logits' scale matters here) on each teacher's frozen features, keeping the teacher
whose probe is best on held-out labelled images; then students trained side by side, each from the same
initialisation (`student_init`) and on the same batches, with

$$\\mathcal{L} = (1 - a)\\,\\mathrm{CE}\\big(s(x_\\mathrm{labelled}), y\\big) + a\\,T^2\\,\\mathrm{KL}\\big(\\mathrm{softmax}(t(x)/T)\\;\\|\\;\\mathrm{softmax}(s(x)/T)\\big)$$

where the KL term runs on the labelled images *and* `extra` images that carry no label (by default fresh
offline-world images rendered every step):

- `labels`: cross-entropy on the labelled images only;
- `finetuned`: distilled from the teacher fine-tuned end to end on the labelled images (`finetune_steps`);
- `probed`: distilled from the probed teacher;
- `probed_mix`: as `probed`, each distillation image blended with another one (mixup, `mix`), the teacher labelling the blend.

Left: training loss; right: top-1 on 250 test images while training (one colour per student, one line style per seed).
On CPU the students are independent jobs, trained side by side in single-threaded processes, one per core
(`task_workers`): these small models barely use a second thread, so this is about 1.4x faster on two cores.
"""),
    code("""
if objective == "task":
    live = TaskLivePlot(title=f"{cfg.student} on {cfg.task!r}: {cfg.labels_per_class} labels per class, extra images: {cfg.extra}")
    task_run = task_distill(cfg, ds, teacher_models, out_dir=out, callback=live)
    live.refresh()
    live.save(out / "training.png")
"""),
    md("""
### Students side by side

Test top-1 on the whole test split, mean ± std over the seeds, and each student's gain over the label-only
student of the same seed; the teachers' own top-1 for reference (grey bars). The students of the first seed
are saved under `out_dir/students/` (`wb.load_student` reads their encoder).
"""),
    code("""
if objective == "task":
    task_summary = task_run.summary()
    display(Markdown(task_table(task_summary)))
    fig = results_figure(task_summary)
    fig.savefig(out / "task.png")
    report.show(fig)
    summary = {"objective": objective, "student": cfg.student, "config": cfg.to_dict(), "data": ds.describe(),
               "runtime_s": round(time.time() - t_start, 1), **task_summary}
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

TRANSFER = [
    md("""
# 04 · Transfer: where does the student beat its best teacher?

The payoff view of the workbench. Every model (teachers, and students distilled in 03) is probed on a suite
of transfer tasks with the same frozen-feature linear probe as in 02 (weight decay tuned on a held-out 20%,
features cached on disk), and the results are summarised as in the papers:

- **relative gain over the best teacher** of each task, in % (UNIC's radar chart: the black ring is the best
  teacher, outside it the model beats every teacher on that task);
- **mean top-1** and **mean log-odds** over tasks (t-ReX: log(p / (1 - p)) weighs a gain from 98% to 99% like
  one from 50% to 67%, so saturated tasks still count);
- **concept-generalization levels** (CoG): unseen concepts ranked by their semantic similarity on WordNet
  (Lin similarity, information content computed from the WordNet hierarchy itself) to the seen ones, cut into
  five levels of equal size, L1 closest; accuracy per level tells how transfer falls off with semantic distance;
- **PCA of patch features** as RGB, teachers beside the student: what dense knowledge the student inherited.

The defaults run on the **offline world**: its two specialist teachers and the student that 03 distills with
its defaults (reused from `runs/03_distill` or the cache, distilled here on first use). Real models and data:
`papermill 04_transfer.ipynb out.ipynb -p models dino_vitb16,deit3_vitb16,unic=runs/03_real/checkpoint -p tasks flowers=/data/flowers,cars=/data/cars`.
"""),
    code("""
models = "world_colour,world_shape,student"  # teachers (registry / timm names), "student" (03's default), checkpoint folders or name=folder
tasks = "world"                        # "world" (the offline suite), world task names, and/or name=path ImageFolders
checkpoints = ""                       # optional weight file per teacher, e.g. "ibot_vitb16=/ckpt/ibot.pth"
levels = True                          # concept-generalization levels (CoG) and the accuracy-per-level plot
n_train = 3000                         # offline world only: training images per dataset
n_test = 1000                          # offline world only: test images per dataset
image_size = 224                       # ImageFolder tasks: images are decoded at this size
pca_images = 6                         # images in the patch-feature PCA pictures
device = "auto"                        # "auto" picks CUDA when present
out_dir = "runs/04_transfer"
overwrite = False                      # True: delete the results already in out_dir and start over
""", tags=["parameters"]),
    code("""
import re
import time
from pathlib import Path

import torch
from IPython.display import Markdown, display

import workbench as wb
from workbench import cog, report
from workbench import transfer as tr
from workbench import transfer_figures as tf
from workbench.io import save_json
from workbench.params import as_bool, as_int, as_pairs, check_injected_parameters
from workbench.runs import prepare_out_dir

t_start = time.time()
check_injected_parameters(globals())  # a papermill -p name this notebook does not have
model_specs = tr.parse_models(models)  # names and checkpoint folders checked; nothing loaded yet
task_list = tr.parse_tasks(tasks)
checkpoint_files = as_pairs(checkpoints, "checkpoints", keys=[n for n, role, _ in model_specs if role == "teacher"])
levels = as_bool(levels, "levels")
n_train, n_test = as_int(n_train, "n_train", minimum=20), as_int(n_test, "n_test", minimum=20)
image_size = as_int(image_size, "image_size", minimum=8)
pca_images = as_int(pca_images, "pca_images", minimum=1)
overwrite = as_bool(overwrite, "overwrite")
dev = wb.pick_device(device)
record = {"models": model_specs, "tasks": [(t.name, t.dataset, t.label, t.shots) for t in task_list],
          "checkpoints": checkpoint_files, "levels": levels, "image_size": image_size, "pca_images": pca_images,
          "n_train": n_train, "n_test": n_test}
out = prepare_out_dir(out_dir, record, overwrite, kind="04_transfer")  # one configuration per out_dir
print(f"device {dev}; writing to {out.resolve()}")
"""),
    md("""
## The models

Teachers come from the registry (offline specialists, the zoo, any timm name); students are distillation
checkpoints (`<out_dir>/checkpoint` of 03). `student` is the one 03 trains with its defaults: taken from
`runs/03_distill` when that run finished with every default, else from `$WORKBENCH_CACHE/students`, else
distilled now (a few minutes on 2 CPU cores, once).
"""),
    code("""
model_list = tr.load_models(models, dev, checkpoints=checkpoint_files)
roles = {m.name: m.role for m in model_list}
teachers = [m.name for m in model_list if m.role == "teacher"]
for m in model_list:
    n_params = sum(p.numel() for p in m.module.parameters())
    size = f"{n_params / 1e6:.2f}M" if n_params >= 1e5 else f"{n_params / 1e3:.1f}k"
    print(f"{m.name:>14}: {m.role}, {size} parameters, from {m.source}")
"""),
    md("""
## Concept-generalization levels

**The CoG builder on ImageNet.** Seen: the 1,000 ImageNet-1K classes; candidates: the 21,843 ImageNet-21K
synsets (timm ships the list), less the seen ones and those that subsume a seen class (*dog* contains the
seen breeds). Each candidate's similarity to the seen set is its Lin similarity to the closest seen class;
the ranking is cut into five equal levels. These wnid lists (`cog_levels_imagenet.json`) are what a CoG
evaluation on real images uses: pass ImageFolders of each level as tasks named `L1` ... `L5` and they are
plotted per level below.

**The offline world's levels (a stand-in).** The world's six shapes are WordNet nouns too (circle, square,
triangle, rhombus, plus sign, ring): they are the seen concepts. Fifteen shapes that no world model was trained
on, each a WordNet noun (trapezoid, hexagon, heart, bell, arrow, the letter X, house, fish, ...), go through the
*same* builder and land in five levels of three; each level is a 3-way task on freshly rendered images. Visual
difficulty in this little world need not follow WordNet, so read the world's per-level plot as the machinery at
work, not as a finding.
"""),
    code("""
level_info, level_task_list, level_shapes = {}, [], None
if levels:
    t0 = time.time()
    in1k = cog.imagenet_levels()
    print(f"ImageNet-1K seen vs ImageNet-21K candidates: {sum(len(l) for l in in1k.levels)} concepts in 5 levels "
          f"of {len(in1k.levels[0])} ({time.time() - t0:.1f}s); dropped: " + ", ".join(f"{k} {len(v)}" for k, v in in1k.dropped.items()))
    display(Markdown(cog.level_table(in1k)))
    save_json({"levels": in1k.levels, "mean_similarity": in1k.mean_similarity}, out / "cog_levels_imagenet.json")
    level_info["imagenet"] = {"sizes": [len(l) for l in in1k.levels], "mean_similarity": in1k.mean_similarity}
    if any(t.dataset in tr.WORLD_DATASETS for t in task_list):
        world_lv, level_shapes = tr.world_levels()
        display(Markdown(cog.level_table(world_lv, examples=3)))
        level_task_list = tr.level_tasks(level_shapes)
        level_info["world"] = {"levels": level_shapes, "mean_similarity": world_lv.mean_similarity}
    level_task_list += [t for t in task_list if re.fullmatch(r"L\\d+", t.name)]  # real CoG levels, as ImageFolders
    task_list = [t for t in task_list if t not in level_task_list]
"""),
    md("""
## The tasks

Each task is a train/test pair with labels. The offline suite: shape and colour in-domain (the images 03
distills on), the joint 36-way shape x colour task (only a feature that keeps *both* factors solves it), both
factors on the two held-out background styles, few-shot shape on those backgrounds, and 15 novel shapes.
"""),
    code("""
datasets = tr.load_task_data(task_list + level_task_list, n_train=n_train, n_test=n_test, image_size=image_size,
                             level_shapes=level_shapes)
rows = ["| task | data | protocol | classes | what |", "|---|---|---|---:|---|"]
for t in task_list + level_task_list:
    ds = datasets[t.dataset]
    rows.append(f"| {t.name} | {ds.name} ({len(ds.train)} / {len(ds.test)}) | {t.protocol} | {len(ds.tasks[t.label])} | {t.description} |")
display(Markdown("\\n".join(rows)))
for name, ds in datasets.items():
    if name in tr.WORLD_DATASETS:
        sample = [ds.test[i] for i in range(12)]
        report.show(report.image_grid([x.numpy() for x, _ in sample], [ds.tasks["shape"][int(y["shape"])] for _, y in sample]))
"""),
    md("""
## Probes

One tidy table (model, task, top-1, protocol, seed), written to `probes.csv`; few-shot tasks have one row per
draw. Below, top-1 per model and task (best in bold).
"""),
    code("""
result_rows = tr.evaluate(model_list, task_list + level_task_list, datasets, dev)
tr.write_rows(result_rows, out / "probes.csv")
level_names = [t.name for t in level_task_list]
full = tr.probe_table(result_rows)
probe = {m: {t: v for t, v in row.items() if t not in level_names} for m, row in full.items()}
display(Markdown(report.markdown_table(probe)))
"""),
    md("""
## Aggregates

Relative gain over the best teacher per task (%), then mean top-1 and t-ReX's mean log-odds over the tasks.
"""),
    code("""
gains = tr.relative_gains(probe, teachers) if teachers else {}
best = tr.best_teacher(probe, teachers) if teachers else {}
summary_rows = ["| model | " + " | ".join(next(iter(probe.values()))) + " | mean top-1 | mean log-odds |",
                "|---|" + "---:|" * (len(next(iter(probe.values()))) + 2)]
mean1, odds = tr.mean_top1(probe), tr.mean_log_odds(probe)
for m in probe:
    cells = [f"{v:+.1f}%" for v in gains[m].values()] if gains else [""] * len(probe[m])
    summary_rows.append(f"| {m} | " + " | ".join(cells) + f" | {mean1[m]:.1f} | {odds[m]:.2f} |")
if best:
    summary_rows.append("| *best teacher* | " + " | ".join(f"{n} ({v:.1f})" for n, v in best.values()) + " | | |")
display(Markdown("\\n".join(summary_rows)))
"""),
    md("""
### Radar of relative gains

Interactive in JupyterLab (hover for exact values, click legend entries to hide models); executed copies of
the notebook keep a static picture of the same chart. `radar.html` in `out_dir` opens in any browser, offline.
"""),
    code("""
if gains and len(probe[teachers[0]]) >= 3:
    static = tf.radar_figure(gains, roles)
    static.savefig(out / "radar.png")
    interactive = tf.radar_plotly(gains, roles)
    interactive.write_html(out / "radar.html", include_plotlyjs=True)
    tf.show_interactive(interactive, static)
else:
    print("a radar needs at least one teacher among the models and three tasks; see the bars below")
"""),
    code("""
fig = tf.task_bars_figure(probe, roles)
fig.savefig(out / "tasks.png")
report.show(fig)
"""),
    md("""
### Accuracy per concept-generalization level
"""),
    code("""
if level_names:
    per_level = {m: {t: full[m][t] for t in level_names} for m in full}
    sims = level_info["world"]["mean_similarity"] if "world" in level_info else level_info["imagenet"]["mean_similarity"]
    names = [", ".join(s) for s in level_info["world"]["levels"]] if "world" in level_info else None
    chance = 100 / len(datasets[level_task_list[0].dataset].tasks[level_task_list[0].label])
    fig = tf.levels_figure(per_level, roles, sims[: len(level_names)], names, chance=chance,
                           title="Top-1 per level (offline world: novel shapes by WordNet similarity to the seen ones)"
                           if "world" in level_info else "Top-1 per CoG level")
    fig.savefig(out / "levels.png")
    report.show(fig)
    level_info["probe"] = per_level
else:
    print("levels off (or no level task): nothing to plot")
"""),
    md("""
## What the patch features look like

For each model, the first three principal components of its patch tokens (fitted on these images together)
shown as RGB, each on the model's own grid. Similar colours mean similar features. A teacher blind to a factor
shows it as uniform; the student should separate object from background like the shape teacher *and* colour
objects apart like the colour teacher.
"""),
    code("""
first = datasets[(task_list or level_task_list)[0].dataset]
images = []
for i in range(len(first.test)):
    x = first.test[i][0]  # None for an unreadable image file
    if x is not None:
        images.append(x)
    if len(images) == pca_images:
        break
images = torch.stack(images)
pictures = tf.patch_pictures(model_list, images, dev)
titles = {name: f"{name}\\n{pic.shape[1]}x{pic.shape[2]} patches" for name, pic in pictures.items()}
fig = tf.pca_figure(images, pictures, titles)
fig.savefig(out / "patch_pca.png")
report.show(fig)
"""),
    code("""
summary = {
    "models": {m.name: {"role": m.role, "source": m.source} for m in model_list},
    "tasks": {t.name: {"data": datasets[t.dataset].name, "label": t.label, "protocol": t.protocol,
                       "description": t.description} for t in task_list + level_task_list},
    "config": {"models": models, "tasks": tasks, "checkpoints": checkpoint_files, "levels": levels,
               "n_train": n_train, "n_test": n_test, "image_size": image_size, "pca_images": pca_images,
               "device": str(dev)},
    "probe": probe,
    "relative_gain": gains,
    "best_teacher": {t: {"model": n, "top1": v} for t, (n, v) in best.items()},
    "mean_top1": mean1,
    "mean_log_odds": odds,
    "levels": level_info,
    "runtime_s": round(time.time() - t_start, 1),
}
save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
"""),
]

NOTEBOOKS = {"01_synthetic_imagenet.ipynb": SYNTHETIC, "02_probe_teachers.ipynb": PROBE, "03_distill.ipynb": DISTILL,
             "04_transfer.ipynb": TRANSFER}

if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        path = ROOT / "notebooks" / name
        path.write_text(json.dumps(notebook(name, cells), indent=1, ensure_ascii=False) + "\n")
        print("wrote", path.relative_to(ROOT))
