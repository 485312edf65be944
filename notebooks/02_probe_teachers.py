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
# # 02 · Probe the teachers on frozen features
#
# Before distilling, look at what each teacher is good at. Every teacher encodes the data once (features
# are cached on disk, keyed by model weights, data and feature kind), then three probes read the frozen
# features:
#
# - **linear**: multinomial logistic regression on L2-normalised features, weight decay chosen on a held-out
#   20% per class, refit on all training data (the t-ReX / CoG protocol);
# - **k-NN**: cosine similarity, temperature-weighted votes of the k nearest training images, k in 10/20/100/200;
# - **few-shot**: the linear probe trained on N images per class (mean and spread over 3 draws, weight decay 1e-3).
#
# The defaults probe the two specialists of the built-in offline world: each should be strong on its own factor
# and near chance on the other. Real teachers (`dino_vitb16`, `deit3_vitb16`, `dinov2_vitb14`, `clip_vitb16`, ...,
# or any timm name) load from the local Hugging Face cache; iBOT and dBOT from their official release files
# (`-p teacher_weights ibot_vitb16=/path/checkpoint_teacher.pth`), as do DeiT-III's, DINO's and the released UNIC
# students (`-p teacher_weights deit3_vitb16=deit_3_base_224_1k.pth`). Each teacher reads image files with its release's
# evaluation transform (DINO, iBOT, dBOT: resize 256 bicubic + centre crop 224; DeiT-III: resize 224), which
# `preprocessing` overrides (`-p preprocessing dino_vitb16=deit3`). `data` can be any ImageFolder, e.g. the
# synthetic clone from notebook 01 for training and real ImageNet val (`train/` + `val/` folders). `tasks` adds the
# field's benchmarks by name, each read from `<data_root>/<name>` in its own published layout with its official
# split: `-p data_root /data -p tasks flowers,cars,dtd,in1k,cog_l1,cog_l1_16shot,ade20k` (a dense one, such as
# ADE20K segmentation or NYU depth, takes a linear probe on patch tokens).

# %% tags=["parameters"]
teachers = "world_colour,world_shape"  # registry or timm names, comma-separated or a YAML list
data = "world"                         # "world" (the built-in offline world), or an ImageFolder path (<class>/<image>,
                                       # or train/ + val/)
benchmarks = ""                        # datasets by name probed besides data: flowers, cars, ..., in1k, cog_l3,
                                       # cog_l3_16shot, ade20k, nyud (flowers=/path reads one from elsewhere)
data_root = "data"                     # datasets by name are read from <data_root>/<name> (CoG levels:
                                       # <data_root>/imagenet21k), in their own published layout
probe = "both"                         # which probes (linear, knn, both)
shots = "1,5,25"                       # few-shot linear probes: images per class (none: no few-shot probe)
feature = "cls"                        # which pooled feature of each teacher (cls, patch_mean, cls+patch_mean)
teacher_weights = ""                   # a release weight file per teacher, in its authors' own format:
                                       # name=path,... (DINO, iBOT, DeiT-III, dBOT, UNIC)
preprocessing = ""                     # a teacher's evaluation recipe instead of its release's:
                                       # name=recipe,...
image_size = 224                       # image-folder images are decoded to this side in pixels; auto: the model's own
                                       # (a student's input size; 224 for teachers, which then apply their release's
                                       # resize and crop)
n_train = 6000                         # offline world only: training images (of each world dataset)
n_test = 2000                          # offline world only: test images (of each world dataset)
dense_steps = 1500                     # training steps of each dense probe, 16 images a step (DINOv2: 40000)
dense_lr = 0.01                        # peak AdamW learning rate of the dense probes (DINOv2: 0.001)
device = "auto"                        # "auto": CUDA when present (under torchrun, the rank's own GPU); or cpu, cuda,
                                       # cuda:1
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/02_probe_teachers"     # the folder of this run's artifacts: summary.json, figures, tables, checkpoints

# %%
import workbench as wb

cfg, out = wb.ProbeConfig.from_notebook(globals())  # every parameter checked first, then out_dir claimed
cfg

# %% [markdown]
# ## The data

# %%
import time

from IPython.display import Markdown, display

t_start = time.time()
dev = wb.pick_device(cfg.device)
ds = wb.load_data(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test, image_size=cfg.decode_size)
print(f"device {dev}; writing to {out.resolve()}")
print(ds.describe())

# %% [markdown]
# ## Features and probes
#
# First run: each teacher encodes the train and test splits (offline teachers are trained first if they are
# not cached). Later runs read the cached features. Then the datasets of `tasks`, one after another. One tidy row per
# model, task, protocol and draw goes to `probes.csv`.

# %%
encoders = []
teacher_models = wb.build_teachers(cfg.teachers, cfg.teacher_weights, cfg.preprocessing, dev)
for name, teacher in teacher_models.items():
    encoders.append(wb.Encoder(name, lambda x, m=teacher: m(x).pooled(cfg.feature), teacher,
                               cache_key=f"{name}/{cfg.feature}", features=teacher))
rows = wb.probe(encoders, ds, dev, cfg.probe_tasks(ds.tasks, ds.dense), dense=cfg.dense_protocol)
for ref in cfg.named_datasets():
    named_data = ref.load(cfg.decode_size)
    print(named_data.describe())
    rows += wb.probe(encoders, named_data, dev, cfg.named_probe_tasks(ref, named_data.dense), dense=cfg.dense_protocol)
wb.probing.write_rows(rows, out / "probes.csv")

# %% [markdown]
# ## Teachers x tasks
#
# Top-1 (%) of the linear probe and of 20-NN, best per task in bold (`summary.json` has every k); the dense tasks'
# scores (mIoU, or delta < 1.25 for depth); then few-shot top-1 against images per class.

# %%
tables = {p: wb.probe_table(rows, p) for p in dict.fromkeys(r["protocol"] for r in rows if r.get("shots") is None)}
for protocol in [p for p in tables if p in ("linear", "20-NN") or p.startswith("linear ")]:
    display(Markdown(f"**{protocol} (%)**\n\n" + wb.probing.report.markdown_table(tables[protocol])))
fig = wb.probing.report.accuracy_figure(tables[cfg.main_protocol],
                                        title=f"{cfg.feature} features: {cfg.main_protocol} top-1 (%)")
wb.save_figure(fig, out / "probe.png")
wb.show(fig)
curves = wb.probing.few_shot_table(rows)
if curves:
    fig = wb.probing.report.few_shot_figure(curves)
    wb.save_figure(fig, out / "few_shot.png")
    wb.show(fig)

# %%
summary = {
    "teachers": cfg.teachers,
    "config": cfg.to_dict(),
    "data": ds.describe(),
    "runtime_s": round(time.time() - t_start, 1),
    "probe": tables[cfg.main_protocol],
    "tables": tables,
    "few_shot": curves,
    "skipped_images": {r["model"]: r["skipped"] for r in rows},
}
wb.save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
