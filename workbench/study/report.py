"""A study's summary as text: a markdown table a notebook displays and the README quotes."""
from __future__ import annotations

import math

import pandas as pd

GAINS = "gain_over_best_teacher."  # 03's and 04's headline: the student's gain over the best teacher, per task


def default_metrics(runs: pd.DataFrame) -> list[str]:
    """The gains over the best teacher when the runs report them (03, 04), else every closing loss (the command
    line's distill)."""
    gains = [c for c in runs.columns if c.startswith(GAINS)]
    return gains or [c for c in runs.columns if c == "final_loss" or c.startswith("val_loss")]


def _number(x: float, digits: int) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def markdown_table(summary: pd.DataFrame, digits: int = 2) -> str:
    """One row per setting and metric: mean [95 % interval] over seeds, and, when ``summary`` has a baseline, the
    paired difference to it [interval] and its p-value."""
    settings = [c for c in summary.columns[:list(summary.columns).index("metric")]]
    paired = "diff_mean" in summary.columns
    head = [*settings, "metric", "n", "mean [interval]"] + (["vs baseline [interval]", "p"] if paired else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(settings) + "---|---:|---:|"
             + ("---:|---:|" if paired else "")]
    for row in summary.itertuples(index=False):
        r = row._asdict()
        cells = [str(r[s]) for s in settings] + [r["metric"], str(r["n"]),
                                                  f"{_number(r['mean'], digits)} [{_number(r['ci_low'], digits)}, "
                                                  f"{_number(r['ci_high'], digits)}]"]
        if paired:
            p = r["p_value"]
            cells += [f"{_number(r['diff_mean'], digits)} [{_number(r['diff_ci_low'], digits)}, "
                      f"{_number(r['diff_ci_high'], digits)}]", "-" if math.isnan(p) else f"{p:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
