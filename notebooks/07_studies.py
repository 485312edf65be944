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
# # 07 · Studies: UNIC's ablations over seeds, with intervals
#
# A result is a table over seeds and settings, not one run. UNIC (Sariyildiz et al., ECCV 2024) ablates its
# recipe one piece at a time: teacher dropping, the ladder of projectors on every block, the standardization of
# the teachers' features, and the augmentation. This notebook runs those variants of 03's recipe, each over
# `seeds`, as one **sweep** (`wb.sweep`, on submitit: this machine's processes, or a SLURM array with
# `launcher = "slurm"`), then reads the runs back as one table (`wb.study.collect`) and summarizes each task's
# **gain of the student over the best teacher**: its mean over seeds with a 95 % Student-t interval, and its
# difference to the default recipe *paired by seed* (same seed, same data order and initialisation), with that
# difference's interval and a paired t-test's p-value.
#
# The same study from a terminal, and on a cluster (`--variants` takes a YAML file of `name: {parameter: value}`):
#
#     python -m workbench sweep 03_distill --grid teacher_drop_prob=0,0.5 ladder=last,all --seeds 0,1,2 --out studies/x
#     python -m workbench sweep 03_distill ... --launcher slurm --partition gpu --gpus-per-node 1 --max-parallel 8
#
# Rerunning this notebook with the same `out_dir` continues the study: finished runs are read back, a run that was
# stopped resumes from its checkpoint, a failed one runs again. The defaults are CI-sized (two variants, two seeds,
# a small world); the study of the README is `make study`.

# %% tags=["parameters"]
target = "03_distill"                  # what each run is: a notebook (03_distill, 05_task_distill, ...) or distill (the
                                       # command line's stage)
variants = "default,no-teacher-dropping"  # UNIC's ablations to run, default first: all, or some of default,
                                       # no-teacher-dropping, ladder-last-block, no-standardization, augment-unic
seeds = "0,1"                          # every variant runs once per seed; intervals are over them
base = {"n_train": 512, "n_test": 512, "epochs": 2}  # parameters of every run, a mapping or
                                       # name=value,... (empty: the target's defaults)
metrics = ""                           # the summary values to compare, e.g. gain_over_best_teacher.shape; empty: the
                                       # target's gains over the best teacher
launcher = "local"                     # local: this machine; slurm: one array job (python -m workbench sweep for its
                                       # options)
max_parallel = 1                       # runs at a time
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/07_studies"            # the folder of this run's artifacts: summary.json, figures, tables, checkpoints

# %%
import workbench as wb

cfg, out = wb.StudyConfig.from_notebook(globals())  # every parameter checked first, then out_dir claimed
cfg

# %% [markdown]
# ## The variants
#
# Each is the target's default recipe (with `base`) and one change.

# %%
from IPython.display import Markdown, display

rows = ["| variant | changes |", "|---|---|"]
rows += [f"| {name} | {', '.join(f'`{k} = {v}`' for k, v in params.items()) or 'nothing: the full recipe'} |"
         for name, params in cfg.variant_params.items()]
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## The sweep
#
# One run per variant and seed, each in its own folder under `out_dir/sweep` (its out_dir, as the target writes
# it: an executed notebook of 03 is in `sweep/notebooks/`, its output in `sweep/logs/`). A line as each run starts
# and ends.

# %%
import time

t_start = time.time()
runs = wb.sweep(cfg.target, out / "sweep", config=cfg.base, variants=cfg.variant_params, seeds=cfg.seeds,
                launcher=cfg.launcher, max_parallel=cfg.max_parallel)
runs[["point", "variant", "seed", "state"]]

# %% [markdown]
# ## The table
#
# Per variant and task: the mean over seeds [its 95 % interval]; then the paired difference to `default`
# [its interval] and the p-value of a paired t-test. With few seeds the intervals are wide: a difference whose
# interval holds 0 is within the noise of these seeds.

# %%
compared = cfg.metrics or wb.study.default_metrics(runs)
table = wb.study.summarize(runs, metrics=compared, baseline={"variant": "default"})
display(Markdown(wb.study.markdown_table(table)))

# %%
for metric in compared:
    fig = wb.study.interval_figure(table, metric, title=f"{metric}: mean and 95 % interval over seeds {cfg.seeds}")
    wb.save_figure(fig, out / f"{metric.replace('/', '_')}.png")
    wb.show(fig)

# %%
status = wb.study.progress(out / "sweep")
summary = {
    "config": cfg.to_dict(),
    "runtime_s": round(time.time() - t_start, 1),
    "runs": {state: status[state] for state in ("done", "failed", "preempted", "running", "pending")},
    "metrics": compared,
    "table": [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}  # NaN: no interval
              for row in table.to_dict(orient="records")],
}
wb.save_json(summary, out / "summary.json")
print(f"{status['describe']}; summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
