"""Live training plots for notebooks.

Each refresh draws a matplotlib figure off-screen, renders it to PNG and updates one
``display(..., display_id=True)`` handle: the picture moves in JupyterLab, and a papermill-executed
notebook keeps exactly one image, the last one. Outside IPython it stays silent.

A run in other processes (``torchrun ... -m workbench distill``) appends its metrics to
``<out_dir>/metrics.jsonl`` (``MetricsLog``); ``follow`` reads the new lines as they come, so the
notebook that launched the run plots it live all the same.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from IPython import get_ipython
from IPython.display import Image, display
from matplotlib.figure import Figure

from .figures import png, save_figure
from .files import append_jsonl, save_jsonl


class LivePlot:
    """Call with metric records (dicts with ``step`` and ``loss/<teacher>``, ``alpha/<teacher>`` keys); ``panels``
    maps a key prefix to a panel title, each key of that prefix a curve."""

    def __init__(self, panels: dict[str, str] | None = None, every_s: float = 2.0, title: str = ""):
        self.panels = panels or {"loss/": "loss per teacher", "alpha/": "alpha per teacher (share of the loss)",
                                 "val_loss/": "validation loss per teacher (every epoch)"}
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
            for k in keys:  # each curve through the records that have it (validation: one per epoch)
                xs, ys = zip(*[(x, r[k]) for x, r in zip(steps, self.records) if k in r])
                ax.plot(xs, ys, label=k[len(prefix):], marker="o" if len(xs) < 30 else None, markersize=3)
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
        if get_ipython() is None or not self.records:  # outside a notebook: nothing to show
            return
        image = Image(data=png(self.figure()), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    def save(self, path) -> None:
        save_figure(self.figure(), path)


class MetricsLog:
    """Append-only JSONL of metric records, one line per record, flushed at once (``tail -f`` works).

    Opening it rewrites the file with ``history``, the records the run keeps: none for a fresh run, those
    of its checkpoint for a resumed one (which redoes the steps after it)."""

    def __init__(self, path, history: list[dict] = ()):
        self.path = Path(path)
        if self.path.is_file() or history:
            save_jsonl(list(history), self.path)

    def append(self, record: dict) -> None:
        append_jsonl(self.path, [record])


def follow(path, running: Callable[[], bool], poll_s: float = 1.0) -> Iterator[dict]:
    """Yield the records of a JSONL file as they are appended, until ``running()`` is false (then the rest).

    A file that is replaced or shortened meanwhile is read again from its start."""
    path, offset, partial = Path(path), 0, b""
    while True:
        alive = running()
        if path.is_file():
            with open(path, "rb") as f:
                if f.seek(0, 2) < offset:  # rewritten shorter: start over
                    offset, partial = 0, b""
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()  # an unfinished last line waits for its end
            for line in lines:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        continue
        if not alive:
            return
        time.sleep(poll_s)
