"""Stage 4: transfer. Probe teachers and students on a suite of tasks; aggregates as in UNIC and t-ReX.

    models = load_models("world_colour,world_shape,runs/03_distill", device)
    suite = world_suite()
    rows = evaluate(models, suite, load_task_data(suite), device)   # tidy rows, features cached
    relative_gains(probe_table(rows), teachers=["world_colour", "world_shape"])
"""
from . import figures
from .aggregates import (
                         aggregate_table,
                         best_teacher,
                         dense_summary,
                         dense_table,
                         log_odds,
                         mean_log_odds,
                         mean_top1,
                         relative_gains,
)
from .config import TransferConfig
from .datasets import load_task_data, world_dataset
from .levels import ConceptLevels, concept_levels
from .models import DEFAULT_STUDENT, TransferModel, load_models, parse_models, run_label
from .probes import evaluate
from .tasks import (
                    NOVEL_SHAPE_WNIDS,
                    WORLD_DATASETS,
                    WORLD_SHAPE_WNIDS,
                    WORLD_TASKS,
                    TransferTask,
                    check_roots,
                    level_tasks,
                    parse_tasks,
                    world_levels,
                    world_suite,
)

__all__ = ["DEFAULT_STUDENT", "NOVEL_SHAPE_WNIDS", "WORLD_DATASETS", "WORLD_SHAPE_WNIDS", "WORLD_TASKS",
           "aggregate_table", "best_teacher", "check_roots", "concept_levels", "ConceptLevels", "dense_summary",
           "dense_table", "evaluate", "figures", "level_tasks",
           "load_models", "load_task_data", "log_odds", "mean_log_odds", "mean_top1", "parse_models", "parse_tasks",
           "relative_gains", "run_label", "TransferConfig", "TransferModel", "TransferTask", "world_dataset",
           "world_levels", "world_suite"]
