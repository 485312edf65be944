"""A sweep's table as a figure: each setting combination's mean and interval over seeds, side by side.

Drawn off-screen like every workbench figure (a ``Figure`` object, no pyplot state): show it with
``workbench.core.figures.show``, save it with ``workbench.core.figures.save_figure``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from workbench.core.errors import DataError, ParameterError
from workbench.core.params import did_you_mean

TEXT_SIZE = 8
PAD = 0.02  # of the axes' width: between the data and the texts, and at either edge


def _decimals(half: float) -> int | None:
    """Decimals that show a half-width with two significant digits (what the interval resolves); None without one."""
    if not (math.isfinite(half) and half > 0):
        return None
    return int(min(6, max(0, 1 - math.floor(math.log10(half)))))


def _number(value: float, decimals: int | None, sign: str = "") -> str:
    return f"{value:{sign}.{decimals}f}" if decimals is not None else f"{value:{sign}.4g}"


def _text(row, decimals: int | None, has_diff: bool, is_base: bool) -> str:
    if not row["n"]:
        return "no finished run"
    half = (row["ci_high"] - row["ci_low"]) / 2
    text = _number(row["mean"], decimals) + (f" ± {_number(half, decimals)}" if math.isfinite(half) else "")
    text += f"  (n={row['n']})"
    if has_diff and is_base:
        text += "  baseline"
    elif has_diff and row["diff_n"]:
        text += f"  Δ {_number(row['diff_mean'], decimals, '+')}"
        if math.isfinite(row["p_value"]):
            text += f", p={row['p_value']:.2g}"
    return text


def _is_baseline(table: pd.DataFrame, baseline: dict | None) -> np.ndarray:
    """The baseline's rows: named by the summary's ``attrs``, else the rows summarize marks by a diff of 0 with
    no interval over two or more seeds (a compared row with two pairs always has an interval)."""
    if baseline is not None and all(k in table.columns for k in baseline):
        mask = np.ones(len(table), dtype=bool)
        for k, v in baseline.items():
            mask &= (table[k] == v).to_numpy()
        return mask
    return ((table["diff_mean"] == 0) & table["diff_ci_low"].isna() & (table["diff_n"] >= 2)).to_numpy()


def interval_figure(summary: pd.DataFrame, metric: str, by: str | None = None, title: str | None = None) -> Figure:
    """One metric of ``summarize``'s table: a row per setting combination, its mean with the t interval over seeds
    as error bars, and ``mean ± half-width (n)`` written at the right, inside the axes. With a baseline (the
    ``diff_*`` columns) a dashed line marks the baseline's mean and each text adds the paired difference and its
    p-value. ``by``: a setting that colours the rows, which are grouped by its value (default: one colour, the
    table's order). A row's label names the settings that vary in the table; those that do not go in the title.
    """
    for column in ("metric", "n", "mean", "ci_low", "ci_high"):
        if column not in summary.columns:
            raise DataError(f"summary has no column {column!r}: give the table workbench.study.summarize(runs) returns")
    known = list(dict.fromkeys(summary["metric"]))
    if metric not in known:
        raise ParameterError(f"metric {metric!r} is not in the summary{did_you_mean(metric, known)}; it has: "
                             f"{', '.join(map(str, known))}")
    table = summary[summary["metric"] == metric].reset_index(drop=True)
    first = list(summary.columns).index("metric")
    settings = [c for c in summary.attrs.get("settings", summary.columns[:first]) if c in table.columns]
    if by is not None and by not in settings:
        raise ParameterError(f"by={by!r} is not a setting of the summary{did_you_mean(by, settings)}; "
                             f"the settings: {', '.join(settings) or 'none'}")
    if by is not None:
        table = table.iloc[_stable_order(table[by])].reset_index(drop=True)
    has_diff = "diff_mean" in table.columns
    base_rows = _is_baseline(table, summary.attrs.get("baseline")) if has_diff else np.zeros(len(table), bool)
    varying = [c for c in settings if table[c].nunique(dropna=False) > 1] or settings
    fixed = [c for c in settings if c not in varying]
    labels = [", ".join(f"{c}={_shown(row[c])}" for c in varying) or "all runs" for _, row in table.iterrows()]
    labels = [f"{label} (baseline)" if base else label for label, base in zip(labels, base_rows)]

    fig = Figure(figsize=(8, 1.3 + 0.42 * len(table)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(table))
    colours = _colours(table[by]) if by is not None else ["C0"] * len(table)
    mean = table["mean"].to_numpy(dtype=float)
    low = np.where(table["ci_low"].notna(), table["ci_low"], table["mean"]).astype(float)
    high = np.where(table["ci_high"].notna(), table["ci_high"], table["mean"]).astype(float)
    for i in range(len(table)):
        if math.isfinite(mean[i]):
            ax.errorbar(mean[i], y[i], xerr=[[mean[i] - low[i]], [high[i] - mean[i]]], fmt="o", color=colours[i],
                        capsize=4, markersize=5)
    base_mean = mean[base_rows][0] if base_rows.any() and math.isfinite(mean[base_rows][0]) else None
    if base_mean is not None:
        ax.axvline(base_mean, linestyle="--", color="0.45", linewidth=1, zorder=0)
    ax.set_yticks(y, labels, fontsize=TEXT_SIZE)
    ax.set_ylim(len(table) - 0.5, -0.5)  # the table's first row at the top
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    confidence = summary.attrs.get("confidence")
    interval = f"{confidence:.0%} Student-t interval" if confidence else "Student-t interval"
    heading = title or f"{metric}: mean and {interval} over seeds"
    if fixed:
        heading += "\n" + ", ".join(f"{c}={_shown(table[c].iloc[0])}" for c in fixed)
    ax.set_title(heading, fontsize=TEXT_SIZE + 1)

    finite = np.isfinite(np.concatenate([low, high]))
    halves = (table["ci_high"] - table["ci_low"]).to_numpy(dtype=float) / 2
    halves = halves[np.isfinite(halves) & (halves > 0)]
    decimals = _decimals(float(np.median(halves)) if len(halves) else math.nan)
    texts = [ax.text(1 - PAD, y[i], _text(table.iloc[i], decimals, has_diff, bool(base_rows[i])), ha="right",
                     va="center", fontsize=TEXT_SIZE, transform=ax.get_yaxis_transform(), clip_on=False)
             for i in range(len(table))]
    _make_room(fig, ax, texts, np.concatenate([low, high])[finite], base_mean)
    return fig


def _shown(value) -> str:
    """A setting as the grid wrote it: a column of 0 and 0.5 holds 0.0, shown "0"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _stable_order(values: pd.Series) -> list[int]:
    """Row positions grouped by value, the values in order of first appearance and rows in table order."""
    order = {v: i for i, v in enumerate(dict.fromkeys(values))}
    return sorted(range(len(values)), key=lambda i: order[values.iloc[i]])


def _colours(values: pd.Series) -> list[str]:
    order = {v: i for i, v in enumerate(dict.fromkeys(values))}
    return [f"C{order[v] % 10}" for v in values]


def _make_room(fig: Figure, ax, texts, values: np.ndarray, base_mean: float | None) -> None:
    """Set the x range so the data fill the left of the axes and the texts, measured as drawn, the right."""
    if base_mean is not None:
        values = np.append(values, base_mean)
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    span = hi - lo if hi > lo else (abs(hi) * 0.1 or 1.0)
    if hi <= lo:
        lo, hi = lo - span / 2, hi + span / 2
    for _ in range(2):  # the new x range changes the tick labels, and so the layout: measured again once
        fig.draw_without_rendering()  # lays the figure out: the axes' width and each text's, in pixels
        width = max(ax.get_window_extent().width, 1.0)
        text_frac = max((t.get_window_extent().width for t in texts), default=0.0) / width
        data_end = max(1 - PAD - text_frac - PAD, 2 * PAD + 0.3)  # texts wider than that overlap, still inside
        scale = span / (data_end - PAD)
        ax.set_xlim(lo - PAD * scale, hi + (1 - data_end) * scale)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=max(4, round(6 / (data_end - PAD)))))
        ticks = ax.get_xticks()
        ax.set_xticks(ticks[(ticks >= lo - PAD * scale) & (ticks <= hi)])  # none under the texts: not data there
