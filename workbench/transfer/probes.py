"""Transfer: probe any set of models on a suite of tasks; aggregates as in UNIC and t-ReX.

    models = load_models("world_colour,world_shape,student", device, default_student=...)  # teachers, students
    suite = world_suite()                                          # the offline world's transfer tasks
    rows = evaluate(models, suite, load_task_data(suite), device)  # tidy: model, task, top1, protocol, seed
    table = probe_table(rows)                                      # {model: {task: top1}}
    relative_gains(table, teachers=["world_colour", "world_shape"])

**Protocol.** Every task is a train/test pair with labels; each model encodes both once (features cached
under ``$WORKBENCH_CACHE/features``, keyed by model weights and data), then the linear probe of
``workbench.probing`` (weight decay tuned on a held-out 20%, refit on all training data) gives top-1 on the
test split. A few-shot task trains the probe on ``shots`` images per class instead, three draws (seeds
0, 1, 2; weight decay 1e-3, too few images to tune it), one row per draw. A dense task (``shape_seg``, ``ade20k``,
``nyud``) trains a linear head on each model's frozen patch tokens (``workbench.probing.dense``); its row's score is
mIoU, or delta < 1.25 for depth.
"""
from __future__ import annotations

from ..data import Data
from ..probing import DenseProtocol, probe
from .models import TransferModel
from .tasks import TransferTask


def evaluate(models: list[TransferModel], tasks: list[TransferTask], datasets: dict[str, Data], device,
             workers: int | None = None, dense: DenseProtocol | None = None, log=print) -> list[dict]:
    """Tidy rows ``{model, task, top1, protocol, seed, metric, ...}`` for every model and task
    (``workbench.probing.probe``: features cached, probes on ``workers`` threads; ``dense``: the dense probes'
    optimisation), dataset by dataset."""
    rows = []
    for name in dict.fromkeys(t.dataset for t in tasks):
        mine = [t.probe_task for t in tasks if t.dataset == name]
        rows += probe(models, datasets[name], device, mine, workers=workers, log=log, dense=dense)
    return rows
