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
# # 04 · Transfer: where does the student beat its best teacher?
#
# The payoff view of the workbench. Every model (teachers, and students distilled in 03) is probed on a suite
# of transfer tasks with the same frozen-feature linear probe as in 02 (weight decay tuned on a held-out 20%,
# features cached on disk), and the results are summarised as in the papers:
#
# - **relative gain over the best teacher** of each task, in % (UNIC's radar chart: the black ring is the best
#   teacher, outside it the model beats every teacher on that task);
# - **mean top-1** and **mean log-odds** over tasks (t-ReX: log(p / (1 - p)) weighs a gain from 98% to 99% like
#   one from 50% to 67%, so saturated tasks still count);
# - **concept-generalization levels** (CoG): unseen concepts ranked by their semantic similarity on WordNet
#   (Lin similarity, information content computed from the WordNet hierarchy itself) to the seen ones, cut into
#   five levels of equal size, L1 closest; accuracy per level tells how transfer falls off with semantic distance;
# - **dense probes** on patch tokens (UNIC's patch-level evaluation, DINOv2's linear protocols): a linear layer per
#   pixel for semantic segmentation (mIoU) or depth (RMSE, delta < 1.25), with each model's predicted maps;
# - **PCA of patch features** as RGB, teachers beside the student: what dense knowledge the student inherited.
#
# The defaults run on the **offline world**: its two specialist teachers and the student that 03 distills with
# its defaults (reused from `runs/03_distill` or the cache, distilled here on first use). Real models and the
# papers' benchmarks, each read from `<data_root>/<name>` in its own published layout:
# `papermill 04_transfer.ipynb out.ipynb -p models dino_vitb16,deit3_vitb16,unic=runs/03_real/student -p data_root /data -p tasks aircraft,cars,dtd,eurosat,flowers,food101,pets,sun397,cog_l1,cog_l5,ade20k,nyud`.

# %% tags=["parameters"]
models = "world_colour,world_shape,student"  # teachers (registry / timm names), "student" (03's default), student folders,
                                       # released UNIC files (unic.pth), or name=path
tasks = "world"                        # "world" (the offline suite), world task names, datasets by name (flowers,
                                       # cog_l3, cog_l3_16shot, ade20k, ...; flowers=/path reads one from elsewhere)
                                       # and/or name=path ImageFolders
data_root = "data"                     # datasets by name are read from <data_root>/<name> (CoG levels:
                                       # <data_root>/imagenet21k), in their own published layout
teacher_weights = ""                   # a release weight file per teacher, in its authors' own format:
                                       # name=path,... (DINO, iBOT, DeiT-III, dBOT, UNIC)
preprocessing = ""                     # a teacher's evaluation recipe instead of its release's:
                                       # name=recipe,...
levels = True                          # concept-generalization levels (CoG) and the accuracy-per-level plot
n_train = 3000                         # offline world only: training images (of each world dataset)
n_test = 1000                          # offline world only: test images (of each world dataset)
image_size = 224                       # image-folder images are decoded to this side in pixels; auto: the model's own
                                       # (a student's input size; 224 for teachers, which then apply their release's
                                       # resize and crop)
pca_images = 6                         # images in the patch-feature PCA pictures
dense_steps = 1500                     # training steps of each dense probe, 16 images a step (DINOv2: 40000)
dense_lr = 0.01                        # peak AdamW learning rate of the dense probes (DINOv2: 0.001)
device = "auto"                        # "auto": CUDA when present (under torchrun, the rank's own GPU); or cpu, cuda,
                                       # cuda:1
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/04_transfer"           # the folder of this run's artifacts: summary.json, figures, tables, checkpoints

# %%
import workbench as wb

cfg, out = wb.TransferConfig.from_notebook(globals())  # every parameter checked first, then out_dir claimed
cfg

# %% [markdown]
# ## The models
#
# Teachers come from the registry (offline specialists, the zoo, any timm name); students are distillation
# student folders (`<out_dir>/student` of 03) or released UNIC files (`unic_b=/ckpt/unic_b.pth`). Each model reads
# image files with its own evaluation transform (a teacher its release's; a student the one it was trained with).
# `student` is the one 03 trains with its defaults: taken from `runs/03_distill` when that run finished with every
# default, else from `$WORKBENCH_CACHE/students`, else distilled now (a few minutes on 2 CPU cores, once).

# %%
import time

import torch
from IPython.display import Markdown, display

tr = wb.transfer
t_start = time.time()
dev = wb.pick_device(cfg.device)
print(f"device {dev}; writing to {out.resolve()}")
model_list = tr.load_models(cfg.models, dev, teacher_weights=cfg.teacher_weights, default_student=wb.default_student,
                            preprocessing=cfg.preprocessing)
roles = {m.name: m.role for m in model_list}
teachers = [m.name for m in model_list if m.role == "teacher"]
for m in model_list:
    n_params = sum(p.numel() for p in m.module.parameters())
    size = f"{n_params / 1e6:.2f}M" if n_params >= 1e5 else f"{n_params / 1e3:.1f}k"
    print(f"{m.name:>14}: {m.role}, {size} parameters, from {m.source}")

# %% [markdown]
# ## Concept-generalization levels
#
# **The CoG builder on ImageNet.** Seen: the 1,000 ImageNet-1K classes; candidates: the 21,843 ImageNet-21K
# synsets (timm ships the list), less the seen ones and those that subsume a seen class (*dog* contains the
# seen breeds). Each candidate's similarity to the seen set is its Lin similarity to the closest seen class;
# the ranking is cut into five equal levels (`cog_levels_imagenet.json`). The real benchmark, `cog_l1` ... `cog_l5` in
# `tasks`, is drawn the same way from your ImageNet-21K copy (`<data_root>/imagenet21k`): the concepts with enough
# images, 1,000 per level, 50 test images each (`cog_selection.json`); the levels are plotted below.
#
# **The offline world's levels (a stand-in).** The world's six shapes are WordNet nouns too (circle, square,
# triangle, rhombus, plus sign, ring): they are the seen concepts. Fifteen shapes that no world model was trained
# on, each a WordNet noun (trapezoid, hexagon, heart, bell, arrow, the letter X, house, fish, ...), go through the
# *same* builder and land in five levels of three; each level is a 3-way task on freshly rendered images. Visual
# difficulty in this little world need not follow WordNet, so read the world's per-level plot as the machinery at
# work, not as a finding.

# %%
task_list = cfg.task_list()  # every dataset given by name is where data_root (or name=path) says: checked already
concepts = tr.concept_levels(task_list, enabled=cfg.levels)  # nothing with levels = False
for table in concepts.tables():
    display(Markdown(table))
concepts.save(out)
suite = task_list + [t for t in concepts.tasks if t not in task_list]  # the world's levels are plotted, not in the radar

# %% [markdown]
# ## The tasks
#
# Each task is a train/test pair with labels. The offline suite: shape and colour in-domain (the images 03
# distills on), the joint 36-way shape x colour task (only a feature that keeps *both* factors solves it), both
# factors on the two held-out background styles, few-shot shape on those backgrounds, 15 novel shapes, and two
# dense tasks on the in-domain images, labelled per pixel from the renderer's own object masks: background or the
# object's shape (`shape_seg`, 7 classes), background or its colour (`colour_seg`, 7 classes); pixels on the
# object's anti-aliased edge are not scored.

# %%
datasets = tr.load_task_data(suite, n_train=cfg.n_train, n_test=cfg.n_test, image_size=cfg.decode_size,
                             level_shapes=concepts.world_shapes)
rows = ["| task | data | protocol | classes | what |", "|---|---|---|---:|---|"]
for t in suite:
    ds = datasets[t.dataset]
    rows.append(f"| {t.name} | {ds.name} ({len(ds.train)} / {len(ds.test)}) | {t.protocol} | {len(ds.tasks[t.label])} | {t.description} |")
display(Markdown("\n".join(rows)))
for name in [n for n in datasets if n in tr.WORLD_DATASETS]:
    sample = [datasets[name].test[i] for i in range(min(12, len(datasets[name].test)))]
    titles = [datasets[name].tasks["shape"][int(y["shape"])] for _, y in sample]
    wb.show(wb.core.figures.image_grid([x.numpy() for x, _ in sample], titles))

# %% [markdown]
# ## Probes
#
# One tidy table (model, task, score, protocol, seed, metric), written to `probes.csv`; few-shot tasks have one row
# per draw. Below, per model and task (best in bold), the score in %: top-1, or for a dense task mIoU (segmentation)
# or delta < 1.25 (depth).

# %%
result_rows = tr.evaluate(model_list, suite, datasets, dev, dense=cfg.dense_protocol)
wb.probing.write_rows(result_rows, out / "probes.csv")
full = wb.probe_table(result_rows)
probe = {m: {t.name: row[t.name] for t in task_list} for m, row in full.items()}
display(Markdown(wb.probing.report.markdown_table(probe)))

# %% [markdown]
# ## Dense probes
#
# A linear layer on each model's frozen patch tokens, its per-pixel logits upsampled to the label map (DINOv2's
# linear protocol; depth: its *lin. 1*). Per task: each model's scores and, for the student, the gap to the best
# teacher in points; then a few test images with their ground truth and every model's predicted map (white: not
# scored). The patch grid sets how fine a map can be (in the offline world: 8x8 tokens for the two specialists, 4x4
# for the student).

# %%
dense = tr.dense_summary(result_rows)
display(Markdown(tr.dense_table(dense, teachers)))
for t in [t for t in task_list if t.dense]:
    fig = tr.figures.dense_maps_figure(t, result_rows, datasets[t.dataset])
    wb.save_figure(fig, out / f"dense_{t.name}.png")
    wb.show(fig)

# %% [markdown]
# ## Aggregates
#
# Relative gain over the best teacher per task (%), then mean score (top-1, or mIoU for a dense task) and t-ReX's
# mean log-odds over the tasks.

# %%
display(Markdown(tr.aggregate_table(probe, teachers)))
gains = tr.relative_gains(probe, teachers) if teachers else {}

# %% [markdown]
# ### Radar of relative gains
#
# Interactive in JupyterLab (hover for exact values, click legend entries to hide models); executed copies of
# the notebook keep a static picture of the same chart. `radar.html` in `out_dir` opens in any browser, offline.

# %%
if gains and len(task_list) >= 3:
    static = tr.figures.radar_figure(gains, roles)
    wb.save_figure(static, out / "radar.png")
    interactive = tr.figures.radar_plotly(gains, roles)
    interactive.write_html(out / "radar.html", include_plotlyjs=True)
    tr.figures.show_interactive(interactive, static)
else:
    print("a radar needs at least one teacher among the models and three tasks; see the bars below")

# %%
fig = tr.figures.task_bars_figure(probe, roles)
wb.save_figure(fig, out / "tasks.png")
wb.show(fig)

# %% [markdown]
# ### Accuracy per concept-generalization level

# %%
fig = concepts.figure(full, roles, datasets)
if fig is not None:
    wb.save_figure(fig, out / "levels.png")
    wb.show(fig)
else:
    print("levels off (or no level task): nothing to plot")

# %% [markdown]
# ## What the patch features look like
#
# For each model, the first three principal components of its patch tokens (fitted on these images together)
# shown as RGB, each on the model's own grid. Similar colours mean similar features. A teacher blind to a factor
# shows it as uniform; the student should separate object from background like the shape teacher *and* colour
# objects apart like the colour teacher.

# %%
first = datasets[suite[0].dataset]
images = [x for x, _ in (first.test[i] for i in range(len(first.test))) if x is not None][: cfg.pca_images]  # x None: unreadable
images = torch.stack(images)
pictures = tr.figures.patch_pictures(model_list, images, dev)
titles = {name: f"{name}\n{pic.shape[1]}x{pic.shape[2]} patches" for name, pic in pictures.items()}
fig = tr.figures.pca_figure(images, pictures, titles)
wb.save_figure(fig, out / "patch_pca.png")
wb.show(fig)

# %%
summary = {
    "models": {m.name: {"role": m.role, "source": m.source} for m in model_list},
    "tasks": {t.name: {"data": datasets[t.dataset].name, "label": t.label, "protocol": t.protocol,
                       "description": t.description} for t in suite},
    "config": cfg.to_dict(),
    "probe": probe,
    "dense": dense,
    "relative_gain": gains,
    "best_teacher": {t: {"model": n, "top1": v} for t, (n, v) in (tr.best_teacher(probe, teachers) if teachers else {}).items()},
    "mean_top1": tr.mean_top1(probe),
    "mean_log_odds": tr.mean_log_odds(probe),
    "levels": {**concepts.summary(), **({"probe": concepts.per_level(full)} if concepts.tasks else {})},
    "runtime_s": round(time.time() - t_start, 1),
}
wb.save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
