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
# student starts from random weights (`student_init` takes a student of 03, e.g. `runs/03_distill/checkpoint`).

# %% tags=["parameters"]
teachers = "world_colour,world_shape"  # the candidates: each is probed, the best probed one is distilled
task = "shape"                         # the task to distill: "shape" or "colour" (offline world), "classes" (ImageFolder)
student = "wb_vitc_tiny_patch8_32"     # any timm ViT; this one is sized for the 32x32 offline world
student_init = "random"                # or a student folder of 03, e.g. "runs/03_distill/checkpoint"
data = "world"                         # "world", or an ImageFolder path (<class>/<image>, or train/ + val/)
n_train = 6000                         # offline world only: training images (most without labels)
n_test = 2000                          # offline world only: test images
labels_per_class = 10                  # labelled training images per class; the other images have no labels
extra = "world"                        # extra distillation images: "world" (rendered on the fly), "unlabelled", "none", or a folder (e.g. 01's clone)
students = "labels,finetuned,probed"   # trained side by side; "probed_mix" adds the mixing variant
kd_weight = 0.9                        # a in (1 - a) * CE + a * T^2 * KL(teacher || student)
temperature = 1.0                      # T
mix = 1.0                              # probed_mix: blend weights ~ Beta(mix, mix)
steps = 300                            # training steps per student
batch_size = 48                        # images per step: a third labelled, the rest extra (for the students with a teacher)
lr = 0.002
weight_decay = 0.05
warmup_frac = 0.3                      # share of the steps spent warming the learning rate up
grad_clip = 5.0                        # gradient norm clipping (0: none)
finetune_steps = 50                    # the fine-tuned teacher's short schedule
finetune_lr = 0.001
seed = 0
repeats = 3                            # seeds seed, seed + 1, ...: mean and spread
device = "auto"                        # "auto" picks CUDA when present
workers = 0                            # CPU: students trained at once, each in its own process (0: one per core)
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/05_task_distill"

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
teacher_models = {name: wb.create_teacher(name) for name in cfg.teachers}

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
fig.savefig(out / "task.png")
wb.show(fig)

# %%
summary = {"student": cfg.student, "config": cfg.to_dict(), "data": ds.describe(),
           "runtime_s": round(time.time() - t_start, 1), **task_summary}
wb.save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
