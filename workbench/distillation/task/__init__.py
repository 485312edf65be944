"""Task-specific distillation: probe the teachers on one task, distill the best probed one into a small student.

    cfg = TaskDistillConfig.from_params(task="shape", labels_per_class=10)
    run = task_distill(cfg, data, teachers, out_dir="runs/05_task_distill")
    run.summary()["students"]["probed"]["mean"]
"""
from ...data.labelled import Labelled, augment
from .config import EXTRA_SOURCES, STUDENTS, TaskDistillConfig
from .data import eval_batches, extra_images, labelled_subset
from .figures import TaskLivePlot, results_figure, student_colour, task_table
from .kd import TaskObjective, kd_loss, mix_images, task_distillation_loss
from .teachers import PROBE_WEIGHT_DECAYS, TeacherClassifier, finetune_teacher, probe_teacher
from .train import (
           StudentJob,
           TaskRun,
           TaskStudent,
           make_student,
           run_student,
           save_task_student,
           task_distill,
           top1,
)

__all__ = ["EXTRA_SOURCES", "PROBE_WEIGHT_DECAYS", "STUDENTS", "augment", "eval_batches", "extra_images",
           "finetune_teacher", "kd_loss", "Labelled", "labelled_subset", "make_student", "mix_images", "probe_teacher",
           "results_figure", "run_student", "save_task_student", "student_colour", "StudentJob", "task_distill",
           "task_distillation_loss", "task_table", "TaskDistillConfig", "TaskLivePlot", "TaskObjective", "TaskRun",
           "TaskStudent", "TeacherClassifier", "top1"]
