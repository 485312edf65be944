"""Live training plots for notebooks.

Each refresh draws a matplotlib figure off-screen, renders it to PNG and updates one
``display(..., display_id=True)`` handle: the picture moves in JupyterLab, and a papermill-executed
notebook keeps exactly one image, the last one. Outside IPython it stays silent.
"""
from __future__ import annotations

import time

from matplotlib.figure import Figure

from .report import png


def _display():
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return None, None
    if get_ipython() is None:
        return None, None
    return display, Image


class LivePlot:
    """Call with metric records (dicts with ``step`` and ``loss/<teacher>``, ``alpha/<teacher>`` keys)."""

    def __init__(self, panels: dict[str, str] | None = None, every_s: float = 2.0, title: str = ""):
        self.panels = panels or {"loss/": "loss per teacher", "alpha/": "alpha per teacher (share of the loss)"}
        self.every_s, self.title = every_s, title
        self.records: list[dict] = []
        self._last = 0.0
        self._handle = None

    def __call__(self, record: dict) -> None:
        self.records.append(record)
        if time.time() - self._last >= self.every_s:
            self.refresh()

    def figure(self) -> Figure:
        fig = Figure(figsize=(5 * len(self.panels), 3.4), dpi=100)
        axes = fig.subplots(1, len(self.panels), squeeze=False)[0]
        steps = [r["epoch"] if "epoch" in r else r["step"] for r in self.records]
        for ax, (prefix, label) in zip(axes, self.panels.items()):
            keys = sorted({k for r in self.records for k in r if k.startswith(prefix)})
            for k in keys:
                ax.plot(steps, [r.get(k, float("nan")) for r in self.records], label=k[len(prefix):])
            ax.set_title(label)
            ax.set_xlabel("epoch" if self.records and "epoch" in self.records[0] else "step")
            ax.grid(alpha=0.3)
            if keys:
                ax.legend(fontsize=8)
        if self.title:
            fig.suptitle(self.title)
        fig.tight_layout()
        return fig

    def refresh(self) -> None:
        self._last = time.time()
        display, Image = _display()
        if display is None or not self.records:
            return
        image = Image(data=png(self.figure()), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    def save(self, path) -> None:
        self.figure().savefig(path)
