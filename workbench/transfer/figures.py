"""Figures of the transfer notebook: radar of relative gains (static and interactive), per-task bars,
accuracy per concept-generalization level, and PCA pictures of patch features.

Every figure is a matplotlib ``Figure`` built off-screen (no pyplot state), shown as a PNG by
``workbench.core.figures.show``. The radar is one chart (``RadarSpec``) drawn by matplotlib and by plotly alike;
``show_interactive`` displays one output that carries the plotly JSON (JupyterLab's plotly renderer, bundled with the
``plotly`` package, draws it interactively) and an SVG of the matplotlib drawing (what viewers without the renderer
show). No kaleido, no browser, no network.
"""
from __future__ import annotations

import io
import itertools
import json
from dataclasses import dataclass

import numpy as np
import torch
from IPython import display as ipython_display
from matplotlib.figure import Figure

from ..probing.report import dense_figure
from ..probing.runner import METRICS

TEACHER_STYLE = {"linestyle": "--", "linewidth": 1.2, "alpha": 0.8}
STUDENT_STYLE = {"linestyle": "-", "linewidth": 2.2}


def _colours(models: list[str]) -> dict[str, str]:
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    return {m: palette[i % len(palette)] for i, m in enumerate(models)}


def signed_log(gain):
    """The radar's radial scale: sign(g) log10(1 + |g|). Gains of +1% and +300% both stay readable."""
    g = np.asarray(gain, dtype=float)
    return np.sign(g) * np.log10(1 + np.abs(g))


_RADAR_TICKS = (-100, -10, 0, 10, 100, 1000, 10000)


def _radar_scale(gains: dict[str, dict[str, float]]) -> tuple[float, float, list[float]]:
    values = [v for row in gains.values() for v in row.values() if np.isfinite(v)] + [0.0]
    low, high = float(signed_log(min(values))), float(signed_log(max(values)))
    pad = 0.15 * max(high - low, 0.5)
    low, high = low - pad, high + pad
    ticks = [t for t in _RADAR_TICKS if low <= signed_log(t) <= high]
    return low, high, ticks


def _tick_label(t: float) -> str:
    return "0" if t == 0 else f"{t:+g}%"


@dataclass
class RadarSpec:
    """One radar, drawn alike by matplotlib (``radar_figure``) and plotly (``radar_plotly``): the same axes in the
    same order (the first at the top, then clockwise), radial scale and ticks, lines, fills, value labels (the
    students' gains), legend entries (the best teacher's ring, then each model) and title."""

    tasks: list[str]  # axis labels
    values: dict[str, list[float]]  # model -> gain per task (%)
    radii: dict[str, list[float]]  # model -> signed-log radius per task (a missing value at the centre)
    students: list[str]
    colours: dict[str, str]
    low: float
    high: float
    ticks: list[float]
    title: str

    @property
    def angles_deg(self) -> list[float]:
        """Each axis's angle clockwise from the top, in degrees."""
        return [360.0 * k / len(self.tasks) for k in range(len(self.tasks))]

    def labels(self, model: str) -> list[str]:
        """The value printed at each point of a model's line (students only)."""
        return [f"{v:+.1f}%" for v in self.values[model]] if model in self.students else []


RING_LABEL = "best teacher (0%)"
RADAR_SIZE = (740, 560)  # pixels, both renderers


def radar_spec(gains: dict[str, dict[str, float]], roles: dict[str, str],
               title: str = "Relative gain over the best teacher (%)") -> RadarSpec:
    models = list(gains)
    keys = list(gains[models[0]])
    low, high, ticks = _radar_scale(gains)
    values = {m: [float(gains[m][k]) for k in keys] for m in models}
    radii = {m: [float(signed_log(v)) if np.isfinite(v) else low for v in vs] for m, vs in values.items()}
    return RadarSpec([k.replace("_", " ") for k in keys], values, radii,
                     [m for m in models if roles.get(m) == "student"], _colours(models), low, high, ticks,
                     f"{title} (signed log scale)")


def radar_figure(gains: dict[str, dict[str, float]], roles: dict[str, str],
                 title: str = "Relative gain over the best teacher (%)") -> Figure:
    """UNIC's radar: one axis per task, one closed line per model; the black ring is the best teacher (0).

    The radial scale is signed-logarithmic (``signed_log``) so that a student's +1% over its best
    teacher and a teacher's -80% on the task it is blind to fit on one chart. Students' gains are printed.
    """
    spec = radar_spec(gains, roles, title)
    angles = np.deg2rad(spec.angles_deg)
    fig = Figure(figsize=(RADAR_SIZE[0] / 100, RADAR_SIZE[1] / 100), dpi=100)
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_offset(np.pi / 2)  # the first axis at the top, the others clockwise (as plotly's rotation=90)
    ax.set_theta_direction(-1)
    ring = np.linspace(0, 2 * np.pi, 200)
    ax.plot(ring, np.zeros_like(ring), color="black", linewidth=1.6, zorder=1, label=RING_LABEL)
    for m, r in spec.radii.items():
        student = m in spec.students
        style = STUDENT_STYLE if student else TEACHER_STYLE
        ax.plot(np.r_[angles, angles[:1]], np.r_[r, r[:1]], color=spec.colours[m], label=m, marker="o", markersize=3,
                **style)
        if student:
            ax.fill(np.r_[angles, angles[:1]], np.r_[r, r[:1]], color=spec.colours[m], alpha=0.08)
        for a, rv, text in zip(angles, r, spec.labels(m)):
            ax.annotate(text, (a, rv), xytext=(5, 5), textcoords="offset points", fontsize=7,
                        color=spec.colours[m], fontweight="bold", zorder=5,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    ax.set_ylim(spec.low, spec.high)
    ax.set_yticks([float(signed_log(t)) for t in spec.ticks], [_tick_label(t) for t in spec.ticks], fontsize=7)
    ax.set_xticks(angles, spec.tasks, fontsize=8)
    ax.tick_params(axis="x", pad=10)
    ax.set_title(spec.title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.1, 1.05))
    fig.tight_layout()
    return fig


def radar_plotly(gains: dict[str, dict[str, float]], roles: dict[str, str],
                 title: str = "Relative gain over the best teacher (%)"):
    """The same radar as a plotly figure (``RadarSpec``): hover shows each model's exact gain per task."""
    import plotly.graph_objects as go

    spec = radar_spec(gains, roles, title)
    theta = spec.tasks + spec.tasks[:1]
    fig = go.Figure()
    fig.add_trace(go.Scatterpolar(r=[0.0] * len(theta), theta=theta, mode="lines", line={"color": "black", "width": 2},
                                  name=RING_LABEL, hoverinfo="skip"))
    for m, r in spec.radii.items():
        student = m in spec.students
        colour = spec.colours[m]
        fig.add_trace(go.Scatterpolar(
            r=r + r[:1], theta=theta, name=m, mode="lines+markers+text" if student else "lines+markers",
            text=spec.labels(m) + spec.labels(m)[:1], textposition="top right",
            textfont={"color": colour, "size": 10}, customdata=spec.values[m] + spec.values[m][:1],
            hovertemplate="%{theta}: %{customdata:+.2f}%<extra>" + m + "</extra>", marker={"size": 5},
            line={"color": colour, "width": 2.2 if student else 1.2, "dash": "solid" if student else "dash"},
            fill="toself" if student else None, fillcolor=_rgba(colour, 0.08) if student else None,
            opacity=1.0 if student else 0.8))
    fig.update_layout(
        title={"text": spec.title, "font": {"size": 14}}, width=RADAR_SIZE[0], height=RADAR_SIZE[1],
        legend={"x": 1.08, "y": 1.0}, showlegend=True,
        polar={"angularaxis": {"rotation": 90, "direction": "clockwise"},
               "radialaxis": {"range": [spec.low, spec.high], "tickvals": [float(signed_log(t)) for t in spec.ticks],
                              "ticktext": [_tick_label(t) for t in spec.ticks]}})
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def show_interactive(plotly_fig, static: Figure) -> None:
    """Display a plotly figure, with ``static`` (the same chart by matplotlib) as SVG for viewers without plotly.

    The output carries no ``image/png``: JupyterLab's plotly renderer shows an output's PNG, when it has one, until
    the mouse enters it, then draws the interactive chart and writes its own PNG snapshot into the output, so what
    a saved notebook held would depend on where the mouse went. Without one it draws the chart at once and stores
    its snapshot then, hovered or not. Viewers without that renderer (GitHub, nbviewer, executed copies) show the
    SVG of the same chart."""
    buf = io.StringIO()
    static.savefig(buf, format="svg")
    bundle = {
        "application/vnd.plotly.v1+json": {**json.loads(plotly_fig.to_json()), "config": {"displaylogo": False}},
        "image/svg+xml": buf.getvalue(),
        "text/plain": f"<interactive plotly figure: {plotly_fig.layout.title.text}>",
    }
    ipython_display.display(bundle, raw=True)


def task_bars_figure(table: dict[str, dict[str, float]], roles: dict[str, str],
                     title: str = "Score per task (%): linear-probe top-1, mIoU of a dense task") -> Figure:
    """Grouped bars per task (teachers hatched), the best teacher's level marked by a black tick."""
    models = list(table)
    tasks = list(table[models[0]])
    colours = _colours(models)
    teachers = [m for m in models if roles.get(m) == "teacher"]
    fig = Figure(figsize=(max(7.0, 1.25 * len(tasks) + 3.0), 3.8), dpi=100)
    ax = fig.subplots()
    width = 0.8 / len(models)
    x = np.arange(len(tasks))
    for i, m in enumerate(models):
        teacher = roles.get(m) == "teacher"
        ax.bar(x + (i - (len(models) - 1) / 2) * width, [table[m][t] for t in tasks], width, label=m,
               color=colours[m], alpha=0.75 if teacher else 1.0, hatch="//" if teacher else None,
               edgecolor="white" if teacher else None)
    if teachers:
        best = [max(table[t][task] for t in teachers) for task in tasks]
        ax.hlines(best, x - 0.45, x + 0.45, color="black", linewidth=1.5, label="best teacher")
    ax.set_xticks(x, [t.replace("_", "\n") for t in tasks], fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def levels_figure(table: dict[str, dict[str, float]], roles: dict[str, str], mean_similarity: list[float],
                  level_names: list[str] | None = None, chance: float | None = None,
                  title: str = "Concept generalization: top-1 per level") -> Figure:
    """Top-1 per CoG level (L1 closest to the seen concepts), one line per model."""
    models = list(table)
    levels = list(table[models[0]])
    colours = _colours(models)
    fig = Figure(figsize=(8.4, 4.2), dpi=100)
    ax = fig.subplots()
    x = np.arange(len(levels))
    for m in models:
        style = STUDENT_STYLE if roles.get(m) == "student" else TEACHER_STYLE
        ax.plot(x, [table[m][lv] for lv in levels], marker="o", color=colours[m], label=m, **style)
    if chance is not None:
        ax.axhline(chance, color="grey", linewidth=1, linestyle=":", label="chance")
    labels = [f"{lv}\nsim {s:.2f}" for lv, s in zip(levels, mean_similarity)]
    if level_names:
        labels = [f"{lab}\n" + "\n".join(names.split(", ")) for lab, names in zip(labels, level_names)]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 105)
    ax.set_xlabel("level (mean Lin similarity to the seen concepts)", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- PCA of patch features

def patch_pca_rgb(patches: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """(B, N, D) patch tokens -> (B, H, W, 3) in [0, 1]: the first three principal components as RGB.

    The components are fitted on the patches of all B images together, so a colour means the same
    thing in every image of one model. Each component is stretched between its 1st and 99th percentile;
    signs are fixed (largest loading positive) so reruns give the same colours.
    """
    b, n, d = patches.shape
    if grid[0] * grid[1] != n:
        raise ValueError(f"{n} patch tokens do not fill a {grid[0]}x{grid[1]} grid")
    x = patches.reshape(b * n, d).double()
    x = x - x.mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    comps = vh[:3]
    comps = comps * torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    proj = (x @ comps.t()).numpy()
    if proj.shape[1] < 3:  # fewer than 3 feature dimensions: pad with mid-grey
        proj = np.concatenate([proj, np.zeros((len(proj), 3 - proj.shape[1]))], axis=1)
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
    return rgb.reshape(b, grid[0], grid[1], 3)


def pca_figure(images: torch.Tensor, pictures: dict[str, np.ndarray], titles: dict[str, str] | None = None) -> Figure:
    """One row per image: the image, then each model's patch-feature PCA (upsampled, nearest)."""
    images = images.detach().cpu().numpy()
    cols = 1 + len(pictures)
    fig = Figure(figsize=(1.55 * cols, 1.5 * len(images) + 0.4), dpi=100)
    axes = fig.subplots(len(images), cols, squeeze=False)
    for i, row in enumerate(axes):
        row[0].imshow(np.clip(images[i].transpose(1, 2, 0), 0, 1), interpolation="nearest")
        for ax, rgb in zip(row[1:], pictures.values()):
            ax.imshow(rgb[i], interpolation="nearest")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("image", fontsize=8)
    for ax, name in zip(axes[0][1:], pictures):
        ax.set_title((titles or {}).get(name, name), fontsize=8)
    fig.tight_layout()
    return fig


@torch.no_grad()
def patch_pictures(models, images: torch.Tensor, device) -> dict[str, np.ndarray]:
    """{model name: (B, H, W, 3) PCA picture} of models whose ``features(images)`` give patch tokens on a grid."""
    out = {}
    for m in models:
        with torch.inference_mode():
            f = m.features(images.to(device))
        out[m.name] = patch_pca_rgb(f.patch.float().cpu(), tuple(f.grid))
    return out


def dense_maps_figure(task, rows: list[dict], data, examples: int | None = None) -> Figure:
    """A dense task's test images: the image, its ground truth and each model's predicted map, side by side (the
    maps the probe kept, ``examples`` in its rows)."""
    preds = {r["model"]: r["examples"] for r in rows if r["task"] == task.name and r.get("examples") is not None}
    n = min(len(p) for p in preds.values())
    n = n if examples is None else min(n, examples)
    decoded = (data.test[i] for i in range(len(data.test)))  # the first n readable ones, as the probe saw them
    items = list(itertools.islice(((x, y[task.label]) for x, y in decoded if x is not None), n))
    images = torch.stack([x for x, _ in items]).numpy()
    truth = torch.stack([y for _, y in items]).numpy()
    classes = data.tasks[task.label] if task.method == "segmentation" else None
    metric = METRICS[task.method]
    scores = {r["model"]: r["top1"] for r in rows if r["task"] == task.name}
    named = {f"{m}\n{metric} {scores[m]:.1f}": p[:n].numpy() for m, p in preds.items()}
    return dense_figure(images, truth, named, classes, title=f"{task.name}: {task.description}")
