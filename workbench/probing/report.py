"""Probe results as the notebooks show them: a models x tasks table, the gain over the best teacher, bars."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def gain_over_best_teacher(probe: dict[str, dict[str, float]], teachers: list[str],
                           model: str = "student") -> dict[str, float]:
    """Per task: top-1 of ``model`` minus the best teacher's top-1 (points; positive = model wins)."""
    return {task: round(acc - max(probe[t][task] for t in teachers), 2) for task, acc in probe[model].items()}


def markdown_table(probe: dict[str, dict[str, float]], gains: dict[str, float] | None = None) -> str:
    """Models x tasks top-1 table in Markdown, best per task in bold, optional gain row."""
    tasks = list(next(iter(probe.values())))
    best = {t: max(r[t] for r in probe.values()) for t in tasks}
    lines = ["| model | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for name, row in probe.items():
        cells = [f"**{row[t]:.1f}**" if row[t] == best[t] else f"{row[t]:.1f}" for t in tasks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if gains:
        lines.append("| *student - best teacher* | " + " | ".join(f"{gains[t]:+.1f}" for t in tasks) + " |")
    return "\n".join(lines)


def accuracy_figure(probe: dict[str, dict[str, float]], gains: dict[str, float] | None = None,
                    title: str = "Linear probe top-1 (%)") -> Figure:
    """Grouped bars: one group per task, one bar per model; the student's gain over the best teacher on top."""
    models = list(probe)
    tasks = list(probe[models[0]])
    fig = Figure(figsize=(max(6, 2.2 * len(tasks) + 2.5), 3.6), dpi=100)
    ax = fig.subplots()
    width = 0.8 / len(models)
    x = np.arange(len(tasks))
    for i, m in enumerate(models):
        ax.bar(x + (i - (len(models) - 1) / 2) * width, [probe[m][t] for t in tasks], width, label=m)
    if gains:
        for j, t in enumerate(tasks):
            ax.annotate(f"{gains[t]:+.1f}", (x[j] + (len(models) - 1) / 2 * width, probe["student"][t]),
                        ha="center", va="bottom", fontsize=9, xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(x, tasks)
    ax.set_ylim(0, 112)  # headroom for the gain labels
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def few_shot_figure(few_shot: dict[str, dict[str, dict[int, dict]]]) -> Figure:
    """Top-1 against images per class, one panel per task, one line (mean +- std) per model."""
    tasks = list(next(iter(few_shot.values())))
    fig = Figure(figsize=(4.2 * len(tasks), 3.2), dpi=100)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        for model, per_task in few_shot.items():
            shots = sorted(per_task[task], key=int)
            mean = np.array([per_task[task][n]["mean"] for n in shots])
            std = np.array([per_task[task][n]["std"] for n in shots])
            x = [int(n) for n in shots]
            ax.plot(x, mean, marker="o", label=model)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("images per class")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"few-shot: {task}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
