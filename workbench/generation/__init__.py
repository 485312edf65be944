"""Stage 1: synthetic ImageNet clones with Stable Diffusion (ImageNet-SD), resumable and sharded.

    cfg = GenerateConfig.from_params(classes="imagenet100", images_per_class=1300, model="tiny-offline")
    generate(cfg, "data/in100-sd", shard=Shard(0, 4))
"""
from .config import GenerateConfig
from .contents import audit, class_counts, contact_sheet, counts_table
from .pipelines import DEFAULT_MODEL, SCHEDULERS, default_resolution, load_pipeline, locate_model
from .prompts import STRATEGIES, example_prompts, prompt_strategy, strategy_table
from .tiny import TINY_MODEL
from .writer import GenerationResult, ImageJob, Shard, batches, generate, plan, read_manifest, regenerate, shard_batches

__all__ = ["DEFAULT_MODEL", "SCHEDULERS", "STRATEGIES", "TINY_MODEL", "audit", "batches", "class_counts",
           "contact_sheet", "counts_table", "default_resolution", "example_prompts", "generate", "GenerateConfig",
           "GenerationResult", "ImageJob", "load_pipeline", "locate_model", "plan", "prompt_strategy", "read_manifest",
           "regenerate", "Shard", "shard_batches", "strategy_table"]
