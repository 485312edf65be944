# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Do we still need real images? Synthetic clones against real images
#
# ImageNet-SD (Sariyildiz et al., *Fake it till you make it*, CVPR 2023) trains classifiers on synthetic ImageNet
# clones made by Stable Diffusion, one clone per prompt strategy and guidance scale, and measures them on *real*
# ImageNet images. This notebook asks the same question of the offline world, whose text-to-image model
# (`world-offline`, the default model of 01) makes the clones: for every prompt strategy (`name`,
# `name_hypernym`, `name_definition`, `name_hypernym_background`) and every guidance scale (low and high), a clone
# of `images_per_class` images of each of the 36 colour-shape classes; and a set of as many **real** world images.
# The same student, with the same recipe and seeds, is trained on each set and measured on real test images and on
# real images with the two held-out backgrounds (stripes and checker), which neither the world model nor any
# student has seen.
#
# The student is the label-only student of task-specific distillation (05): a ViT with a linear head
# (`wb.models.make_classifier`) trained by cross-entropy on the set's labels (the prompted classes of a clone), by the
# loop every student classifier of the workbench shares (`wb.models.train_classifier`). By default it
# starts from the student 03 distills (`student_init = "student"`: from a finished default run of 03, else from the
# cache, else distilled first): from random weights, these small students need far more steps than a notebook's
# default run to tell shapes apart (`student_init = "random"` asks that question).

# %% tags=["parameters"]
prompts = "name,name_hypernym,name_definition,name_hypernym_background"  # prompt strategies (or templates): one clone each, per guidance scale
guidance_scales = "2.0,7.5"            # classifier-free guidance of the clones: low and high
images_per_class = 8                   # images of each class (of every clone, and of 06's real set)
steps = 10                             # denoising steps (25-50 for a Stable Diffusion model)
model = "world-offline"                # the text-to-image model: 'world-offline' (the offline world's, shipped), a
                                       # Hugging Face id in the local cache (e.g.
                                       # stable-diffusion-v1-5/stable-diffusion-v1-5), a diffusers folder, or
                                       # 'tiny-offline' (random weights)
student = "wb_vitc_tiny_patch8_32"     # any timm ViT; the wb_ ones are the workbench's, sized for the 32x32 offline
                                       # world
student_init = "student"               # "random"; "student" (03's default student, distilled on first use); a student
                                       # folder (an out_dir of 03 or its student/); or a released UNIC checkpoint file
                                       # (unic.pth)
student_steps = 100                    # training steps of each student
student_batch = 32                     # real or generated images per student step
lr = 0.001                             # the students' peak learning rate (AdamW)
seed = 0                               # the seed everything random derives from (weights, data order, sampling); with
                                       # repeats, the first of the seeds
repeats = 2                            # seeds seed, seed + 1, ...: each result is a mean and spread over them
n_test = 1000                          # offline world only: test images (of each world dataset)
images_per_call = "auto"               # images per pipeline call; auto: 72 with 'world-offline', 8 with any other model
device = "auto"                        # "auto": CUDA when present (under torchrun, the rank's own GPU); or cpu, cuda,
                                       # cuda:1
precision = "auto"                     # fp32, or bf16 / fp16 (CUDA) autocast for the models' matrix products; auto:
                                       # bf16 where the device computes it natively and it is faster for this run's
                                       # models (timed once per machine), else fp32
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/06_synthetic_vs_real"  # the folder of this run's artifacts: summary.json, figures, tables, checkpoints

# %%
import workbench as wb

cfg, out = wb.CloneStudyConfig.from_notebook(globals())  # every parameter checked first; out_dir claimed
cfg

# %% [markdown]
# ## The clones
#
# One clone per prompt strategy and guidance scale, each a resumable folder written by 01's `generate` (images,
# manifest, settings) under `out_dir/clones`. The prompts of one class under each strategy:

# %%
import time

import torch
from IPython.display import Markdown, display

t_start = time.time()
dev = wb.pick_device(cfg.device)
display(Markdown(wb.generation.strategy_table(cfg.prompts[0], "red_circle", per_class=2, seed=cfg.seed)))
pipe = wb.generation.load_pipeline(cfg.model, dev)
clones = wb.generation.study.generate_clones(cfg, out / "clones", pipe)

# %% [markdown]
# ## Fidelity and diversity of each set
#
# The judges of 01 (classifiers trained on real world images) on every clone: the share of images whose shape and
# colour are the prompted ones, and the spread of object size and position and of background texture, beside the
# real set's.

# %%
judges = wb.generation.WorldJudges.load(device=dev)
sets = {"real": wb.generation.real_world_set(cfg.images_per_class, cfg.seed)}
sets.update({name: wb.generation.read_world_folder(folder) for name, folder in clones.items()})
fidelity = {name: {**judges.fidelity(images), **wb.generation.diversity(images.pixels)} for name, images in sets.items()}
display(Markdown(wb.generation.study.fidelity_table(fidelity)))

# %% [markdown]
# ## The students
#
# One student per training set and seed; `train` trains it on the set's images and labels (cross-entropy, 05's
# recipe: AdamW, warm-up then cosine, clipped gradients).

# %%
init = wb.generation.study.student_init(cfg.student_init, wb.default_student)
n_classes = len(wb.generation.WORLD_CLASSES)
students_precision = wb.models.classifier_precision(
    cfg.precision, build=lambda: wb.models.make_classifier(cfg.student, init, n_classes),
    batch_size=cfg.student_batch, input_size=wb.models.student_geometry(cfg.student)[0], device=dev, name=cfg.student)


def train(pixels, labels, seed):
    return wb.models.train_classifier(build=lambda: wb.models.make_classifier(cfg.student, init, n_classes),
                                      labelled=wb.data.Labelled(pixels, labels, torch.arange(len(labels))),
                                      batch_size=cfg.student_batch, steps=cfg.student_steps, lr=cfg.lr, seed=seed,
                                      device=dev, precision=students_precision)


tests = wb.generation.study.real_test_sets(cfg)
rows = wb.generation.study.train_students(cfg, sets, tests, train, dev)
wb.core.files.save_jsonl(rows, out / "students.jsonl")

# %% [markdown]
# ## Synthetic against real
#
# Top-1 (%) over the 36 colour-shape classes of real images, mean ± standard deviation over the seeds, and its shape
# part; on the training backgrounds and on the held-out ones.

# %%
results = wb.generation.study.summarise(rows)
display(Markdown(wb.generation.study.study_table(results, fidelity)))
fig = wb.generation.study.results_figure(results)
wb.save_figure(fig, out / "synthetic_vs_real.png")
wb.show(fig)

# %%
summary = {
    "config": cfg.to_dict(),
    "student_init": str(init),
    "precision": students_precision,
    "fidelity": fidelity,
    "judges_real_top1": judges.real_top1,
    "students": results,
    "gap_to_real": wb.generation.study.gaps(results),
    "runtime_s": round(time.time() - t_start, 1),
}
wb.save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
