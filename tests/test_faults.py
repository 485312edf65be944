"""Fault injection: killed runs, killed checkpoint writes, preempted runs, two runs on one out_dir, corrupt data,
bad parameters, malicious checkpoints.

The kill tests run tests/distill_child.py in a process of its own and SIGKILL it: no cleanup code runs,
exactly as when a job runs out of memory. The preemption tests send it a real SIGTERM or SIGUSR1, as a
scheduler does before it stops a job. (More cluster faults: tests/test_cluster_faults.py.)
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from notebook_cells import run_validation_cell
from PIL import Image

import workbench as wb
from workbench.core.checkpoint import (
    Checkpoints,
    TrainState,
    load_state,
    load_train_state,
    save_state,
    save_train_state,
)
from workbench.core.files import atomic_folder, load_tensors, save_bytes, save_json
from workbench.core.params import ParameterError
from workbench.core.preemption import EXIT_PREEMPTED
from workbench.core.runs import OutDirError, prepare_out_dir
from workbench.distillation import DistillConfig, check_batch_size, distill
from workbench.models import load_student
from workbench.models.weights import UnsafeCheckpoint, load_weights

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
import distill_child  # noqa: E402
from distill_child import CKPT_EVERY, STEPS, STEPS_PER_EPOCH  # noqa: E402

# Children fork from a server that has imported torch, timm and the workbench once (it has run no torch
# op, so forking it is safe): each child is a process of its own, without the import time. (The server
# does not see this folder on its path, so it preloads the package; the children import distill_child.)
CTX = multiprocessing.get_context("forkserver")
CTX.set_forkserver_preload(["workbench", "workbench.distillation"])

# Kill points: random, but the same on every run of the suite (seeded). The paused kill lands between
# checkpoints, so the resumed run redoes steps, and after a checkpoint taken mid-epoch, so it resumes
# at a batch inside an epoch; the running kill leaves the process enough steps to be caught running.
_rng = random.Random(8)
KILL_PAUSED = _rng.choice([k for k in range(CKPT_EVERY, STEPS - 2)
                           if (k + 1) % CKPT_EVERY and (k + 1) // CKPT_EVERY * CKPT_EVERY % STEPS_PER_EPOCH])
KILL_RUNNING = _rng.choice(range(2, STEPS - STEPS_PER_EPOCH))


_children: list = []  # the processes of the test running now


@pytest.fixture(autouse=True)
def no_child_outlives_its_test():
    """SIGKILL what a failed test left running: a run records SIGTERM (preemption), so multiprocessing's
    terminate() at exit would wait for a paused child to wake up."""
    yield
    while _children:
        proc = _children.pop()
        if proc.is_alive():
            proc.kill()
            proc.join(30)


class Child:
    """``distill_child.run`` in a process of its own; its log lines go to ``<out_dir>.log``. The process is
    killed at the end of the test that started it (``test_only=False``: it may outlive it)."""

    def __init__(self, out_dir: Path, marker: Path | None = None, target=distill_child.run, test_only: bool = True,
                 daemon: bool = True, **kwargs):
        self.log = out_dir.parent / f"{out_dir.name}.log"
        self.log.unlink(missing_ok=True)
        kwargs = {"marker": str(marker) if marker else None, "log": str(self.log), **kwargs}
        # daemon=False: a process that starts processes of its own (a daemon may not)
        self.proc = CTX.Process(target=target, args=(str(out_dir),), kwargs=kwargs, daemon=daemon)
        self.proc.start()
        if test_only:
            _children.append(self.proc)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def finish(self, timeout: float = 300) -> str:
        self.proc.join(timeout)
        assert self.proc.exitcode == 0, f"exit code {self.proc.exitcode}:\n{self.output()}"
        return self.output()

    def stops(self, timeout: float = 300) -> str:
        """Its output, once it has exited with the preemption code."""
        self.proc.join(timeout)
        assert self.proc.exitcode == EXIT_PREEMPTED, f"exit code {self.proc.exitcode}:\n{self.output()}"
        return self.output()

    def signal_when(self, marker: Path, ready, signum: int, timeout: float = 300) -> None:
        """Send ``signum`` as soon as ``ready(lines of the marker)`` holds (the process keeps running)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if ready(marker.read_text().splitlines() if marker.exists() else []):
                os.kill(self.proc.pid, signum)
                return
            if not self.proc.is_alive():
                pytest.fail(f"the run ended before the signal point:\n{self.output()}")
            time.sleep(0.005)
        self.proc.kill()
        pytest.fail("the signal point was never reached")

    def kill_when(self, marker: Path, ready, timeout: float = 300) -> None:
        """SIGKILL the process as soon as ``ready(lines of the marker)`` holds."""
        self.signal_when(marker, ready, signal.SIGKILL, timeout)
        self.proc.join(60)
        assert self.proc.exitcode == -signal.SIGKILL


def final_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = out_dir / "student"
    return {**load_tensors(ckpt / "student.safetensors"), **load_tensors(ckpt / "projectors.safetensors")}


def losses(out_dir: Path) -> list[tuple]:
    records = [json.loads(line) for line in (out_dir / "history.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["loss/world_shape"], r["alpha/world_colour"]) if "loss" in r else
            (r["step"], r["val_loss"], r["val_loss/world_shape"]) for r in records]


def assert_identical(a: Path, reference: Reference) -> None:
    b = reference.result()
    wa, wb_ = final_weights(a), final_weights(b)
    assert wa.keys() == wb_.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb_[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert losses(a) == losses(b)


class Reference:
    """The same run, never interrupted; started at once, in parallel with the first test's runs."""

    def __init__(self, out: Path):
        self.out, self.child, self.done = out, Child(out, test_only=False), False

    def result(self) -> Path:
        if not self.done:
            self.child.finish()
            self.done = True
            assert len([r for r in losses(self.out) if len(r) == 4]) == STEPS  # training records, then the vals
        return self.out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = Reference(tmp_path_factory.mktemp("reference") / "run")
    yield ref
    if ref.child.proc.is_alive():
        ref.child.proc.kill()
        ref.child.proc.join()


def test_sigkill_at_a_random_step_then_rerun_resumes_and_ends_identical(reference, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "steps"
    Child(out, marker, pause_at=KILL_PAUSED).kill_when(marker, lambda lines: str(KILL_PAUSED) in lines)
    assert not (out / "student").exists()  # it really died mid-run
    last = Checkpoints(out / "checkpoints").latest()
    resume_step = (KILL_PAUSED + 1) // CKPT_EVERY * CKPT_EVERY
    assert last.name == f"step_{resume_step:08d}"

    log = Child(out).finish()
    assert f"resumed from step {resume_step} " in log and f"resumed_from={resume_step}" in log
    assert_identical(out, reference)


def test_sigkill_while_running_then_rerun_resumes_and_ends_identical(reference, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "steps"
    # no pause: the kill lands wherever the process is (mid-step, mid-write)
    Child(out, marker).kill_when(marker, lambda lines: len(lines) > KILL_RUNNING)
    assert not (out / "student").exists()
    log = Child(out).finish()
    assert "resumed from step" in log
    assert_identical(out, reference)


def test_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(reference, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "steps"
    Child(out, marker, hang_in_checkpoint=2).kill_when(marker, lambda lines: "writing" in lines)  # step 8
    ckpts = Checkpoints(out / "checkpoints")
    partial = [p for p in ckpts.root.iterdir() if p.name.endswith(".tmp")]
    assert partial and partial[0].name.startswith(".step_00000008.")  # the interrupted write is on disk...
    assert [p.name for p in ckpts.all()] == ["step_00000004"]  # ...but under a name nobody loads
    previous = ckpts.latest()
    load_student(previous)
    state, _ = load_train_state(previous)
    assert (state.step, state.epoch, state.batch) == (4, 0, 4)
    assert load_state(previous / "optimizer.safetensors")["state"]  # the optimizer state reads back too

    log = Child(out).finish()
    assert "a checkpoint whose writing was interrupted" in log and "resumed from step 4 " in log
    assert not [p for p in ckpts.root.iterdir() if p.name.endswith(".tmp")]
    assert [p.name for p in ckpts.all()] == [f"step_{STEPS - CKPT_EVERY:08d}", f"step_{STEPS:08d}"]  # keep=2
    assert_identical(out, reference)


# ----------------------------------------------------------------------------- preemption, two writers

STOP_AT = 9  # epoch 2, batch 2: mid-epoch, between the checkpoints every 4 steps


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_mid_epoch_checkpoints_that_step_exits_75_and_the_rerun_ends_identical(reference, tmp_path, signum):
    """The signal lands in step 9 (the child waits there for it): the run finishes step 9, checkpoints at once
    (step 10, where ckpt_every=4 would not), exits with 75, and the rerun resumes at step 10. With SIGTERM a
    second SIGTERM arrives while that checkpoint is being written, and changes nothing."""
    out, marker = tmp_path / "run", tmp_path / "steps"
    twice = signum == signal.SIGTERM
    child = Child(out, marker, wait_for_signal_at=STOP_AT, second_signal_in_checkpoint=twice)
    child.signal_when(marker, lambda lines: str(STOP_AT) in lines, signum)
    if twice:
        child.signal_when(marker, lambda lines: "writing" in lines, signum)
    log = child.stops()
    name = signal.Signals(signum).name
    assert f"{name} received: distillation stopped after step {STOP_AT + 1} (checkpoint at step {STOP_AT + 1}" in log
    assert not (out / "student").exists()  # stopped, not finished
    ckpts = Checkpoints(out / "checkpoints")
    assert [p.name for p in ckpts.all()] == ["step_00000008", f"step_{STOP_AT + 1:08d}"]  # keep=2
    assert not list(out.rglob("*.tmp"))
    state, _ = load_train_state(ckpts.latest())
    assert (state.step, state.epoch, state.batch) == (STOP_AT + 1, 1, 2)
    assert json.loads((out / "preempted.json").read_text())["step"] == STOP_AT + 1

    log = Child(out).finish()
    assert f"resumed from step {STOP_AT + 1} " in log
    assert not (out / "preempted.json").exists()
    assert_identical(out, reference)


def test_a_second_run_on_a_busy_out_dir_is_refused_and_a_killed_holder_never_blocks(reference, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "steps"
    first = Child(out, marker, pause_at=KILL_PAUSED)
    t0 = time.time()
    while str(KILL_PAUSED) not in (marker.read_text().splitlines() if marker.exists() else []):
        assert time.time() - t0 < 300 and first.proc.is_alive(), first.output()
        time.sleep(0.01)

    second = Child(out, tmp_path / "second-steps")
    second.proc.join(120)
    assert second.proc.exitcode == 1 and (tmp_path / "second-steps").read_text() == ""  # refused before any step
    refusal = second.output()
    assert f"is in use by another run: pid {first.proc.pid} on host {socket.gethostname()}, started " in refusal
    assert "Wait for that run to finish (or stop it), or use another out_dir" in refusal

    first.kill_when(marker, lambda lines: True)  # SIGKILL: no cleanup runs, the OS releases the lock
    log = Child(out).finish()
    assert "resumed from step" in log
    assert_identical(out, reference)


# ----------------------------------------------------------------------------- corrupt data

def _image_folder(root: Path, per_class: int, classes=("cat", "dog")) -> list[Path]:
    files = []
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            path = root / c / f"{i:03d}.png"
            Image.new("RGB", (36 + i % 5, 30), (40 * i % 255, 90 * k, 10)).save(path)
            files.append(path)
    return files


def _corrupt(path: Path, kind: int) -> None:
    data = path.read_bytes()
    if kind == 0:
        path.write_bytes(data[: len(data) // 2])  # truncated
    elif kind == 1:
        path.write_bytes(b"")  # empty file
    else:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))  # a header, then garbage


def test_five_percent_corrupt_files_are_skipped_and_counted_exactly(tmp_path):
    train = _image_folder(tmp_path / "data" / "train", 30)  # 60 training images
    _image_folder(tmp_path / "data" / "val", 5)
    bad = train[3::20]  # 3 of 60: 5%
    for kind, path in enumerate(bad):
        _corrupt(path, kind)
    data = wb.load_data(str(tmp_path / "data"), image_size=32)
    teachers = {n: wb.create_teacher(n, pretrained=False) for n in ("world_colour", "world_shape")}
    cfg = DistillConfig(epochs=2, batch_size=8, student="wb_vit_tiny_patch8_32")
    messages = []
    run = distill(cfg, data, teachers, out_dir=tmp_path / "run", log=messages.append)
    assert len(run.skipped) == 3  # each file once, although every epoch met it
    assert sorted(s.split(": ", 1)[0] for s in run.skipped) == sorted(map(str, bad))
    assert "3 unreadable image(s) skipped" in messages[-1]
    final = json.loads((tmp_path / "run" / "student" / "config.json").read_text())
    assert len(final["unreadable_images"]) == 3
    report = wb.data.skipped_report(data, "train", run.skipped)
    assert report["count"] == 3 and report["by_class"] == {"cat": 2, "dog": 1}
    assert report["classes_without_readable_images"] == []


def test_images_of_any_mode_and_size_are_read_as_rgb(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    Image.new("L", (40, 20), 128).save(root / "a" / "grey.png")
    Image.new("RGBA", (16, 64), (255, 0, 0, 0)).save(root / "a" / "transparent.png")  # fully transparent: white
    Image.new("CMYK", (50, 50), (0, 255, 255, 0)).save(root / "a" / "cmyk.jpg")
    Image.new("P", (33, 33), 3).save(root / "b" / "palette.gif".replace(".gif", ".png"))
    Image.new("I;16", (24, 24), 65535).save(root / "b" / "sixteen.png")  # 16-bit white, not clipped garbage
    Image.new("1", (12, 48), 1).save(root / "b" / "bilevel.bmp")
    Image.new("LA", (30, 30), (0, 255)).save(root / "b" / "grey_alpha.png")
    ds = wb.load_data(str(root), image_size=16)
    images = {p.name: ds.train[i][0] for i, (p, _) in enumerate(ds.train.samples)}
    images.update({p.name: ds.test[i][0] for i, (p, _) in enumerate(ds.test.samples)})
    assert len(images) == 7 and all(x.shape == (3, 16, 16) for x in images.values())
    assert torch.allclose(images["transparent.png"], torch.ones(3, 16, 16))
    assert torch.allclose(images["sixteen.png"], torch.ones(3, 16, 16))
    assert images["cmyk.jpg"][0].mean() > 0.9 and images["cmyk.jpg"][1].mean() < 0.1  # CMYK red stays red
    assert images["grey_alpha.png"].max() < 0.01  # opaque black


# ----------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("params,message", [
    ({"epochs": "abc"}, r"epochs must be an integer, got 'abc' \(e.g. -p epochs 4\)"),
    ({"colour": 1}, r"unknown distillation parameter\(s\) \['colour'\]"),
    ({"teachers": "world_shape,dino_nonexistent"}, r"unknown teacher\(s\) \['dino_nonexistent'\]"),
    ({"student": "vit_nope"}, r"unknown student 'vit_nope'"),
    ({"image_size": 30}, r"image_size 30 is not a multiple of the patch size 8 of student 'wb_vitc_tiny_patch8_32': "
                         r"use 24 or 32"),
    ({"ladder": "1,7"}, r"ladder blocks \[1, 7\] out of range for a student of depth 4"),
])
def test_each_invalid_distillation_parameter_has_its_message(params, message):
    with pytest.raises(ParameterError, match=message):
        DistillConfig.from_params(**params)


def test_batch_larger_than_the_dataset_is_refused_before_training(tmp_path):
    with pytest.raises(ParameterError,
                       match=r"batch_size 64 is larger than the training split of 'world' \(40 images\)"):
        check_batch_size(64, 40, "world")
    data = wb.load_data("world", n_train=40, n_test=10)
    with pytest.raises(ParameterError, match="batch_size 64 is larger"):
        distill(DistillConfig(), data, {}, out_dir=tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_unknown_names_from_papermill_are_reported():
    from workbench.core.params import check_injected_parameters

    history = ["", 'epochs = 8\nlr = 0.1\nout_dir = "runs/x"\n',
               '# Parameters\nlr = 3\nepoch = 3\nlearning_rate = 0.5\n']
    with pytest.raises(ParameterError,
                       match=r"unknown parameter\(s\) \['epoch', 'learning_rate'\].*did you mean 'epochs'"):
        check_injected_parameters({"In": history})
    check_injected_parameters({"In": history[:2]})  # not run by papermill: nothing injected, nothing to check
    check_injected_parameters({"In": history[:2] + ["# Parameters\nepochs = 3\n"]})


@pytest.mark.parametrize("params,message", [
    ({"epochs": "abc"}, r"epochs must be an integer, got 'abc' \(e.g. -p epochs 4\)"),
    ({"learning_rate": 0.1}, r"unknown parameter\(s\) \['learning_rate'\] for this notebook"),
    ({"epoch": 3}, r"unknown parameter\(s\) \['epoch'\] for this notebook; did you mean 'epochs'"),
    ({"image_size": 30}, r"image_size 30 is not a multiple of the patch size 8"),
    ({"batch_size": 64, "n_train": 40}, r"batch_size 64 is larger than the training split of 'world' \(40 images\)"),
    ({"ladder": "0,9"}, r"ladder blocks \[0, 9\] out of range"),
    ({"overwrite": "maybe"}, r"overwrite must be True or False, got 'maybe'"),
    ({"keep_checkpoints": 0}, r"keep_checkpoints must be >= 1"),
])
def test_the_distill_notebook_validates_its_parameters_first(params, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_validation_cell("03_distill.ipynb", {**params, "out_dir": str(tmp_path / "run")}, tmp_path)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("notebook,params,message", [
    ("01_synthetic_imagenet.ipynb", {"image_per_class": 3}, r"did you mean 'images_per_class'"),
    ("01_synthetic_imagenet.ipynb", {"steps": "many"}, r"steps must be an integer, got 'many'"),
    ("02_probe_teachers.ipynb", {"shot": "1,5"}, r"did you mean 'shots'"),
    ("02_probe_teachers.ipynb", {"probe": "svm"}, r"probe must be one of \['linear', 'knn', 'both'\]"),
    ("06_synthetic_vs_real.ipynb", {"guidance_scales": "2,2"}, r"guidance_scales must be distinct numbers"),
    ("06_synthetic_vs_real.ipynb", {"student_init": "nowhere"}, r"student_init 'nowhere' is not 'random'"),
])
def test_the_other_notebooks_validate_their_parameters_first(notebook, params, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_validation_cell(notebook, {**params, "out_dir": str(tmp_path / "run")}, tmp_path)
    assert not (tmp_path / "run").exists()


def test_notebook_reruns_continue_or_refuse(tmp_path):
    """The validation cell of 03 takes the same out_dir again, refuses another configuration, and starts over on
    overwrite; 02 refuses 03's folder."""
    base = {"out_dir": str(tmp_path / "run"), "n_train": 40, "n_test": 20, "batch_size": 8}
    run_validation_cell("03_distill.ipynb", base, tmp_path)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["batch_size"] == 8
    run_validation_cell("03_distill.ipynb", base, tmp_path)
    with pytest.raises(OutDirError, match=r"batch_size: folder 8, this run 16.*overwrite=True"):
        run_validation_cell("03_distill.ipynb", {**base, "batch_size": 16}, tmp_path)
    run_validation_cell("03_distill.ipynb", {**base, "batch_size": 16, "overwrite": True}, tmp_path)
    with pytest.raises(OutDirError, match="holds a '03_distill' run, not '02_probe_teachers'"):
        run_validation_cell("02_probe_teachers.ipynb", {"out_dir": base["out_dir"]}, tmp_path)


def test_the_two_distillation_notebooks_keep_their_runs_apart(tmp_path):
    """05 (task-specific) records a '05_task_distill' run; 03 (UNIC) is refused its folder and the other way round."""
    task = {"out_dir": str(tmp_path / "task"), "n_train": 40, "n_test": 20}
    run_validation_cell("05_task_distill.ipynb", task, tmp_path)
    record = json.loads((tmp_path / "task" / "run.json").read_text())
    assert record["kind"] == "05_task_distill" and record["config"]["student_steps"] == 300
    assert "device" not in record["config"]
    with pytest.raises(OutDirError, match="holds a '05_task_distill' run, not '03_distill'"):
        run_validation_cell("03_distill.ipynb", {**task, "batch_size": 8}, tmp_path)
    run_validation_cell("03_distill.ipynb", {"out_dir": str(tmp_path / "features"), "n_train": 40, "n_test": 20,
                                             "batch_size": 8}, tmp_path)
    with pytest.raises(OutDirError, match="holds a '03_distill' run, not '05_task_distill'"):
        run_validation_cell("05_task_distill.ipynb", {**task, "out_dir": str(tmp_path / "features")}, tmp_path)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['objective'\] for this notebook"):
        run_validation_cell("03_distill.ipynb", {"objective": "task", "out_dir": str(tmp_path / "x")}, tmp_path)
    with pytest.raises(ParameterError, match=r"unknown student\(s\) \[.teacher.\]: students are among"):
        run_validation_cell("05_task_distill.ipynb",
                            {**task, "students": "labels,teacher", "out_dir": str(tmp_path / "y")}, tmp_path)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_synthetic_notebook_overwrite_clears_only_a_generated_folder(tmp_path):
    """Overwrite deletes what the workbench wrote in a clone's folder (its files' record), keeps the user's own files,
    refuses a folder no workbench run wrote, and one written before the record existed."""
    save_json({}, tmp_path / "clone" / "generation.json")  # written as the generator writes: recorded
    save_bytes(b"old image", tmp_path / "clone" / "n01440764" / "00000.png")
    (tmp_path / "clone" / "notes.md").write_text("mine")
    run_validation_cell("01_synthetic_imagenet.ipynb", {"out_dir": str(tmp_path / "clone"), "overwrite": True},
                        tmp_path)
    assert sorted(p.name for p in (tmp_path / "clone").iterdir()) == ["notes.md"]
    (tmp_path / "old" / "n01440764").mkdir(parents=True)
    (tmp_path / "old" / "generation.json").write_text("{}")
    with pytest.raises(OutDirError, match="older than its record"):
        run_validation_cell("01_synthetic_imagenet.ipynb", {"out_dir": str(tmp_path / "old"), "overwrite": True},
                            tmp_path)
    assert (tmp_path / "old" / "n01440764").is_dir()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(OutDirError, match="no workbench run wrote"):
        run_validation_cell("01_synthetic_imagenet.ipynb", {"out_dir": str(tmp_path / "photos"), "overwrite": True},
                            tmp_path)
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"precious"


@pytest.mark.slow
def test_papermill_stops_the_notebook_at_an_unknown_parameter(tmp_path):
    """End to end in a real kernel: papermill only warns about the name; the notebook's first cell refuses it."""
    out = tmp_path / "out.ipynb"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(tmp_path),
                           str(ROOT / "notebooks" / "03_distill.ipynb"), str(out), "-p", "learning_rate", "0.1",
                           "-p", "out_dir", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "ParameterError"
    assert re.search(r"unknown parameter\(s\) \['learning_rate'\] for this notebook", errors[0]["evalue"])
    assert not (tmp_path / "run").exists()  # refused before anything was written


# ----------------------------------------------------------------------------- out_dir

def test_out_dir_resumes_the_same_configuration_and_refuses_another(tmp_path):
    out = tmp_path / "run"
    prepare_out_dir(out, {"epochs": 8, "teachers": ("a", "b")}, kind="03_distill", log=lambda *_: None)
    save_json({}, out / "summary.json")
    save_bytes(b"weights", out / "checkpoints" / "step_1" / "model.safetensors")
    (out / "notes.md").write_text("the user's")
    (out / "analysis").mkdir()
    assert prepare_out_dir(out, {"epochs": 8, "teachers": ["a", "b"]}, kind="03_distill", log=lambda *_: None) == out
    assert (out / "summary.json").exists()  # same configuration: continued, nothing deleted
    with pytest.raises(OutDirError, match=r"another configuration \(epochs: folder 8, this run 9\).*overwrite=True"):
        prepare_out_dir(out, {"epochs": 9, "teachers": ["a", "b"]}, kind="03_distill")
    with pytest.raises(OutDirError, match="holds a '03_distill' run, not '02_probe_teachers'"):
        prepare_out_dir(out, {"epochs": 8}, kind="02_probe_teachers")
    said = []
    prepare_out_dir(out, {"epochs": 9}, overwrite=True, kind="03_distill", log=said.append)
    assert not (out / "summary.json").exists() and not (out / "checkpoints").exists()
    assert (out / "notes.md").read_text() == "the user's" and (out / "analysis").is_dir()
    assert "kept what it did not write: analysis/, notes.md" in said[0]
    assert json.loads((out / "run.json").read_text())["config"] == {"epochs": 9}


def test_out_dir_with_foreign_files_is_never_cleared(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(OutDirError, match="no workbench run wrote|no run.json"):
            prepare_out_dir(tmp_path / "mine", {"epochs": 1}, overwrite=overwrite)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


def test_distill_refuses_checkpoints_of_another_configuration(tmp_path):
    data = wb.load_data("world", n_train=32, n_test=8)
    teachers = {"world_shape": wb.create_teacher("world_shape", pretrained=False)}
    cfg = DistillConfig(teachers=["world_shape"], epochs=1, batch_size=16, student="wb_vit_tiny_patch8_32")
    distill(cfg, data, teachers, out_dir=tmp_path, log=lambda *_: None)
    other = DistillConfig(**{**cfg.to_dict(), "base_lr": 1e-3})
    with pytest.raises(OutDirError, match=r"another run \(base_lr: checkpoint 0.008, this run 0.001\).*overwrite=True"):
        distill(other, data, teachers, out_dir=tmp_path, log=lambda *_: None)
    run = distill(other, data, teachers, out_dir=tmp_path, overwrite=True, log=lambda *_: None)
    assert run.resumed_from is None
    assert json.loads((tmp_path / "student" / "config.json").read_text())["config"]["base_lr"] == 1e-3
    again = distill(other, data, teachers, out_dir=tmp_path, log=lambda *_: None)  # finished: nothing to train
    assert again.resumed_from == 2 and again.history == run.history


# ----------------------------------------------------------------------------- files

def test_atomic_folder_is_complete_or_absent(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "ckpt") as tmp:
            (tmp / "a").write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(tmp_path / "ckpt") as tmp:
        (tmp / "a").write_text("1")
    with atomic_folder(tmp_path / "ckpt") as tmp:  # replacing a complete folder
        (tmp / "a").write_text("2")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"] and (tmp_path / "ckpt" / "a").read_text() == "2"


def test_train_state_round_trip_restores_every_generator(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(5)
    torch.rand(3, generator=gen)
    state = TrainState(step=7, epoch=1, batch=2, history=[{"loss": 0.5}], skipped=["x.png: broken"])
    save_train_state(tmp_path, state, opt, {"drop": gen}, extra={"ema_decay": 0.99, "scale": torch.tensor(2.0)})
    expected = (torch.rand(5), torch.rand(5, generator=gen), random.random())
    opt2 = torch.optim.AdamW(model.parameters())
    gen2 = torch.Generator()
    loaded, extra = load_train_state(tmp_path, opt2, {"drop": gen2})
    assert loaded == state and extra["ema_decay"] == 0.99 and torch.equal(extra["scale"], torch.tensor(2.0))
    assert torch.equal(torch.rand(5), expected[0]) and torch.equal(torch.rand(5, generator=gen2), expected[1])
    assert random.random() == expected[2]
    a, b = opt.state_dict(), opt2.state_dict()
    assert all(torch.equal(a["state"][0][k], b["state"][0][k]) for k in a["state"][0])
    save_state({"nested": [1, {"t": torch.ones(2)}], "by_index": {3: None}}, tmp_path / "s.safetensors")
    back = load_state(tmp_path / "s.safetensors")
    assert back["nested"][0] == 1 and torch.equal(back["nested"][1]["t"], torch.ones(2))
    assert back["by_index"] == {3: None}
    with pytest.raises(TypeError, match="all strings or all integers"):
        save_state({"a": 1, 2: 3}, tmp_path / "bad.safetensors")


# ----------------------------------------------------------------------------- malicious checkpoints

class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_checkpoint(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": _RunsCode(marker)}, path)
    return path, marker


def test_a_pickle_that_runs_code_on_load_is_refused(evil_checkpoint):
    path, marker = evil_checkpoint
    with pytest.raises(UnsafeCheckpoint, match=r"refusing to load .*evil.pth.*could run code.*posix.system"):
        load_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("teacher", ["vit_tiny_patch16_224", "world_shape", "ibot_vitb16"])
def test_every_teacher_checkpoint_path_refuses_it(teacher, evil_checkpoint):
    """timm models, offline specialists and official iBOT/dBOT files all load through load_weights."""
    path, marker = evil_checkpoint
    with pytest.raises(UnsafeCheckpoint, match="refusing to load"):
        wb.create_teacher(teacher, checkpoint=str(path))
    assert not marker.exists()


def test_safe_checkpoints_still_load(tmp_path):
    teacher = wb.create_teacher("world_shape", pretrained=False)
    state = teacher.state_dict()
    torch.save({"model": state}, tmp_path / "shape.pth")  # a plain pickle of tensors
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "shape.safetensors")
    for name in ("shape.pth", "shape.safetensors"):
        loaded = wb.create_teacher("world_shape", checkpoint=str(tmp_path / name))
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in state.items())
