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
# # 03 · Distill several teachers into one student (UNIC)
#
# Each pretrained encoder is good at something different. UNIC (Sariyildiz et al., ECCV 2024) distills
# several of them into a single ViT student so that it is good at *all* their tasks. The recipe, each
# part switchable below:
#
# - **feature standardization** of every teacher's CLS and patch features (running mean/std, or PHI-S);
# - a **ladder of expendable projectors**: one small MLP per student block and teacher, summed, dropped after training;
# - **teacher dropping**: per image, keep the teacher the student matches worst, drop the others with probability `teacher_drop_prob`;
# - the paper's **optimisation recipe**: one augmented view per image for student and teachers (`augment`), AdamW
#   without weight decay on biases, norms, position embedding and tokens, the learning rate scaled with the batch
#   (`base_lr` per 256 images), warm-up in epochs, cosine to `min_lr`, stochastic depth (`drop_path`).
#
# The defaults run on the **built-in offline world**: 32x32 images whose *shape* and *colour* vary independently,
# and two specialist teachers, `world_shape` (sees only edges, so colour-blind) and `world_colour` (sees only
# pixel colours, so shape-blind). A good student should match the shape specialist on shape *and* the colour
# specialist on colour. Real teachers are timm models whose weights are in your local Hugging Face cache:
# `papermill 03_distill.ipynb out.ipynb -p teachers dino_vitb16,deit3_vitb16 -p student vit_base_patch16_224 -p data /path/to/imagenet`.
#
# The paper's ImageNet-1K run (DINO, DeiT-III, iBOT and dBOT into a ViT-B/16) is the shipped run file
# `recipes/unic_vitb16_in1k.yaml`: `torchrun --nproc_per_node 8 -m workbench distill --config recipes/unic_vitb16_in1k.yaml`
# (set its `data`, `teacher_weights` and `out_dir` first; see the README).
#
# On several GPUs set `nproc`: the notebook writes its parameters to `<out_dir>/run.yaml`, launches
# `torchrun --nproc_per_node <nproc> -m workbench distill --config <out_dir>/run.yaml` and plots the run live
# from `<out_dir>/metrics.jsonl`; the same file runs on several machines from a terminal (see the README).
#
# Distilling for *one* task instead (a probed teacher's predictions into a small student) is notebook 05.

# %% tags=["parameters"]
teachers = "world_colour,world_shape"  # registry or timm names, comma-separated or a YAML list
student = "wb_vitc_tiny_patch8_32"     # any timm ViT; the wb_ ones are the workbench's, sized for the 32x32 offline
                                       # world
data = "world"                         # "world" (the built-in offline world), or an ImageFolder path (<class>/<image>,
                                       # or train/ + val/)
n_train = 6000                         # offline world only: training images (of each world dataset)
n_test = 2000                          # offline world only: test images (of each world dataset)
teacher_weights = ""                   # a release weight file per teacher, in its authors' own format:
                                       # name=path,... (DINO, iBOT, DeiT-III, dBOT, UNIC)
preprocessing = ""                     # a teacher's evaluation recipe instead of its release's:
                                       # name=recipe,...
augment = "auto"                       # training views: unic (the official pipeline), light (crop and flip), none;
                                       # auto: unic for image folders, none on the offline world (measured: README)
normalize = "imagenet"                 # the student's input mean/std (imagenet, clip, inception)
student_init = "random"                # "random"; "student" (03's default student, distilled on first use); a student
                                       # folder (an out_dir of 03 or its student/); or a released UNIC checkpoint file
                                       # (unic.pth)
drop_path = 0.0                        # the student's stochastic depth rate (the paper's ViT-B: 0.1)
epochs = 8                             # passes over the training split
batch_size = 64                        # training images per step (the global batch, whatever the number of processes)
base_lr = 0.008                        # peak learning rate per 256 images: the run's peak is base_lr x batch_size / 256
min_lr = 0.0                           # the learning rate the cosine schedule ends at
warmup_epochs = 0.8                    # epochs of linear warm-up from 0 to the peak learning rate
betas = "0.9,0.999"                    # AdamW's beta1, beta2
weight_decay = 0.05                    # AdamW weight decay of the weight matrices (not of biases, norms, position
                                       # embedding or tokens)
grad_clip = 1.0                        # gradient norm clipping (0: none)
teacher_drop_prob = 0.5                # teacher dropping: per image, each teacher but the one matched worst is dropped
                                       # with this probability (0: none)
ladder = "all"                         # "all" blocks, "last" (plain projector baseline), or indices like 1,3
standardize = "running"                # teacher feature standardization (none, running, phis)
image_size = "auto"                    # image-folder images are decoded to this side in pixels; auto: the model's own
                                       # (a student's input size; 224 for teachers, which then apply their release's
                                       # resize and crop)
seed = 0                               # the seed everything random derives from (weights, data order, sampling); with
                                       # repeats, the first of the seeds
fused_ladder = True                    # the ladder as batched matrix products (the same function as one MLP per block)
device = "auto"                        # "auto": CUDA when present (under torchrun, the rank's own GPU); or cpu, cuda,
                                       # cuda:1
precision = "auto"                     # fp32, or bf16 / fp16 (CUDA) autocast for the models' matrix products; auto:
                                       # bf16 where the device computes it natively and it is faster for this run's
                                       # models (timed once per machine), else fp32
torch_compile = False                  # torch.compile the student and ladder (long GPU runs)
nproc = 1                              # processes the notebook launches with torchrun (N GPUs); the command line takes
                                       # torchrun's
ckpt_every = 0                         # checkpoint every N steps; 0: at the end of every epoch
keep_checkpoints = 3                   # how many of the newest checkpoints to keep
logger = "none"                        # where the run's metric records also go: none; tensorboard (event files in
                                       # <out_dir>/tensorboard); wandb (Weights & Biases, offline unless WANDB_MODE is
                                       # set). Each needs its extra: pip install -e ".[tensorboard]" or ".[wandb]"
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/03_distill"            # the folder of this run's artifacts: summary.json, figures, tables, checkpoints

# %%
import workbench as wb

cfg, out = wb.DistillConfig.from_notebook(globals())  # every parameter checked first, then out_dir claimed for this run
cfg

# %% [markdown]
# ## The data
#
# Every model sees the same images in [0, 1] and applies its own resizing and normalisation. `out_dir` now
# holds `run.yaml`, the same run for a terminal (`torchrun ... -m workbench distill --config <out_dir>/run.yaml`).

# %%
import time

from IPython.display import Markdown, display

t_start = time.time()
dev = wb.pick_device(cfg.device)
ds = wb.load_data(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test, image_size=cfg.input_size, seed=cfg.seed)
print(f"device {dev}; writing to {out.resolve()}")
print(ds.describe())
sample = [ds.test[i] for i in range(min(24, len(ds.test)))]  # a small folder may hold fewer
titles = [" / ".join(ds.tasks[t][int(y[t])] for t in ds.tasks) for _, y in sample]
wb.show(wb.core.figures.image_grid([x.numpy() for x, _ in sample], titles))

# %% [markdown]
# ## The teachers
#
# Offline teachers are trained on first use (about half a minute) and cached under `$WORKBENCH_CACHE`
# (default `~/.cache/workbench`); later runs load them. Real teachers load from the local Hugging Face cache.

# %%
teacher_models = wb.build_teachers(cfg.teachers, cfg.teacher_weights, cfg.preprocessing)  # each from its release file
for name, m in teacher_models.items():
    print(f"{name}: {sum(p.numel() for p in m.parameters()) / 1e6:.2f}M parameters, {m.embed_dim}-d features")

# %% [markdown]
# ## Distillation
#
# The left panel is the distillation loss against each teacher (standardized features, so the teachers
# are comparable); the middle one is alpha, each teacher's share of the loss after teacher dropping. With
# dropping on, the teacher the student matches worst gets the larger share. The right one is the validation
# loss at the end of every epoch: the student against each teacher on the test split, no dropping, no
# augmentation. With `nproc > 1` the training runs in `nproc` torchrun processes and the plot follows their
# `metrics.jsonl`. The finished student is `out_dir/student` (for the workbench) and `out_dir/timm` (timm's
# own format: `timm.create_model("local-dir:<out_dir>/timm", pretrained=True)`, its preprocessing included).
#
# **Nothing is lost when the run dies.** Every `ckpt_every` steps (default: every epoch) the whole training
# state goes to `out_dir/checkpoints/` (weights, optimizer, standardization statistics, random generators,
# position in the data, the curves so far), written atomically. Interrupt the kernel, or kill the job, and
# run the notebook again with the same `out_dir`: it prints `resumed from step N` and ends with the same
# student as an uninterrupted run. A different configuration in that `out_dir` is refused;
# `overwrite = True` starts over. A run that already finished is simply reloaded.

# %%
live = wb.LivePlot(title=f"{cfg.student} <- {', '.join(cfg.teachers)}")
run = wb.distillation.distill_or_launch(cfg, ds, teacher_models, out, callback=live)
live.refresh()
live.save(out / "training.png")
student_model = wb.load_student(run.student_folder, device=dev)
print(run.describe())

# %% [markdown]
# ## Linear probes on frozen features
#
# A logistic-regression probe per task on each model's pooled feature (teachers) or final CLS token
# (student; the projectors are gone). The bottom row is the student's gain over the *best* teacher of each task.

# %%
encoders = [wb.Encoder(name, lambda x, m=m: m(x).cls, m) for name, m in teacher_models.items()]
encoders.append(wb.Encoder("student", student_model.embed, student_model))
probe = wb.probe_table(wb.probe(encoders, ds, dev, cache=False))
gains = wb.probing.report.gain_over_best_teacher(probe, cfg.teachers)
display(Markdown(wb.probing.report.markdown_table(probe, gains)))
fig = wb.probing.report.accuracy_figure(probe, gains, title="Linear probe top-1 (%); labels: student minus best teacher")
wb.save_figure(fig, out / "probe.png")
wb.show(fig)

# %%
summary = {
    "teachers": cfg.teachers,
    "student": cfg.student,
    # the configuration, data, times, closing losses, resumption: what the command line's summary.json holds too
    **wb.distillation.run_summary(cfg, ds, run, runtime_s=time.time() - t_start, nproc=cfg.nproc),
    "empty_classes": ds.empty_classes,
    "probe": probe,
    "gain_over_best_teacher": gains,
}
wb.save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
