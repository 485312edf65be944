"""A sweep: one stage or notebook run at every point of a grid of settings, for every seed, launched by submitit.

    python -m workbench sweep distill --config base.yaml --grid teacher_drop_prob=0,0.5 ladder=last,all \\
        --seeds 0,1,2 --out studies/unic-ablation
    python -m workbench sweep 03_distill ... --launcher slurm --partition gpu --gpus-per-node 1 --max-parallel 8
    wb.sweep("distill", out="studies/unic-ablation", config="base.yaml", grid={...}, seeds=[0, 1, 2])

Each point runs in its own out_dir, named by its settings (``<out>/ladder=last,teacher_drop_prob=0,seed=1``),
through the entry point a user would type: a stage through the command line (``python -m workbench distill
--config <out>/configs/<point>.yaml --out <out>/<point>``), a notebook through papermill (its parameters in
``<out>/configs/<point>.yaml``, the executed notebook in ``<out>/notebooks/<point>.ipynb``). submitit runs them:
its local executor (a process per point, ``max_parallel`` at a time) or SLURM (one array job, ``max_parallel``
tasks at a time; a task warned of its time limit or preempted stops its point at a step boundary with a
checkpoint and is requeued, and the requeued task resumes it).

A sweep folder holds:

    sweep.json            the study: its target, base configuration, grid, seeds and points
    configs/<point>.yaml  each point's parameters, as its command reads them
    status/<point>.json   each point's state (running, done, failed, preempted), exit code, host, pid and times
    logs/<point>.log      each point's output, every attempt appended
    submitit/             submitit's own files (its pickled jobs and logs; SLURM's batch scripts)
    <point>/              each point's out_dir, as its stage writes it

Rerunning a sweep continues it: finished points are skipped (their files untouched), preempted ones resume from
their checkpoints (every stage resumes in its out_dir), failed ones run again, and the sweep says which is which.
Another grid, other seeds or another base configuration in the same folder is refused, unless ``extend``: then the
new values and seeds add points and the finished ones stay (the base configuration and the grid's settings must be
the same: another base is another study, in another folder).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import papermill
import submitit
import yaml

from ..core.config import Config
from ..core.errors import MissingFile, ParameterError
from ..core.files import save_json, save_text
from ..core.lock import hold_lock
from ..core.params import as_list, did_you_mean
from ..distillation import DistillConfig
from ..distillation.config import save_run_config
from ..distillation.task import TaskDistillConfig
from ..generation import CloneStudyConfig, GenerateConfig
from ..probing import ProbeConfig
from ..transfer import TransferConfig
from . import job as job_module
from .collect import STATUS_FOLDER, SWEEP_FILE, collect, progress, read_sweep
from .job import PointJob, read_status

LAUNCHERS = ("local", "slurm")
# stages of the command line that take a run file: python -m workbench <name> --config <file> --out <out_dir>
COMMANDS = {"distill": DistillConfig}
# a notebook's parameters are its stage's config (its kind is the notebook's name), plus out_dir and overwrite
NOTEBOOK_CONFIGS = {cls.kind: cls for cls in (GenerateConfig, ProbeConfig, DistillConfig, TransferConfig,
                                              TaskDistillConfig, CloneStudyConfig)}
SWEEP_OWNS = ("out_dir", "overwrite", "seed")  # what the sweep sets for each point, never the base or the grid
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"  # a source checkout's notebooks


# ----------------------------------------------------------------------------- the grid and its points

@dataclass(frozen=True)
class Point:
    """One run of the sweep: its settings (the grid's values as given, or its variant's name) and seed; ``name``
    is its out_dir's; ``params``: what it sets of the target's parameters (a variant's; the grid's are its
    settings)."""
    settings: dict
    seed: int
    params: dict | None = None

    @property
    def overrides(self) -> dict:
        return self.settings if self.params is None else self.params

    @property
    def name(self) -> str:
        parts = [f"{k}={_safe(v)}" for k, v in self.settings.items()] + [f"seed={self.seed}"]
        return ",".join(parts)

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.settings.items()) + f" seed {self.seed}"


def _safe(value: str) -> str:
    """A value as it can stand in a folder name (a path's separators and spaces become _)."""
    return re.sub(r"[/\\\s]+", "_", str(value)) or "_"


def parse_grid(grid) -> dict[str, list[str]]:
    """``{"ladder": ["last", "all"]}`` from a dict, or from command-line items ``ladder=last,all`` (a value that
    holds commas itself, as YAML: ``ladder=[all, "1,3"]``). Values stay strings, read later by the stage's config
    as a notebook's ``-p`` values are."""
    if isinstance(grid, dict):
        items = {str(k): v for k, v in grid.items()}
    else:
        items = {}
        for item in grid or []:
            name, eq, values = str(item).partition("=")
            if not eq or not name or not values:
                raise ParameterError(f"grid item {item!r} is not name=value,value (e.g. --grid ladder=last,all)")
            if name in items:
                raise ParameterError(f"grid setting {name!r} is given twice: give all its values in one item")
            items[name] = yaml.safe_load(values) if values.lstrip().startswith("[") else values
    out = {}
    for name, values in items.items():
        values = [str(v) for v in (values if isinstance(values, list | tuple) else as_list(values, name))]
        if not values:
            raise ParameterError(f"grid setting {name!r} has no value")
        if len(set(values)) < len(values):
            raise ParameterError(f"grid setting {name!r} repeats a value: {values}")
        out[name] = values
    return out


def grid_points(grid: dict[str, list[str]], seeds: list[int]) -> list[Point]:
    """Every combination of the grid's values (the first setting varies slowest), for every seed."""
    names = list(grid)
    return [Point(dict(zip(names, values)), seed)
            for values in itertools.product(*(grid[n] for n in names)) for seed in seeds]


def parse_variants(variants) -> dict[str, dict]:
    """Named variants, each a dict of the parameters it changes (``{"default": {}, "no teacher dropping":
    {"teacher_drop_prob": 0}}``), from a dict or a YAML file of one: ablations change one thing at a time from a
    default, which a grid (every combination) does not express."""
    if variants is None:
        return {}
    if not isinstance(variants, dict):
        path = Path(variants)
        if not path.is_file():
            raise MissingFile(f"variants {path} is not a file: give a YAML mapping of variant name to the "
                              "parameters it sets (e.g. 'no-tdrop: {teacher_drop_prob: 0}')")
        try:
            variants = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ParameterError(f"variants {path} is not valid YAML: {err}") from err
    if not isinstance(variants, dict) or not variants or not all(
            isinstance(v, dict | type(None)) for v in variants.values()):
        raise ParameterError("variants must map each variant's name to the parameters it sets (a mapping, {} for "
                             f"the base as it is), got {variants!r}")
    return {_safe(str(k)): dict(v or {}) for k, v in variants.items()}


def variant_points(variants: dict[str, dict], seeds: list[int]) -> list[Point]:
    return [Point({"variant": name}, seed, params) for name, params in variants.items() for seed in seeds]


def parse_seeds(seeds) -> list[int]:
    values = as_list(seeds, "seeds") if not isinstance(seeds, list | tuple) else seeds
    try:
        out = [int(s) for s in values]
    except (TypeError, ValueError):
        raise ParameterError(f"seeds must be integers such as 0,1,2, got {seeds!r}") from None
    if not out or len(set(out)) < len(out) or min(out) < 0:
        raise ParameterError(f"seeds must be distinct integers >= 0 such as 0,1,2, got {seeds!r}")
    return out


# ----------------------------------------------------------------------------- what a point runs

@dataclass(frozen=True)
class Target:
    """What each point runs: a stage of the command line (``distill``) or a notebook (``03_distill``, or a path)."""
    name: str  # as recorded: "distill", or the notebook's path
    config_class: type[Config]
    notebook: Path | None = None  # None: a command-line stage

    @classmethod
    def resolve(cls, target: str) -> Target:
        if target in COMMANDS:
            return cls(target, COMMANDS[target])
        path = Path(target)
        stem = path.name.removesuffix(".ipynb").removesuffix(".py")
        candidates = [path.with_suffix(".ipynb"), Path("notebooks") / f"{stem}.ipynb", NOTEBOOKS / f"{stem}.ipynb"]
        found = next((p for p in candidates if p.is_file()), None)
        if stem not in NOTEBOOK_CONFIGS or found is None:
            known = sorted(COMMANDS) + sorted(NOTEBOOK_CONFIGS)
            raise ParameterError(f"cannot sweep {target!r}: give a stage of the command line ({', '.join(COMMANDS)}) "
                                 f"or a notebook ({', '.join(sorted(NOTEBOOK_CONFIGS))}, or its path)"
                                 f"{did_you_mean(stem, known)}")
        return cls(str(found.resolve()), NOTEBOOK_CONFIGS[stem], found.resolve())

    def parameter_names(self) -> set[str]:
        fields = {f.name for f in dataclasses.fields(self.config_class)} | set(self.config_class.renamed)
        if self.notebook is None:
            return fields
        return set(papermill.inspect_notebook(str(self.notebook))) | set(self.config_class.renamed)

    def config(self, params: dict) -> Config:
        """The stage's config of a point, from its parameters that are config fields (every value checked)."""
        names = {f.name for f in dataclasses.fields(self.config_class)} | set(self.config_class.renamed)
        return self.config_class.from_params(**{k: v for k, v in params.items() if k in names})

    def write_config(self, path: Path, params: dict, cfg: Config, out_dir: Path) -> Path:
        """The point's parameters as its command reads them: its config as a run file (a stage), or the parameters
        given as papermill's YAML (a notebook, whose config reads them as ``-p`` values)."""
        if self.notebook is None:
            return save_run_config(path, cfg, out_dir=out_dir)
        values = {k: _literal(v) for k, v in params.items()} | {"out_dir": str(out_dir)}
        save_text("# papermill parameters of one point of a workbench sweep\n"
                  + yaml.safe_dump(values, sort_keys=False), path)
        return path

    def command(self, config_file: Path, out_dir: Path, executed: Path) -> list[str]:
        if self.notebook is None:
            return [sys.executable, "-m", "workbench", self.name, "--config", str(config_file), "--out", str(out_dir)]
        return [sys.executable, "-m", "papermill", "--log-output", "--no-progress-bar", str(self.notebook),
                str(executed), "-f", str(config_file)]


def _literal(value):
    """A grid or base value as papermill injects it: a string as YAML reads it (``"0.5"`` -> 0.5, ``"last"``
    stays), anything else as it is; the notebook's config reads it as it reads ``-p`` values."""
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, int | float | bool | str) else value
    return value


# ----------------------------------------------------------------------------- the sweep

def sweep(target: str, out, config=None, grid=None, seeds=(0,), *, variants=None, extend: bool = False,
          launcher: str = "local", max_parallel: int = 1, time_min: int = 1440, wait: bool | None = None,
          slurm: dict | None = None, poll_s: float = 2.0, log=print):
    """Run ``target`` (``"distill"``, a notebook's name or path) at every point of ``grid`` x ``seeds`` into
    ``out``, on submitit; returns the study's table (``collect(out)``). Rerunning continues it (module docstring).

    ``config``: the base parameters, a dict or a YAML file (a run file of 03 works: its out_dir is ignored);
    ``grid``: ``{setting: [values]}`` or command-line items (``["ladder=last,all"]``); or ``variants``, instead:
    named sets of parameters (a dict or a YAML file; ``{"default": {}, "no-tdrop": {"teacher_drop_prob": 0}}``),
    whose table has one setting, ``variant``; ``seeds``: every point runs once per seed. ``launcher``: ``local``
    (this machine, ``max_parallel`` points at a time) or ``slurm`` (``slurm``: the partition, gpus_per_node,
    cpus_per_task, mem and any other sbatch option; ``time_min`` per task; ``max_parallel`` array tasks at a
    time). ``wait``: follow the points to their end (default: on the local executor; SLURM's jobs outlive this
    process, and ``collect(out)`` or ``progress(out)`` follow them)."""
    # 1. check inputs: the target, every point's parameters and inputs, before anything is written or launched
    out = Path(out).resolve()
    if launcher not in LAUNCHERS:
        raise ParameterError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if max_parallel < 1 or time_min < 1:
        raise ParameterError(f"max_parallel and time_min must be >= 1, got {max_parallel} and {time_min}")
    target = Target.resolve(target)
    base, grid, seeds, variants = read_base(config), parse_grid(grid), parse_seeds(seeds), parse_variants(variants)
    if grid and variants:
        raise ParameterError("give a grid (every combination of its values) or variants (named sets of parameters), "
                             "not both")
    current = target.config_class.current_names  # older names read as the names of now, with a warning
    grid = current(grid)
    variants = {name: current(params) for name, params in variants.items()}
    check_names(target, base, grid)
    for params in variants.values():
        check_names(target, base, params, called="variants", replaces=False)
    declared = {"target": target.name, "base": base, "grid": grid, "variants": variants, "seeds": seeds}
    if out.is_file():
        raise ParameterError(f"out {out} is a file: give a folder for the sweep")
    with hold_lock(out, what="sweep", name=".workbench-sweep.lock"):
        declared = merge_declaration(out, declared, extend)
        points = (variant_points(declared["variants"], declared["seeds"]) if declared["variants"] else
                  grid_points(declared["grid"], declared["seeds"]))
        params = {p.name: base | p.overrides | {"seed": p.seed} for p in points}
        configs = {name: target.config(values) for name, values in params.items()}
        checked = set()
        for cfg in configs.values():
            key = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "seed"}, sort_keys=True, default=str)
            if key not in checked:  # data, weight files, memory: once per configuration, whatever its seed
                cfg.check_inputs()
                checked.add(key)
        # 2. record the study, then each point's parameters
        save_json(declared | {"points": [{"name": p.name, "settings": p.settings, "seed": p.seed}
                                         | ({"params": p.params} if p.params is not None else {}) for p in points]},
                  out / SWEEP_FILE)
        jobs = {}
        for point in points:
            config_file = target.write_config(out / "configs" / f"{point.name}.yaml", params[point.name],
                                              configs[point.name], out / point.name)
            jobs[point.name] = PointJob(str(out), point.name, target.command(
                config_file, out / point.name, out / "notebooks" / f"{point.name}.ipynb"), str(Path.cwd()))
        # 3. decide what runs: the finished are skipped, the stopped resumed, the failed rerun; each said
        todo = plan(out, points, log)
        if not todo:
            log(f"sweep {out}: all {len(points)} points are done")
            return collect(out)
        if target.notebook is not None:
            (out / "notebooks").mkdir(exist_ok=True)
        cloudpickle.register_pickle_by_value(job_module)  # the job's process never imports the workbench (job.py)
        executor = make_executor(launcher, out / "submitit", max_parallel, time_min, slurm or {}, out.name)
        # 4. launch: SLURM takes them all as one array job; the local executor max_parallel at a time
        wait = launcher == "local" if wait is None else wait
        if launcher == "slurm":
            with executor.batch():
                submitted = {p.name: executor.submit(jobs[p.name]) for p in todo}
            log(f"submitted {len(todo)} points to SLURM as array job "
                f"{next(iter(submitted.values())).job_id.split('_')[0]}")
            if wait:
                follow_jobs(out, submitted, log, poll_s)
        else:
            run_locally(out, executor, [jobs[p.name] for p in todo], max_parallel, log, poll_s)
        log(f"sweep {out}: {progress(out)['describe']}")
        return collect(out)


def read_base(config) -> dict:
    """The base parameters: a dict, a YAML file, or None (every default). A run file's own keys are left out."""
    if config is None:
        return {}
    if isinstance(config, dict):
        base = dict(config)
    else:
        path = Path(config)
        if not path.is_file():
            raise MissingFile(f"config {path} is not a file: give a YAML file of the target's parameters (03's "
                              "<out_dir>/run.yaml works) or leave it out for the defaults")
        try:
            base = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ParameterError(f"config {path} is not valid YAML: {err}") from err
        if not isinstance(base, dict):
            raise ParameterError(f"config {path} must hold name: value lines, got a {type(base).__name__}")
    for key in ("out_dir", "paths_relative_to"):  # a run file's: each point has its own out_dir
        base.pop(key, None)
    return base


def check_names(target: Target, base: dict, grid: dict, called: str = "grid", replaces: bool = True) -> None:
    """Every name one of the target's parameters, none the sweep's own; the grid's names not in the base (a
    variant's may be: it changes the base)."""
    known = target.parameter_names()
    for where, names in (("config", base), (called, grid)):
        owned = [n for n in names if n in SWEEP_OWNS]
        if owned:
            raise ParameterError(f"{owned[0]} is set by the sweep for each point (seeds: --seeds 0,1,2; out_dir: "
                                 f"<out>/<point>): leave it out of the {where}")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ParameterError(f"{target.name} has no parameter {unknown[0]!r} (in the {where})"
                                 f"{did_you_mean(unknown[0], known)}; its parameters: "
                                 f"{sorted(known - set(SWEEP_OWNS))}")
    for name in set(base) & set(grid) if replaces else ():
        raise ParameterError(f"{name} is both in the config and in the grid: the grid's values replace the config's, "
                             "so leave it out of one")


def merge_declaration(out: Path, declared: dict, extend: bool) -> dict:
    """The study recorded in ``out`` and this call's must be the same; with ``extend`` this call's values and seeds
    are added to it (same target, base configuration and grid settings)."""
    if not (out / SWEEP_FILE).exists():
        if out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".workbench")):
            raise ParameterError(f"{out} already holds files and no sweep: give a new or empty folder as --out")
        return declared
    recorded = read_sweep(out)  # DataError, naming the file, if it is not a sweep's record
    recorded = {k: recorded.get(k, {} if k in ("grid", "variants") else None) for k in declared}
    if recorded == declared:
        return declared
    changed = [k for k in declared if recorded[k] != declared[k]]
    how = ("rerun with --extend (extend=True) to add the new values and seeds to it, keeping its finished points, or "
           "give another --out")
    if not extend:
        raise ParameterError(f"{out} holds a sweep with another {' and '.join(changed)} (recorded: "
                             + "; ".join(f"{k} {recorded[k]}" for k in changed) + "; asked: "
                             + "; ".join(f"{k} {declared[k]}" for k in changed) + f"): {how}")
    for key in ("target", "base"):
        if recorded[key] != declared[key]:
            raise ParameterError(f"{out} holds a sweep of another {key} ({recorded[key]!r}; asked {declared[key]!r}): "
                                 "extend adds values and seeds to the same study; another one goes in another --out")
    seeds = recorded["seeds"] + [s for s in declared["seeds"] if s not in recorded["seeds"]]
    if recorded["variants"] or declared["variants"]:
        changed = [n for n, params in recorded["variants"].items() if declared["variants"].get(n, params) != params]
        if changed or bool(recorded["variants"]) != bool(declared["variants"]):
            raise ParameterError(f"{out} holds variants {recorded['variants']}; asked {declared['variants']}: extend "
                                 "adds variants by new names; a changed variant goes in another --out")
        return declared | {"variants": recorded["variants"] | declared["variants"], "seeds": seeds}
    if list(recorded["grid"]) != list(declared["grid"]):
        raise ParameterError(f"{out} holds a sweep over {list(recorded['grid'])}; asked {list(declared['grid'])}: "
                             "extend adds values to the same settings; a grid over other settings goes in another "
                             "--out")
    grid = {k: recorded["grid"][k] + [v for v in declared["grid"][k] if v not in recorded["grid"][k]]
            for k in recorded["grid"]}
    return declared | {"grid": grid, "seeds": seeds}


def plan(out: Path, points: list[Point], log) -> list[Point]:
    """The points to launch, from each one's recorded state; says what it skips, resumes and reruns."""
    states = {name: state for state, names in progress(out)["points"].items() for name in names}
    todo, skipped = [], []
    for point in points:
        state = states.get(point.name, "pending")
        if state == "done":
            skipped.append(point.name)
        elif state == "running":
            log(f"  {point.name}: running (status/{point.name}.json), not started again")
        else:
            todo.append(point)
            if state != "pending":
                log(f"  {point.name}: {state} before; "
                    + ("resumes from its last checkpoint" if state == "preempted" else
                       "runs again (its out_dir resumes what it had checkpointed)"))
    log(f"sweep {out}: {len(points)} points, {len(skipped)} done (skipped), {len(todo)} to run")
    return todo


def make_executor(launcher: str, folder: Path, max_parallel: int, time_min: int, slurm: dict, name: str):
    if launcher == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=time_min)
        return executor
    executor = submitit.SlurmExecutor(folder=folder)
    # --signal USR2 some minutes before the time limit (submitit's checkpoint-and-requeue), --requeue on preemption
    params = {"job_name": f"wb-sweep-{name}"[:60], "time": time_min, "array_parallelism": max_parallel,
              "signal_delay_s": 180, "ntasks_per_node": 1, "additional_parameters": {"requeue": True}}
    for key, value in slurm.items():
        if key in executor._valid_parameters():
            params[key] = value
        else:  # any other sbatch option: --slurm constraint=a100
            params["additional_parameters"][key] = value
    executor.update_parameters(**params)
    return executor


def run_locally(out: Path, executor, jobs: list[PointJob], max_parallel: int, log, poll_s: float) -> None:
    """submitit's local executor starts a job as it is submitted: ``max_parallel`` are submitted at a time."""
    waiting, running = list(jobs), {}
    try:
        while waiting or running:
            while waiting and len(running) < max_parallel:
                job = waiting.pop(0)
                running[job.name] = (executor.submit(job), time.time())
                log(f"[{len(jobs) - len(waiting)}/{len(jobs)}] started {job.name}")
            time.sleep(poll_s)
            for name, (submitted, started) in list(running.items()):
                if submitted.done():
                    del running[name]
                    log(_ended(out, name, time.time() - started))
    except BaseException:  # Ctrl-C or a stop: each running point stops at a step boundary (PointJob records it)
        for submitted, _ in running.values():
            submitted.cancel(check=False)
        raise


def follow_jobs(out: Path, submitted: dict, log, poll_s: float) -> None:
    running = dict(submitted)
    while running:
        time.sleep(poll_s)
        for name, job in list(running.items()):
            if job.done():
                del running[name]
                log(_ended(out, name, None))


def _ended(out: Path, name: str, seconds: float | None) -> str:
    record = read_status(out / STATUS_FOLDER / f"{name}.json")
    state = record.get("state", "failed")
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    detail = "" if state == "done" else f" (exit {record.get('exit_code')}; log: logs/{name}.log)"
    return f"  {state}: {name}{took}{detail}"
