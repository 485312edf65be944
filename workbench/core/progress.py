"""Progress bars on long work that stay quiet in logs.

    for batch in progress(loader, desc="features of dino_vitb16 on in1k/train"):
        ...

``tqdm.auto`` picks the bar: a widget in JupyterLab (and in a notebook papermill runs, where the saved output keeps
one line per bar), a text bar on a terminal. Anywhere else (a log file, a headless run's captured stderr) a text
bar redraws at most once a minute, so a long run adds a line a minute to the log, not one per step.
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm
from tqdm.notebook import tqdm as notebook_tqdm

LOG_INTERVAL_S = 60.0  # seconds between two redraws of a text bar whose output is not a terminal


def progress(iterable=None, total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False):
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one of ``total`` steps: call ``update``)."""
    widget = issubclass(tqdm, notebook_tqdm)
    terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
    interval = 0.5 if widget else 0.1 if terminal else LOG_INTERVAL_S
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, mininterval=interval,
                maxinterval=max(interval, 10.0), dynamic_ncols=True)
