"""Studies, not single runs: a grid of settings (or named variants) over seeds, run as one sweep, read back as one
table.

    sweep("distill", out="studies/unic-ablation", config="base.yaml",
          grid={"teacher_drop_prob": ["0", "0.5"], "ladder": ["last", "all"]}, seeds=[0, 1, 2])
    runs = collect("studies/unic-ablation")          # one row per run: its settings, seed, state, summary scalars
    table = summarize(runs, baseline={"teacher_drop_prob": "0.5", "ladder": "all"})

This package sits above the stages: it runs them as the command line and papermill do, in other processes, and
reads back what they wrote. ``StudyConfig`` and ``UNIC_ABLATIONS`` are the 07 notebook's study.
"""
from .collect import collect, progress, summarize
from .config import UNIC_ABLATIONS, StudyConfig
from .figures import interval_figure
from .report import default_metrics, markdown_table
from .sweep import sweep

__all__ = ["collect", "default_metrics", "interval_figure", "markdown_table", "progress", "StudyConfig", "summarize",
           "sweep", "UNIC_ABLATIONS"]
