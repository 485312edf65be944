"""Command line: ``python -m workbench <command> ...``; each command is a thin wrapper over the library.

    python -m workbench generate --classes imagenet100 --images-per-class 1300 --out data/in100-sd
    python -m workbench generate ... --shard 0/4                      # one of four machines
    torchrun --nproc-per-node 8 -m workbench generate ...             # shard from RANK / WORLD_SIZE
    python -m workbench distill --config runs/03_distill/run.yaml     # the run file the 03 notebook writes
    torchrun --nproc-per-node 8 -m workbench distill --config run.yaml   # DistributedDataParallel, 8 GPUs
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    from .diffusion import SCHEDULERS, TINY_MODEL
    from .generate import GenerateConfig
    from .prompts import STRATEGIES

    defaults = {f.name: f.default for f in fields(GenerateConfig)}
    parser.add_argument("--out", required=True, help="output ImageFolder (<out>/<wnid>/<index>.png + manifests)")
    parser.add_argument("--classes", default="imagenet100",
                        help="imagenet100 (default), imagenet1k, comma-separated wnids, or a .txt file of wnids")
    parser.add_argument("--prompt", help=f"strategy ({', '.join(STRATEGIES)}) or a template such as "
                                         f"'a photo of a {{name}}'; default {defaults['prompt']}")
    parser.add_argument("--images-per-class", help=f"default {defaults['images_per_class']}")
    parser.add_argument("--guidance-scale", help=f"classifier-free guidance; default {defaults['guidance_scale']}")
    parser.add_argument("--steps", help=f"denoising steps; default {defaults['steps']}")
    parser.add_argument("--model", help=f"Hugging Face id in the local cache, a diffusers folder, or {TINY_MODEL!r} "
                                        f"(random weights, offline); default {defaults['model']}")
    parser.add_argument("--scheduler", help=f"{', '.join(SCHEDULERS)}; default {defaults['scheduler']}")
    parser.add_argument("--resolution", help="image side in pixels (multiple of 8); default: the model's own")
    parser.add_argument("--negative-prompt")
    parser.add_argument("--seed", help=f"global seed; image seeds derive from it; default {defaults['seed']}")
    parser.add_argument("--batch-size", help=f"default {defaults['batch_size']}")
    parser.add_argument("--device", help="auto (default: CUDA when present, this rank's GPU under torchrun), cpu, cuda:N")
    parser.add_argument("--dtype", help="auto (default: fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16")
    parser.add_argument("--format", dest="image_format", help="png (default) or jpg")
    parser.add_argument("--shard", help="i/n: generate the i-th of n disjoint parts (default: RANK/WORLD_SIZE, else all)")


def run_generate(args: argparse.Namespace) -> int:
    from .generate import GenerateConfig, Shard, audit, class_counts, generate

    names = {f.name for f in fields(GenerateConfig)}
    params = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = GenerateConfig.from_params(**params)
    shard = Shard.parse(args.shard) if args.shard else Shard.from_env()
    result = generate(cfg, args.out, shard=shard)
    counts = class_counts(args.out)
    report = audit(args.out, decode=False)
    print(f"shard {shard}: {result.generated} images generated, {result.skipped} already there, "
          f"{result.images_per_s:.2f} images/s; folder: {sum(counts.values())} images in {len(counts)} classes, "
          f"{report['records']} manifest records"
          + (f", {len(report['nsfw_flagged'])} flagged by the safety checker" if report["nsfw_flagged"] else ""))
    return 0


def add_distill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="run file (YAML or JSON): DistillConfig fields, n_train, n_test, "
                                                        "ckpt_every, keep_checkpoints, out_dir; the 03 notebook writes "
                                                        "<out_dir>/run.yaml")
    parser.add_argument("--out", help="output folder (default: out_dir of the run file); a rerun resumes the run there")
    parser.add_argument("--overwrite", action="store_true", help="delete the run already in the output folder first")
    parser.add_argument("--log-every", type=int, default=10, help="steps between metric records (default 10)")
    parser.add_argument("--random-teachers", action="store_true",
                        help="teachers with random weights: a smoke test of the machinery, not a real run")


def run_distill(args: argparse.Namespace) -> int:
    from .launch import run_distill as run

    if args.log_every < 1:
        raise ValueError(f"--log-every must be >= 1, got {args.log_every}")
    run(args.config, args.out, random_teachers=args.random_teachers, log_every=args.log_every, overwrite=args.overwrite)
    return 0


COMMANDS = {
    # name: (help, add_arguments, run)
    "generate": ("generate a synthetic ImageNet clone with Stable Diffusion (resumable, shardable)",
                 add_generate_arguments, run_generate),
    "distill": ("distill teachers into a student from a run file (one process, or many under torchrun)",
                add_distill_arguments, run_distill),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except (ValueError, KeyError, FileNotFoundError) as err:  # bad parameters or a missing model: one clear line
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
