"""Pictures of task-specific distillation: the live training plot, the students side by side, a table."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ...core.live import LivePlot
from .config import STUDENTS


def student_colour(name: str) -> str:
    """The same colour for a student in every plot, whatever students a run has and in whatever order."""
    return f"C{list(STUDENTS).index(name)}"


class TaskLivePlot(LivePlot):
    """Training loss and held-out top-1 while the students train: one colour per student, one line style per seed."""

    def __init__(self, every_s: float = 2.0, title: str = ""):
        super().__init__({"loss": "training loss", "top1": "test top-1 (%), 250 images"}, every_s, title)

    def figure(self) -> Figure:
        fig = Figure(figsize=(10, 3.4), dpi=100)
        axes = fig.subplots(1, 2)
        seen = {r["student"] for r in self.records}  # records of students trained at once arrive interleaved
        names = [s for s in STUDENTS if s in seen]
        seeds = sorted({r["seed"] for r in self.records})
        styles = ["-", "--", ":", "-."]
        for ax, (key, label) in zip(axes, self.panels.items()):
            for name in names:
                for j, seed in enumerate(seeds):
                    rs = sorted((r for r in self.records if r["student"] == name and r["seed"] == seed and key in r),
                                key=lambda r: r["step"])
                    if rs:
                        ax.plot([r["step"] for r in rs], [r[key] for r in rs], color=student_colour(name),
                                linestyle=styles[j % len(styles)], label=name if j == 0 else None)
            ax.set_title(label)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if names:
                ax.legend(fontsize=8)
        axes[0].set_yscale("log")
        fig.suptitle(self.title + (f"  (seeds {', '.join(map(str, seeds))}: -, --, :)" if len(seeds) > 1 else ""))
        fig.tight_layout()
        return fig


def results_figure(summary: dict, title: str = "") -> Figure:
    """Mean test top-1 (bars, +- std) of every student and teacher, one dot per seed."""
    rows = [(STUDENTS.get(s, s), v) for s, v in summary["students"].items()]
    rows += [(t, v) for t, v in summary["teachers"].items()]
    fig = Figure(figsize=(7, 0.45 * len(rows) + 1.2), dpi=100)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    colours = [student_colour(s) for s in summary["students"]] + ["0.7"] * len(summary["teachers"])
    for (_, v), yi, colour in zip(rows, y, colours):
        ax.barh(yi, v["mean"], xerr=v["std"], color=colour, alpha=0.85, capsize=3)
        ax.plot(v["per_seed"], [yi] * len(v["per_seed"]), "k.", markersize=5)
        ax.annotate(f"{v['mean']:.1f} ± {v['std']:.1f}", (max(v["mean"] + v["std"], v["max"]), yi), xytext=(5, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, [label for label, _ in rows])
    ax.set_xlim(0, 112)
    ax.set_xlabel("test top-1 (%)")
    ax.set_title(title or f"task {summary['task']!r}: mean ± std over seeds {summary['seeds']} (dots: seeds)",
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def task_table(summary: dict) -> str:
    """Markdown: test top-1 of every student and teacher, mean ± std and per seed, and the gain over labels only."""
    seeds, gains = summary["seeds"], summary.get("gain_over_labels", {})
    lines = ["| model | top-1 (%) | " + " | ".join(f"seed {s}" for s in seeds) + " | gain over labels only |",
             "|---|---:|" + "---:|" * len(seeds) + "---:|"]
    best = max(v["mean"] for v in summary["students"].values())
    rows = [(STUDENTS.get(s, s), v, gains.get(s)) for s, v in summary["students"].items()]
    rows += [(f"*teacher: {t}*", v, None) for t, v in summary["teachers"].items()]
    for label, v, gain in rows:
        mean = f"{v['mean']:.1f} ± {v['std']:.1f}"
        if v["mean"] == best and not label.startswith("*"):
            mean = f"**{mean}**"
        gain_cell = f"{gain['mean']:+.1f} ± {gain['std']:.1f}" if gain else ""
        lines.append(f"| {label} | {mean} | " + " | ".join(f"{a:.1f}" for a in v["per_seed"]) + f" | {gain_cell} |")
    return "\n".join(lines)
