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
# # 05 · Task-specific distillation: probe the teacher, distill its predictions
#
# With one target task and few labels, the good practice is to *probe* a large teacher rather than fine-tune it,
# and to distill the probed teacher's predictions into a small student, on many more images than are labelled.
# For each seed: `labels_per_class` labelled training images per class; a linear probe (the probe of 02, its
# weight decay chosen by held-out cross-entropy, since the logits' scale matters here) on each teacher's frozen
# features, keeping the teacher whose probe is best on held-out labelled images; then students trained side by
# side, each from the same initialisation (`student_init`) and on the same batches, with
#
# $$\mathcal{L} = (1 - a)\,\mathrm{CE}\big(s(x_\mathrm{labelled}), y\big) + a\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(t(x)/T)\;\|\;\mathrm{softmax}(s(x)/T)\big)$$
#
# where the KL term runs on the labelled images *and* `extra` images that carry no label (by default fresh
# offline-world images rendered every step; `extra` may also be 01's synthetic clone):
#
# - `labels`: cross-entropy on the labelled images only;
# - `finetuned`: distilled from the teacher fine-tuned end to end on the labelled images (`finetune_steps`);
# - `probed`: distilled from the probed teacher;
# - `probed_mix`: as `probed`, each distillation image blended with another one (mixup, `mix`), the teacher labelling the blend.
#
# The defaults run on the offline world: the task is `shape`, the candidate teachers its two specialists, and the
# student starts from random weights (`student_init` takes a student of 03, e.g. `runs/03_distill/student`, or `"student"` for 03's default student).

# %% tags=["parameters"]
teachers = "world_colour,world_shape"  # registry or timm names, comma-separated or a YAML list
teacher_weights = ""                   # a release weight file per teacher, in its authors' own format:
                                       # name=path,... (DINO, iBOT, DeiT-III, dBOT, UNIC)
preprocessing = ""                     # a teacher's evaluation recipe instead of its release's:
                                       # name=recipe,...
task = "shape"                         # the task to distill: "shape" or "colour" (offline world), "classes"
                                       # (ImageFolder)
student = "wb_vitc_tiny_patch8_32"     # any timm ViT; the wb_ ones are the workbench's, sized for the 32x32 offline
                                       # world
student_init = "random"                # "random"; "student" (03's default student, distilled on first use); a student
                                       # folder (an out_dir of 03 or its student/); or a released UNIC checkpoint file
                                       # (unic.pth)
data = "world"                         # "world" (the built-in offline world), or an ImageFolder path (<class>/<image>,
                                       # or train/ + val/)
n_train = 6000                         # offline world only: training images (of each world dataset)
n_test = 2000                          # offline world only: test images (of each world dataset)
labels_per_class = 10                  # labelled training images per class
extra = "world"                        # extra distillation images: "world" (rendered on the fly), "unlabelled", "none",
                                       # or a folder
students = "labels,finetuned,probed"   # trained side by side, among labels, finetuned, probed, probed_mix
kd_weight = 0.9                        # a in (1 - a) * CE + a * T^2 * KL(teacher || student)
temperature = 1.0                      # T; with few classes T
                                       # = 1 teaches fastest
mix = 1.0                              # probed_mix: blend weights ~ Beta(mix, mix)
student_steps = 300                    # training steps of each student
batch_size = 48                        # training images per step (the global batch, whatever the number of processes)
lr = 0.002                             # the students' peak learning rate (AdamW)
weight_decay = 0.05                    # AdamW weight decay of the weight matrices (not of biases, norms, position
                                       # embedding or tokens)
warmup_frac = 0.3                      # share of the steps spent warming the learning rate up
grad_clip = 5.0                        # gradient norm clipping (0: none)
finetune_steps = 50                    # the fine-tuned teacher's short schedule
finetune_lr = 0.001                    # the fine-tuned teacher's learning rate
seed = 0                               # the seed everything random derives from (weights, data order, sampling); with
                                       # repeats, the first of the seeds
repeats = 3                            # seeds seed, seed + 1, ...: each result is a mean and spread over them
device = "auto"                        # "auto": CUDA when present (under torchrun, the rank's own GPU); or cpu, cuda,
                                       # cuda:1
precision = "auto"                     # fp32, or bf16 / fp16 (CUDA) autocast for the models' matrix products; auto:
                                       # bf16 where the device computes it natively and it is faster for this run's
                                       # models (timed once per machine), else fp32
workers = 0                            # CPU: students trained at once, each in its own process (0: one per core); GPU:
                                       # 1
logger = "none"                        # where the run's metric records also go: none; tensorboard (event files in
                                       # <out_dir>/tensorboard); wandb (Weights & Biases, offline unless WANDB_MODE is
                                       # set). Each needs its extra: pip install -e ".[tensorboard]" or ".[wandb]"
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/05_task_distill"       # the folder of this run's artifacts: summary.json, figures, tables, checkpoints

# %%
import workbench as wb

cfg, out = wb.TaskDistillConfig.from_notebook(globals())  # every parameter checked first, then out_dir claimed
cfg

# %% [markdown]
# ## The data and the candidate teachers
#
# Every model sees the same images in [0, 1] and applies its own resizing and normalisation. Offline teachers are
# trained on first use (about half a minute) and cached under `$WORKBENCH_CACHE`; real ones load from the local
# Hugging Face cache.

# %%
import time

from IPython.display import Markdown, display

t_start = time.time()
dev = wb.pick_device(cfg.device)
ds = wb.load_data(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test, image_size=cfg.input_size, seed=cfg.seed)
print(f"device {dev}; writing to {out.resolve()}")
print(ds.describe())
teacher_models = wb.build_teachers(cfg.teachers, cfg.teacher_weights, cfg.preprocessing)

# %% [markdown]
# ## Training the students
#
# Left: training loss; right: top-1 on 250 test images while training (one colour per student, one line style per
# seed). On CPU the students are independent jobs, trained side by side in single-threaded processes, one per core
# (`workers`): these small models barely use a second thread, so this is about 1.4x faster on two cores.

# %%
live = wb.distillation.task.TaskLivePlot(
    title=f"{cfg.student} on {cfg.task!r}: {cfg.labels_per_class} labels per class, extra images: {cfg.extra}")
task_run = wb.task_distill(cfg, ds, teacher_models, out_dir=out, callback=live)
live.refresh()
live.save(out / "training.png")

# %% [markdown]
# ## Students side by side
#
# Test top-1 on the whole test split, mean ± std over the seeds, and each student's gain over the label-only
# student of the same seed; the teachers' own top-1 for reference (grey bars). The students of the first seed
# are saved under `out_dir/students/` (`wb.load_student` reads their encoder).

# %%
task_summary = task_run.summary()
display(Markdown(wb.distillation.task.task_table(task_summary)))
fig = wb.distillation.task.results_figure(task_summary)
wb.save_figure(fig, out / "task.png")
wb.show(fig)

# %%
summary = {"student": cfg.student, "config": cfg.to_dict(), "data": ds.describe(),
           "runtime_s": round(time.time() - t_start, 1), **task_summary}
wb.save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
