"""Sweeps (workbench.study.sweep): the grid and its points, a sweep killed and rerun end to end on submitit's local
executor, a changed grid refused, SLURM's batch script, and a point's job stopped for requeue."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest
from notebook_cells import cache_with_user_teachers

from workbench.__main__ import main
from workbench.core.errors import ParameterError
from workbench.models import build_teachers
from workbench.study import UNIC_ABLATIONS, StudyConfig, collect, sweep
from workbench.study.job import PointJob, read_status
from workbench.study.sweep import (
    grid_points,
    merge_declaration,
    parse_grid,
    parse_seeds,
    parse_variants,
    variant_points,
)

# 64 images a batch of 16: 4 steps an epoch; 15 epochs give a few seconds of training, checkpointed every 5 steps
BASE = {"n_train": 64, "n_test": 32, "epochs": 15, "batch_size": 16, "ckpt_every": 5}
GRID = ["teacher_drop_prob=0,0.5", "ladder=last,all"]


def test_the_grid_is_every_combination_of_its_values_for_every_seed():
    grid = parse_grid(["tdrop_p=0,0.5", 'ladder=[all, "1,3"]'])
    assert grid == {"tdrop_p": ["0", "0.5"], "ladder": ["all", "1,3"]}
    points = grid_points(grid, [0, 1])
    assert len(points) == 8 and len({p.name for p in points}) == 8
    assert points[0].name == "tdrop_p=0,ladder=all,seed=0"
    assert points[-1].settings == {"tdrop_p": "0.5", "ladder": "1,3"}
    assert grid_points({"data": ["some/folder"]}, [0])[0].name == "data=some_folder,seed=0"  # no path separators
    with pytest.raises(ParameterError, match="name=value"):
        parse_grid(["ladder"])
    with pytest.raises(ParameterError, match="repeats"):
        parse_grid(["ladder=all,all"])
    with pytest.raises(ParameterError, match="distinct integers"):
        parse_seeds("0,0")


def test_bad_sweeps_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "study"
    with pytest.raises(ParameterError, match="did you mean 'ladder'"):
        sweep("distill", out, config=BASE, grid=["ladderr=all"])
    with pytest.raises(ParameterError, match="set by the sweep"):
        sweep("distill", out, config=BASE, grid=["seed=0,1"])
    with pytest.raises(ParameterError, match="cannot sweep"):
        sweep("distil", out, config=BASE, grid=GRID)
    with pytest.raises(ParameterError, match="ladder"):  # a value the stage refuses, for one point of the grid
        sweep("distill", out, config=BASE, grid=["ladder=all,middle"])
    assert not out.exists() or [p.name for p in out.iterdir()] == [".workbench-sweep.lock"]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _sweep_command(out: Path, grid=GRID) -> list[str]:
    base = out.parent / "base.json"
    base.write_text(json.dumps(BASE))
    return [sys.executable, "-m", "workbench", "sweep", "distill", "--config", str(base), "--grid", *grid,
            "--seeds", "0,1", "--out", str(out), "--max-parallel", "2"]


@pytest.mark.slow
def test_a_killed_point_resumes_and_the_finished_are_not_rerun(tmp_path):
    out = tmp_path / "study"
    victim = "teacher_drop_prob=0,ladder=last,seed=0"  # the first point: it starts at once
    # the offline teachers in this test's cache first: points started together would each train them
    cache_with_user_teachers(Path(os.environ["WORKBENCH_CACHE"]))
    build_teachers(["world_colour", "world_shape"])
    first = subprocess.Popen(_sweep_command(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # 1. kill the victim's run (SIGKILL: no checkpoint of its own) once it has written a checkpoint
    deadline, killed_at = time.time() + 600, None
    while time.time() < deadline and first.poll() is None:
        status = read_status(out / "status" / f"{victim}.json")
        checkpoints = list((out / victim / "checkpoints").glob("step_*"))
        if status.get("state") == "running" and checkpoints:
            os.kill(status["pid"], signal.SIGKILL)
            killed_at = max(int(p.name.split("_")[1]) for p in checkpoints)
            break
        time.sleep(0.02)
    log = first.communicate(timeout=600)[0]
    assert killed_at is not None, f"the victim finished before it could be killed:\n{log}"
    assert first.returncode == 1, log  # a point failed: the command says so
    assert f"failed: {victim}" in log
    assert not (out / victim / "summary.json").exists()
    finished = {p.name: _files(p) for p in out.iterdir() if (p / "summary.json").is_file()}
    assert len(finished) == 7

    # 2. the rerun resumes the killed point from its checkpoint and leaves the finished ones untouched
    second = subprocess.run(_sweep_command(out), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "8 points, 7 done (skipped), 1 to run" in second.stdout
    assert f"{victim}: failed before; runs again" in second.stdout
    summary = json.loads((out / victim / "summary.json").read_text())
    assert summary["resumed_from_step"] >= killed_at > 0
    assert read_status(out / "status" / f"{victim}.json")["attempt"] == 2
    for name, files in finished.items():
        assert _files(out / name) == files, f"{name} was touched by the rerun"
        assert read_status(out / "status" / f"{name}.json")["attempt"] == 1

    # 3. the table: 8 rows, each with its settings and seed, all done
    runs = collect(out)
    assert len(runs) == 8 and set(runs["state"]) == {"done"}
    assert sorted(zip(runs["teacher_drop_prob"], runs["ladder"], runs["seed"])) == sorted(
        (p, ladder, s) for p in (0, 0.5) for ladder in ("last", "all") for s in (0, 1))
    for row in runs.itertuples():
        config = json.loads((out / row.point / "summary.json").read_text())["config"]
        assert (config["teacher_drop_prob"], config["ladder"], config["seed"]) == (
            row.teacher_drop_prob, row.ladder, row.seed)
        assert config["epochs"] == BASE["epochs"]

    # 4. another grid is refused, saying how to extend; extending adds only the new points
    with pytest.raises(ParameterError, match="--extend"):
        sweep("distill", out, config=BASE, grid=["teacher_drop_prob=0,0.5,1", "ladder=last,all"], seeds=[0, 1])
    assert len(collect(out)) == 8


def test_slurm_gets_one_array_job_with_the_points_commands(tmp_path, monkeypatch):
    """No cluster here: stand-ins for sbatch and srun on PATH record what submitit hands SLURM."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch.calls"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "study"
    runs = sweep("distill", out, config=BASE, grid=["ladder=last,all"], seeds=[0], launcher="slurm", max_parallel=2,
                 time_min=90, slurm={"partition": "gpu", "gpus_per_node": 1, "constraint": "a100"})
    assert list(runs["state"]) == ["pending", "pending"]
    assert len(calls.read_text().splitlines()) == 1  # one array job
    script = (out / "submitit" / "4242_submission.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=90",
                 "#SBATCH --array=0-1%2", "#SBATCH --signal=USR2@180", "#SBATCH --requeue", "#SBATCH --constraint=a100",
                 "#SBATCH --ntasks-per-node=1"):
        assert line in script.splitlines(), f"{line} missing from\n{script}"
    assert "srun --unbuffered" in script and "-m submitit.core._submit" in script
    for task, ladder in enumerate(("last", "all")):
        job = cloudpickle.loads((out / "submitit" / f"4242_{task}_submitted.pkl").read_bytes()).function
        name = f"ladder={ladder},seed=0"
        assert job.command == [sys.executable, "-m", "workbench", "distill", "--config",
                               str(out / "configs" / f"{name}.yaml"), "--out", str(out / name)]
        assert hasattr(job, "checkpoint")  # submitit requeues a job that has one when SLURM warns it


def test_a_warned_job_stops_its_point_at_a_checkpoint_and_requeues_it(tmp_path):
    """submitit calls checkpoint() on SLURM's warning: the point's command gets SIGTERM, exits 75 (a stage writes
    its checkpoint first), its status says preempted, and the job to requeue is the same point."""
    script = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))\n"
              "print('started', flush=True)\n"  # its own line, once its handler is in place
              "time.sleep(60)\n")
    job = PointJob(str(tmp_path), "p", [sys.executable, "-c", script], str(tmp_path))
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("state", job()))
    runner.start()
    log = tmp_path / "logs" / "p.log"
    deadline = time.time() + 60
    while "started" not in (log.read_text().splitlines() if log.exists() else []) and time.time() < deadline:
        time.sleep(0.02)
    requeued = job.checkpoint()
    runner.join(30)
    assert result["state"] == "preempted"
    status = read_status(tmp_path / "status" / "p.json")
    assert (status["state"], status["exit_code"], status["attempt"]) == ("preempted", 75, 1)
    assert requeued.function == job


def test_variants_name_their_points_and_extend_only_by_new_names(tmp_path):
    variants = parse_variants({"default": None, "no tdrop": {"teacher_drop_prob": 0}})
    assert variants == {"default": {}, "no_tdrop": {"teacher_drop_prob": 0}}
    points = variant_points(variants, [0, 1])
    assert [p.name for p in points] == ["variant=default,seed=0", "variant=default,seed=1",
                                        "variant=no_tdrop,seed=0", "variant=no_tdrop,seed=1"]
    assert points[2].settings == {"variant": "no_tdrop"} and points[2].overrides == {"teacher_drop_prob": 0}
    with pytest.raises(ParameterError, match="not both"):
        sweep("distill", tmp_path / "s", config=BASE, grid=["ladder=all"], variants=variants)
    with pytest.raises(ParameterError, match="did you mean 'ladder'"):
        sweep("distill", tmp_path / "s", config=BASE, variants={"default": {}, "x": {"ladderr": "last"}})
    declared = {"target": "distill", "base": BASE, "grid": {}, "variants": variants, "seeds": [0]}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(json.dumps(declared | {"points": []}))  # as the launcher records
    more = declared | {"variants": variants | {"ladder": {"ladder": "last"}}, "seeds": [1]}
    with pytest.raises(ParameterError, match="--extend"):
        merge_declaration(tmp_path / "s", more, extend=False)
    merged = merge_declaration(tmp_path / "s", more, extend=True)
    assert list(merged["variants"]) == ["default", "no_tdrop", "ladder"] and merged["seeds"] == [0, 1]
    changed = declared | {"variants": {"default": {}, "no_tdrop": {"teacher_drop_prob": 0.25}}}
    with pytest.raises(ParameterError, match="changed variant"):
        merge_declaration(tmp_path / "s", changed, extend=True)


def test_the_study_config_reads_its_variants():
    cfg = StudyConfig.from_params(variants="all", seeds="0,1,2", base="n_train=64,epochs=1")
    assert cfg.variants == list(UNIC_ABLATIONS) and cfg.seeds == [0, 1, 2]
    assert cfg.base == {"n_train": "64", "epochs": "1"}
    assert StudyConfig.from_params(variants=["default", "augment-unic"]).variant_params == {
        "default": {}, "augment-unic": {"augment": "unic"}}
    with pytest.raises(ParameterError, match="did you mean 'augment-unic'"):
        StudyConfig.from_params(variants="default,augment")
    with pytest.raises(ParameterError, match="must include default"):
        StudyConfig.from_params(variants="ladder-last-block")
    with pytest.raises(ParameterError, match="distinct"):
        StudyConfig.from_params(seeds="1,1")


def test_the_command_line_takes_variants_from_a_file_and_refuses_a_bad_one(tmp_path, capsys):
    variants = tmp_path / "variants.yaml"
    variants.write_text("default: {}\nno-tdrop: {teacher_drop_prob: 0}\nbad: {ladderr: last}\n")
    assert main(["sweep", "distill", "--out", str(tmp_path / "s"), "--variants", str(variants)]) == 2
    assert "did you mean 'ladder'" in capsys.readouterr().err
    assert main(["sweep", "distill", "--out", str(tmp_path / "s"), "--variants", str(tmp_path / "none.yaml")]) == 2
    assert "is not a file" in capsys.readouterr().err
