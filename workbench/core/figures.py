"""Figures as the notebooks show them: matplotlib ``Figure`` objects drawn off-screen (no pyplot state),
displayed as PNG, which JupyterLab, papermill's output and any notebook viewer all show the same way."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from IPython.display import Image, display
from matplotlib.figure import Figure

from .files import atomic_write


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_figure(fig: Figure, path, **savefig_kwargs) -> None:
    """``fig.savefig(path)`` written atomically (``workbench.core.files``), in the format its name says; the run's
    record of its files names it, so an ``overwrite`` deletes it and keeps the user's own figures."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs))


def show(fig: Figure) -> None:
    """Display a figure as a PNG (works in JupyterLab and in papermill output, no pyplot state)."""
    display(Image(data=png(fig), format="png"))


def image_grid(images, titles: list[str] | None = None, ncols: int = 12) -> Figure:
    """(N, 3, H, W) images in [0, 1] (tensor or array) as a grid with optional captions."""
    images = np.asarray(images)
    n = len(images)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(ncols * 0.9, nrows * 1.05), dpi=100)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(np.clip(images[i].transpose(1, 2, 0), 0, 1), interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=6)
    fig.tight_layout()
    return fig


def class_grid(rows: dict[str, list], ncols: int) -> Figure:
    """A contact sheet: one row per label, its HxWx3 uint8 images left to right."""
    nrows = max(1, len(rows))
    fig = Figure(figsize=(1.2 + ncols * 1.0, nrows * 1.05), dpi=100)
    axes = fig.subplots(nrows, ncols + 1, squeeze=False, gridspec_kw={"width_ratios": [1.2] + [1.0] * ncols})
    for ax_row, (label, images) in zip(axes, rows.items()):
        ax_row[0].axis("off")
        ax_row[0].text(1.0, 0.5, label, ha="right", va="center", fontsize=7, transform=ax_row[0].transAxes)
        for j, ax in enumerate(ax_row[1:]):
            ax.axis("off")
            if j < len(images):
                ax.imshow(images[j], interpolation="nearest")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.08)
    return fig
