"""Stage 1: synthetic ImageNet clones with Stable Diffusion (ImageNet-SD), resumable and sharded; the offline
world's own text-to-image model, what its clones are worth, and ImageNet-SD's question asked of them (06).

    cfg = GenerateConfig.from_params(classes="imagenet100", images_per_class=1300, model="tiny-offline")
    generate(cfg, "data/in100-sd", shard=Shard(0, 4))
    cfg = GenerateConfig.from_params(classes="world", model="world-offline")   # the offline world's clone
"""
from . import study
from .config import GenerateConfig
from .contents import audit, class_counts, contact_sheet, counts_table
from .fidelity import (
                       ImageSet,
                       WorldJudges,
                       clone_report,
                       diversity,
                       read_world_folder,
                       real_world_set,
                       report_tables,
                       sample_world,
)
from .pipelines import DEFAULT_MODEL, SCHEDULERS, default_resolution, load_pipeline, locate_model
from .prompts import (
                       STRATEGIES,
                       WORLD_CLASSES,
                       class_table,
                       example_prompts,
                       prompt_class,
                       prompt_strategy,
                       strategy_table,
)
from .study import CloneStudyConfig
from .tiny import TINY_MODEL
from .world_model import WORLD_MODEL, build_world_pipeline, train_world_model, world_model_path
from .writer import GenerationResult, ImageJob, Shard, batches, generate, plan, read_manifest, regenerate, shard_batches

__all__ = ["DEFAULT_MODEL", "SCHEDULERS", "STRATEGIES", "TINY_MODEL", "WORLD_CLASSES", "WORLD_MODEL", "audit",
           "batches", "build_world_pipeline", "class_counts", "class_table", "clone_report", "CloneStudyConfig",
           "contact_sheet", "counts_table", "default_resolution", "diversity", "example_prompts", "generate",
           "GenerateConfig", "GenerationResult", "ImageJob", "ImageSet", "load_pipeline", "locate_model", "plan",
           "prompt_class", "prompt_strategy", "read_manifest", "read_world_folder", "real_world_set", "regenerate",
           "report_tables", "sample_world", "Shard", "shard_batches", "strategy_table", "study", "train_world_model",
           "world_model_path", "WorldJudges"]
