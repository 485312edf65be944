"""Command line: ``python -m workbench <command> ...``; each command is a thin wrapper over the library.

    python -m workbench generate --classes imagenet100 --images-per-class 1300 --out data/in100-sd
    python -m workbench generate ... --shard 0/4                      # one of four machines
    torchrun --nproc-per-node 8 -m workbench generate ...             # shard from RANK / WORLD_SIZE
    python -m workbench distill --config runs/03_distill/run.yaml     # the run file the 03 notebook writes
    torchrun --nproc-per-node 8 -m workbench distill --config run.yaml   # DistributedDataParallel, 8 GPUs
    python -m workbench sweep distill --config run.yaml --grid ladder=last,all --seeds 0,1,2 --out studies/ladder

Exit codes: 0 done; 75 stopped by SIGTERM or SIGUSR1 after a checkpoint (``workbench.core.preemption``: rerun
to resume); 2 bad parameters, a busy out_dir or a missing model; 1 a disk that refused a write, or a failure.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from .core.errors import ParameterError, WorkbenchError
from .core.files import DiskWriteError
from .core.preemption import handle_preemption
from .distillation import run_distill
from .generation import GenerateConfig, Shard, audit, class_counts, generate
from .study import sweep
from .study.sweep import LAUNCHERS


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per ``GenerateConfig`` field (``--images-per-class``), its help and default from the field's
    declaration; the older names of renamed fields are still taken (``--batch-size``), with a warning."""
    parser.add_argument("--out", required=True, help="output ImageFolder (<out>/<wnid>/<index>.png + manifests)")
    helps = GenerateConfig.parameter_help()
    for f in dataclasses.fields(GenerateConfig):
        default = "world" if f.name == "classes" else "auto" if f.default is None else f.default
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, help=f"{helps[f.name]} (default {default})")
    for old in GenerateConfig.renamed:
        parser.add_argument(f"--{old.replace('_', '-')}", dest=old, help=argparse.SUPPRESS)
    parser.add_argument("--format", dest="image_format", help=argparse.SUPPRESS)  # the older name of --image-format
    parser.add_argument("--shard",
                        help="i/n: generate the i-th of n disjoint parts (default: RANK/WORLD_SIZE, else all)")


def run_generate(args: argparse.Namespace) -> int:
    names = {f.name for f in dataclasses.fields(GenerateConfig)} | set(GenerateConfig.renamed)
    cfg = GenerateConfig.from_params(**{k: v for k, v in vars(args).items() if k in names and v is not None})
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
    parser.add_argument("--config", required=True, help="run file (YAML or JSON) of DistillConfig fields and out_dir; "
                                                        "the 03 notebook writes <out_dir>/run.yaml")
    parser.add_argument("--out", help="output folder (default: out_dir of the run file); a rerun resumes the run there")
    parser.add_argument("--overwrite", action="store_true", help="delete the run already in the output folder first")
    parser.add_argument("--log-every", type=int, default=10, help="steps between metric records (default 10)")
    parser.add_argument("--random-teachers", action="store_true",
                        help="teachers with random weights: a smoke test of the machinery, not a real run")


def run_distill_command(args: argparse.Namespace) -> int:
    if args.log_every < 1:
        raise ParameterError(f"--log-every must be >= 1, got {args.log_every}")
    run_distill(args.config, args.out, random_teachers=args.random_teachers, log_every=args.log_every,
                overwrite=args.overwrite)
    return 0


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="what each point runs: distill (the command line's stage) or a notebook "
                                       "(03_distill, 05_task_distill, ..., or its path, through papermill)")
    parser.add_argument("--out", required=True, help="the sweep's folder: one out_dir per point, sweep.json, status/")
    parser.add_argument("--config", help="base parameters (YAML; 03's run.yaml works), default: the target's own")
    parser.add_argument("--grid", nargs="*", default=[], metavar="NAME=V1,V2",
                        help="the settings to vary, each with its values (a YAML list for values with commas)")
    parser.add_argument("--variants", metavar="FILE",
                        help="instead of --grid: a YAML file of named variants, name: {parameter: value, ...}")
    parser.add_argument("--seeds", default="0", help="every point runs once per seed (default 0)")
    parser.add_argument("--extend", action="store_true", help="add new grid values or seeds to the sweep in --out")
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS,
                        help="local: this machine (submitit's local executor); slurm: one array job")
    parser.add_argument("--max-parallel", type=int, default=1, help="points running at a time (default 1)")
    parser.add_argument("--time-min", type=int, default=1440, help="each point's time limit in minutes; near it the "
                                                                   "point checkpoints and is requeued (default 1440)")
    parser.add_argument("--no-wait", action="store_true", help="return once submitted (SLURM's default)")
    slurm = parser.add_argument_group("slurm")
    slurm.add_argument("--partition")
    slurm.add_argument("--gpus-per-node", type=int)
    slurm.add_argument("--cpus-per-task", type=int)
    slurm.add_argument("--mem-gb", type=float)
    slurm.add_argument("--slurm", nargs="*", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. account=abc constraint=a100 qos=high")


def run_sweep_command(args: argparse.Namespace) -> int:
    slurm = {k: v for k, v in (("partition", args.partition), ("gpus_per_node", args.gpus_per_node),
                               ("cpus_per_task", args.cpus_per_task), ("mem", args.mem_gb and f"{args.mem_gb}G"))
             if v is not None}
    for item in args.slurm:
        key, eq, value = item.partition("=")
        if not eq:
            raise ParameterError(f"--slurm {item!r} is not KEY=VALUE (e.g. --slurm account=abc)")
        slurm[key.replace("-", "_")] = value
    if slurm and args.launcher != "slurm":
        raise ParameterError(f"--partition, --gpus-per-node and the other SLURM options need --launcher slurm "
                             f"(given: {sorted(slurm)})")
    runs = sweep(args.target, args.out, config=args.config, grid=args.grid, seeds=args.seeds, variants=args.variants,
                 extend=args.extend, launcher=args.launcher, max_parallel=args.max_parallel, time_min=args.time_min,
                 wait=False if args.no_wait else None, slurm=slurm)
    return 1 if (runs["state"] == "failed").any() else 0


COMMANDS = {
    # name: (help, add_arguments, run)
    "generate": ("generate a synthetic ImageNet clone with Stable Diffusion (resumable, shardable)",
                 add_generate_arguments, run_generate),
    "distill": ("distill teachers into a student from a run file (one process, or many under torchrun)",
                add_distill_arguments, run_distill_command),
    "sweep": ("run a stage or notebook over a grid of settings and seeds (resumable; local or SLURM, by submitit)",
              add_sweep_arguments, run_sweep_command),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        with handle_preemption(process_exits=True):  # a stopped run ends this process: no signal cuts its exit short
            return COMMANDS[args.command][2](args)
    except DiskWriteError as err:  # a full or read-only disk: the path and the free space, in one line
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except (WorkbenchError, ValueError, KeyError, FileNotFoundError) as err:  # bad input: one line, naming it
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
