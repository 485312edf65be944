"""Stage 3: distillation. Several teachers into one student (UNIC), and task-specific distillation (``task``).

    cfg = DistillConfig.from_params(teachers="world_colour,world_shape", epochs=8)
    run = distill(cfg, data, teachers, out_dir="runs/03_distill")
    student = load_student(run.student_folder)
"""
from . import task
from .checkpoint import RunOutput, model_state, save_checkpoint
from .config import RUN_FILE, DistillConfig, as_ladder, check_batch_size, load_run_config, save_run_config
from .default_run import DEFAULT_03_OUT, default_key, default_student
from .launch import LaunchedRun, distill_or_launch, launch_distill, run_distill, torchrun_command
from .losses import distillation_loss, feature_loss, teacher_coefficients, teacher_keep, teacher_losses
from .task import TaskDistillConfig, task_distill
from .train import DistillRun, check_global_batch, distill, final_metrics, run_summary
from .unic import UNIC, distill_forward, teacher_feature_shapes

__all__ = ["DEFAULT_03_OUT", "RUN_FILE", "UNIC", "as_ladder", "check_batch_size", "check_global_batch", "default_key",
           "default_student", "distill", "distill_or_launch", "distill_forward", "distillation_loss", "DistillConfig",
           "DistillRun", "feature_loss", "final_metrics", "launch_distill", "LaunchedRun", "load_run_config",
           "model_state", "run_distill", "run_summary", "RunOutput", "save_checkpoint", "save_run_config", "task",
           "task_distill",
           "TaskDistillConfig", "teacher_coefficients", "teacher_feature_shapes", "teacher_keep", "teacher_losses",
           "torchrun_command"]
