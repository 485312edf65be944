"""Probe results as the notebooks show them: a models x tasks table, the gain over the best teacher, bars, and the
maps of the dense probes."""
from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch


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


def dense_figure(images, truth, predictions: dict[str, object], classes: tuple[str, ...] | None = None,
                 title: str = "") -> Figure:
    """One row per test image: the image, its ground truth, then each model's predicted map, side by side.

    ``images`` (N, 3, H, W) in [0, 1]; ``truth`` and each prediction (N, H, W): class indices (``classes`` given;
    255, the ignored label, drawn white) or depths (one colour scale for the row, white where the truth has none).
    """
    images, truth = np.asarray(images), np.asarray(truth)
    preds = {m: np.asarray(p) for m, p in predictions.items()}
    cols = 2 + len(preds)
    fig = Figure(figsize=(1.6 * cols, 1.55 * len(images) + 0.5), dpi=100)
    axes = fig.subplots(len(images), cols, squeeze=False)
    palette = _class_palette(tuple(classes)) if classes is not None else None
    for i, row in enumerate(axes):
        row[0].imshow(np.clip(images[i].transpose(1, 2, 0), 0, 1), interpolation="nearest")
        maps = [truth[i], *(p[i] for p in preds.values())]
        if palette is not None:
            for ax, m in zip(row[1:], maps):
                ax.imshow(palette[np.minimum(m.astype(np.int64), len(palette) - 1)], interpolation="nearest")
        else:
            valid = truth[i] > 0
            low, high = (truth[i][valid].min(), truth[i][valid].max()) if valid.any() else (0.0, 1.0)
            for ax, m in zip(row[1:], maps):
                ax.imshow(np.where(valid, m, np.nan), cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, name in zip(axes[0], ["image", "ground truth", *preds]):
        ax.set_title(name, fontsize=8)
    if classes is not None:
        handles = [Patch(color=palette[k], label=c) for k, c in enumerate(classes[: len(palette) - 1])]
        fig.legend(handles=handles[:20], loc="lower center", ncol=min(7, len(handles)), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if classes is not None else 0, 1, 1))
    return fig


def _class_palette(classes: tuple[str, ...]) -> np.ndarray:
    """(n + 1, 3) colours: class k, and a last entry (white) that the ignored label 255 is clipped to. Class 0 (the
    background of most dense tasks) is dark grey, a class named after a colour ("red") that colour, the others
    tab20's."""
    cycle, colors = matplotlib.colormaps["tab20"], matplotlib.colors
    base = [(0.25, 0.25, 0.25)] + [colors.to_rgb(c) if colors.is_color_like(c) else cycle(k % 20)[:3]
                                   for k, c in enumerate(classes[1:])]
    return np.array([*base[: len(classes)], (1.0, 1.0, 1.0)])
