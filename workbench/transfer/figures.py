"""Figures of the transfer notebook: radar of relative gains (static and interactive), per-task bars,
accuracy per concept-generalization level, and PCA pictures of patch features.

Every figure is a matplotlib ``Figure`` built off-screen (no pyplot state), shown as a PNG by
``workbench.core.figures.show``. The interactive radar is a plotly figure displayed with ``show_interactive``:
one output that carries both the plotly JSON (JupyterLab's plotly renderer, bundled with the ``plotly``
package, draws it interactively) and a PNG of the same chart drawn by matplotlib (what papermill, nbval,
GitHub and any viewer without the renderer show). No kaleido, no browser, no network.
"""
from __future__ import annotations

import base64
import json

import numpy as np
import torch
from IPython import display as ipython_display
from matplotlib.figure import Figure

from ..core.figures import png

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


def radar_figure(gains: dict[str, dict[str, float]], roles: dict[str, str],
                 title: str = "Relative gain over the best teacher (%)") -> Figure:
    """UNIC's radar: one axis per task, one closed line per model; the black ring is the best teacher (0).

    The radial scale is signed-logarithmic (``signed_log``) so that a student's +1% over its best
    teacher and a teacher's -80% on the task it is blind to fit on one chart. Students' gains are printed.
    """
    models = list(gains)
    tasks = list(gains[models[0]])
    colours = _colours(models)
    angles = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False)
    low, high, ticks = _radar_scale(gains)
    fig = Figure(figsize=(7.4, 5.6), dpi=100)
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_offset(np.pi / 2)
    ax.set_theta_direction(-1)
    ring = np.linspace(0, 2 * np.pi, 200)
    ax.plot(ring, np.zeros_like(ring), color="black", linewidth=1.6, zorder=1)
    for m in models:
        values = np.array([gains[m][t] for t in tasks], dtype=float)
        r = np.where(np.isfinite(values), signed_log(np.nan_to_num(values)), low)
        student = roles.get(m) == "student"
        style = STUDENT_STYLE if student else TEACHER_STYLE
        ax.plot(np.r_[angles, angles[:1]], np.r_[r, r[:1]], color=colours[m], label=m, marker="o", markersize=3,
                **style)
        if student:
            ax.fill(np.r_[angles, angles[:1]], np.r_[r, r[:1]], color=colours[m], alpha=0.08)
            for a, rv, v in zip(angles, r, values):
                ax.annotate(f"{v:+.1f}%", (a, rv), xytext=(5, 5), textcoords="offset points", fontsize=7,
                            color=colours[m], fontweight="bold", zorder=5,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    ax.set_ylim(low, high)
    ax.set_yticks([float(signed_log(t)) for t in ticks], [_tick_label(t) for t in ticks], fontsize=7)
    ax.set_xticks(angles, [t.replace("_", " ") for t in tasks], fontsize=8)
    ax.tick_params(axis="x", pad=10)
    ax.set_title(title + "\n(signed log scale; black ring: best teacher)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.1, 1.05))
    fig.tight_layout()
    return fig


def radar_plotly(gains: dict[str, dict[str, float]], roles: dict[str, str],
                 title: str = "Relative gain over the best teacher (%)"):
    """The same radar as a plotly figure: hover shows each model's exact gain per task."""
    import plotly.graph_objects as go

    models = list(gains)
    tasks = [t.replace("_", " ") for t in gains[models[0]]]
    keys = list(gains[models[0]])
    colours = _colours(models)
    low, high, ticks = _radar_scale(gains)
    fig = go.Figure()
    fig.add_trace(go.Scatterpolar(r=[0.0] * (len(tasks) + 1), theta=tasks + tasks[:1], mode="lines",
                                  line={"color": "black", "width": 2}, name="best teacher", hoverinfo="skip"))
    for m in models:
        true = [float(gains[m][k]) for k in keys]
        r = [float(signed_log(v)) if np.isfinite(v) else low for v in true]
        student = roles.get(m) == "student"
        fig.add_trace(go.Scatterpolar(
            r=r + r[:1], theta=tasks + tasks[:1], name=m, mode="lines+markers",
            customdata=true + true[:1], hovertemplate="%{theta}: %{customdata:+.2f}%<extra>" + m + "</extra>",
            line={"color": colours[m], "width": 3 if student else 1.5, "dash": "solid" if student else "dash"},
            fill="toself" if student else None, opacity=1.0 if student else 0.8))
    fig.update_layout(title=title + " (signed log scale)", width=760, height=560, legend={"x": 1.08},
                      polar={"radialaxis": {"range": [low, high], "tickvals": [float(signed_log(t)) for t in ticks],
                                            "ticktext": [_tick_label(t) for t in ticks]}})
    return fig


def show_interactive(plotly_fig, static: Figure) -> None:
    """Display a plotly figure with a static PNG of ``static`` in the same output (see the module doc)."""
    bundle = {
        "application/vnd.plotly.v1+json": {**json.loads(plotly_fig.to_json()), "config": {"displaylogo": False}},
        "image/png": base64.b64encode(png(static)).decode("ascii"),
        "text/plain": f"<interactive plotly figure: {plotly_fig.layout.title.text}>",
    }
    ipython_display.display(bundle, raw=True)


def task_bars_figure(table: dict[str, dict[str, float]], roles: dict[str, str],
                     title: str = "Linear-probe top-1 (%) per task") -> Figure:
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
    """{model name: (B, H, W, 3) PCA picture} for models with a ``patches(images) -> (tokens, grid)`` method."""
    out = {}
    for m in models:
        with torch.inference_mode():
            tokens, grid = m.patches(images.to(device))
        out[m.name] = patch_pca_rgb(tokens.float().cpu(), tuple(grid))
    return out
