"""Studies, not single runs: a grid of settings over seeds, run as one sweep, read back as one table.

    sweep("distill", out="studies/unic-ablation", config="base.yaml",
          grid={"teacher_drop_prob": ["0", "0.5"], "ladder": ["last", "all"]}, seeds=[0, 1, 2])
    runs = collect("studies/unic-ablation")          # one row per run: its settings, seed, state, summary scalars
    table = summarize(runs, baseline={"teacher_drop_prob": "0.5", "ladder": "all"})

This package sits above the stages: it runs them as the command line and papermill do, in other processes, and
reads back what they wrote.
"""
from .collect import collect, progress, summarize
from .figures import interval_figure
from .sweep import sweep

__all__ = ["collect", "interval_figure", "progress", "summarize", "sweep"]
