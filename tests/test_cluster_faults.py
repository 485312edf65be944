"""Long runs on shared clusters: preemption signals, one writer per out_dir, a full or read-only disk.

- Preemption: real SIGTERM / SIGUSR1 to real processes (task distillation in a child process, distillation
  under torchrun with 2 Gloo ranks, generation in this process): the run finishes its step (its batch),
  checkpoints, exits with 75, and the rerun ends as a run never stopped. (Distillation in one process:
  tests/test_faults.py, beside the SIGKILL tests it shares its reference run with.)
- Locks: a folder held by another live process is refused, naming it; a killed holder never blocks.
- Disk: writes fail as a full disk makes them fail, at each kind of write (checkpoint, metrics, image,
  manifest, summary): the message names the path and the free space, nothing written before is lost, and
  no temporary file stays. ``os.write`` fails for the chosen file after writing half of what it was given,
  as a disk that fills up mid-write; safetensors, which writes from Rust (to a temporary file of its own,
  removed on failure), raises what it raises then: its error with the OS error in the message.
"""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import distill_child
import pytest
import torch
from PIL import Image
from safetensors import SafetensorError
from test_faults import CTX, Child, no_child_outlives_its_test  # noqa: F401  (the fixture applies here too)

import workbench as wb
import workbench.core.files as wio
from workbench.core.checkpoint import Checkpoints, load_train_state
from workbench.core.files import DiskWriteError, load_tensors, read_jsonl, save_json
from workbench.core.lock import OutDirBusy, hold_lock
from workbench.core.preemption import EXIT_PREEMPTED, Preempted, handle_preemption, requested
from workbench.core.runs import clear_out_dir, prepare_out_dir
from workbench.distillation import DistillConfig, distill, launch_distill, save_run_config, torchrun_command
from workbench.distillation.launch import torchrun_signal_env
from workbench.generation import GenerateConfig, Shard, generate, read_manifest, writer
from workbench.generation.pipelines import load_pipeline
from workbench.generation.tiny import build_tiny_pipeline
from workbench.generation.writer import shard_lock_name
from workbench.models import load_student

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- signals

def test_handlers_record_the_signal_and_the_previous_ones_come_back():
    before = signal.getsignal(signal.SIGUSR1)
    with handle_preemption():
        with handle_preemption():  # nested: the outer one's handlers and record
            os.kill(os.getpid(), signal.SIGUSR1)  # would end this process with the default handler
            time.sleep(0.01)
            assert requested() == "SIGUSR1"
        assert requested() == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is before
    with handle_preemption():
        assert requested() is None  # a new run starts unasked
    stop = Preempted("stopped after step 3")
    assert isinstance(stop, SystemExit) and stop.code == EXIT_PREEMPTED == 75 and str(stop) == "stopped after step 3"


@pytest.mark.filterwarnings("ignore:To exit")  # IPython's hint after any SystemExit in a cell
def test_in_a_notebook_kernel_the_cell_stops_and_the_kernel_lives_on():
    """IPython (the kernel's shell) reports ``Preempted`` as the cell's error, runs no more of it, and goes on."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        result = shell.run_cell("from workbench.core.preemption import Preempted\n"
                                "raise Preempted('SIGTERM received: distillation stopped after step 3')\n"
                                "after = True")
        assert not result.success and isinstance(result.error_in_exec, Preempted)
        assert "after" not in shell.user_ns and shell.run_cell("1 + 1").result == 2
    finally:
        InteractiveShell.clear_instance()


def task_log_lines(log: str) -> str:
    """The line that reports every student's test top-1."""
    finished = [line for line in log.splitlines() if line.startswith("finished: ")]
    assert len(finished) == 1, log
    return finished[0]


def task_history(out: Path) -> list[tuple]:
    records = read_jsonl(out / "history.jsonl")[0]
    return [(r["student"], r["seed"], r["step"], r["loss"], r.get("top1")) for r in records]


@pytest.fixture(scope="module")
def task_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("task-reference") / "run"
    log = Child(out, target=distill_child.run_task, test_only=False).finish()
    return out, task_log_lines(log)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_task_distillation_stops_after_the_step_and_the_rerun_ends_identical(task_reference, tmp_path, signum):
    """The signal lands in step 25 of the probed student: it saves itself after that step, the label-only
    student does not start, the process exits with 75; the rerun continues the probed student at step 26
    (drawing its batches again up to there) and trains the other: the same students as a run never stopped."""
    reference, finished = task_reference
    out, marker = tmp_path / "run", tmp_path / "records"
    child = Child(out, marker, target=distill_child.run_task, wait_for_signal_at=("probed", 25))
    child.signal_when(marker, lambda lines: "probed 25" in lines, signum)
    log = child.stops()
    assert (f"{signal.Signals(signum).name} received: task distillation stopped after the current steps: 0 of 2 "
            "students finished, probed (seed 0) at step 26 stopped mid-way, 1 not started") in log
    job = json.loads((out / "student_checkpoints" / "seed0-probed" / "job.json").read_text())
    assert (job["step"], job["finished"]) == (26, False)
    assert not (out / "student_checkpoints" / "seed0-labels").exists() and not (out / "students").exists()

    log = Child(out, target=distill_child.run_task).finish()
    assert task_log_lines(log) == finished
    assert task_history(out) == task_history(reference)
    for name in ("probed", "labels"):
        for file in ("student.safetensors", "head.safetensors"):
            a, b = load_tensors(out / "students" / name / file), load_tensors(reference / "students" / name / file)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (name, file)


@pytest.mark.slow
def test_task_distillation_in_worker_processes_stops_them_all_and_the_rerun_ends_identical(tmp_path):
    """workers=2: the signal reaches this process, which tells both worker processes; each student stops after
    the step it is in and saves itself; the rerun ends as a 2-worker run never stopped."""
    two_workers = dict(target=distill_child.run_task, workers=2, steps=200, daemon=False)
    reference = tmp_path / "reference"
    finished = task_log_lines(Child(reference, **two_workers).finish())
    out, marker = tmp_path / "run", tmp_path / "records"
    child = Child(out, marker, **two_workers)
    child.signal_when(marker, lambda lines: "probed 0" in lines and "labels 0" in lines, signal.SIGTERM)
    log = child.stops()
    assert "SIGTERM received: task distillation stopped after the current steps: " in log
    jobs = [json.loads(p.read_text()) for p in (out / "student_checkpoints").glob("seed0-*/job.json")]
    assert [j for j in jobs if not j["finished"] and 0 < j["step"] < 200], log  # one at least stopped mid-way

    assert task_log_lines(Child(out, **two_workers).finish()) == finished
    assert sorted(task_history(out)) == sorted(task_history(reference))  # two workers' records interleave
    for name in ("probed", "labels"):
        a, b = (load_tensors(d / "students" / name / "student.safetensors") for d in (out, reference))
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.fixture(scope="module")
def torchrun_env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                              "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
            **torchrun_signal_env()}


@pytest.fixture(scope="module")
def torchrun_reference(tmp_path_factory, torchrun_env):
    """A 2-rank run of 40 steps (one epoch), never stopped."""
    root = tmp_path_factory.mktemp("torchrun")
    cfg = DistillConfig(student="wb_vit_tiny_patch8_32", epochs=1, batch_size=16, seed=3, n_train=640, n_test=16,
                        ckpt_every=0)
    run_file = save_run_config(root / "run.yaml", cfg)
    out = root / "reference"
    done = subprocess.run(torchrun_command(run_file, 2, out, ["--random-teachers", "--log-every", "1"]),
                          env={**torchrun_env, "WORKBENCH_CACHE": str(root / "cache")}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return run_file, out


def final_state(out: Path) -> tuple[dict, list]:
    weights = {**load_tensors(out / "student" / "student.safetensors"),
               **load_tensors(out / "student" / "projectors.safetensors")}
    return weights, [(r["step"], r.get("loss"), r.get("val_loss")) for r in read_jsonl(out / "metrics.jsonl")[0]]


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.slow
@pytest.mark.parametrize("signum, to", [(signal.SIGTERM, "torchrun"), (signal.SIGUSR1, "torchrun"),
                                        (signal.SIGTERM, "ranks")], ids=["SIGTERM", "SIGUSR1", "SIGTERM-to-ranks"])
def test_torchrun_ranks_stop_after_one_step_and_the_rerun_ends_identical(torchrun_reference, torchrun_env, tmp_path,
                                                                        signum, to):
    """The signal goes to torchrun, which passes it on to both ranks (SIGUSR1 too: the launcher's environment
    asks it to), or to each rank directly (as a scheduler signals the processes of a job, not each at the same
    moment). The ranks agree on the step to stop after, rank 0 checkpoints there while the other waits, both
    exit with 75 (torchrun itself exits 1) and ``preempted.json`` names the step; a 2-rank rerun resumes there
    and ends bit for bit as the run never stopped."""
    run_file, reference = torchrun_reference
    out, env = tmp_path / "run", {**torchrun_env, "WORKBENCH_CACHE": str(tmp_path / "cache")}
    cmd = torchrun_command(run_file, 2, out, ["--random-teachers", "--log-every", "1"])
    with open(tmp_path / "stopped.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        t0 = time.time()
        while not [r for r in read_jsonl(out / "metrics.jsonl")[0] if r.get("step", 0) >= 2]:
            assert proc.poll() is None and time.time() - t0 < 300, (tmp_path / "stopped.log").read_text()
            time.sleep(0.02)
        for pid in children(proc.pid) if to == "ranks" else [proc.pid]:
            os.kill(pid, signum)
        proc.wait(300)
    text = (tmp_path / "stopped.log").read_text()
    assert proc.returncode != 0, text
    stopped = json.loads((out / "preempted.json").read_text())
    step = stopped["step"]
    assert 3 <= step < 40 and stopped["signal"] == signal.Signals(signum).name, text
    assert (f"{signal.Signals(signum).name} received: distillation stopped after step {step} (checkpoint at step "
            f"{step}: ") in text and f"exit code {EXIT_PREEMPTED}" in text
    assert [p.name for p in Checkpoints(out / "checkpoints").all()] == [f"step_{step:08d}"]  # ckpt_every=0: epochs
    assert not (out / "student").exists()
    if to == "ranks":  # torchrun saw its ranks end by themselves, and reports their codes
        assert len(re.findall(rf"exitcode\s+: {EXIT_PREEMPTED} \(pid", text)) == 2, text  # its table: one row a rank

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed from step {step} " in done.stdout + done.stderr
    assert not (out / "preempted.json").exists()
    (wa, ma), (wb_, mb) = final_state(out), final_state(reference)
    assert ma == mb
    assert wa.keys() == wb_.keys() and [k for k in wa if not torch.equal(wa[k], wb_[k])] == []


@pytest.mark.slow
def test_the_command_line_exits_75_when_preempted_and_its_rerun_resumes(torchrun_reference, torchrun_env, tmp_path):
    run_file, _ = torchrun_reference
    out, env = tmp_path / "run", {**torchrun_env, "WORKBENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "workbench", "distill", "--config", str(run_file), "--out", str(out),
           "--random-teachers", "--log-every", "1"]
    with open(tmp_path / "stopped.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        t0 = time.time()
        while not read_jsonl(out / "metrics.jsonl")[0]:
            assert proc.poll() is None and time.time() - t0 < 300, (tmp_path / "stopped.log").read_text()
            time.sleep(0.02)
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(300) == EXIT_PREEMPTED, (tmp_path / "stopped.log").read_text()
    step = json.loads((out / "preempted.json").read_text())["step"]
    assert "Traceback" not in (tmp_path / "stopped.log").read_text()  # a clean stop, one line about it
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and f"resumed from step {step} " in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_the_notebook_passes_a_signal_on_to_its_torchrun_processes_and_stops(torchrun_reference, torchrun_env, tmp_path,
                                                                            monkeypatch):
    """03 with nproc=2: the kernel (here, this process) gets SIGTERM while it follows torchrun; it passes it on,
    the ranks checkpoint and stop, and the cell stops with ``Preempted``; launched again, the run resumes and
    ends as the run never stopped."""
    run_file, reference = torchrun_reference
    for name, value in {**torchrun_env, "WORKBENCH_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    out, args = tmp_path / "run", ["--random-teachers", "--log-every", "1"]
    handler = signal.getsignal(signal.SIGTERM)

    def signal_at_step_2(record):
        if record.get("step") == 2 and "loss" in record:
            os.kill(os.getpid(), signal.SIGTERM)  # launch_distill records it: this process does not die

    with pytest.raises(Preempted, match=r"SIGTERM received: distillation with 2 processes stopped after step \d+ "):
        launch_distill(run_file, out, 2, callback=signal_at_step_2, log=lambda *_: None, poll_s=0.05, extra=args)
    assert signal.getsignal(signal.SIGTERM) is handler
    step = json.loads((out / "preempted.json").read_text())["step"]
    assert [p.name for p in Checkpoints(out / "checkpoints").all()] == [f"step_{step:08d}"]

    run = launch_distill(run_file, out, 2, log=lambda *_: None, poll_s=0.05, extra=args)
    assert run.resumed_from == step
    (wa, ma), (wb_, mb) = final_state(out), final_state(reference)
    assert ma == mb and [k for k in wa if not torch.equal(wa[k], wb_[k])] == []


# ----------------------------------------------------------------------------- generation

@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-sd")
    build_tiny_pipeline(folder)
    return folder, load_pipeline(str(folder), "cpu")


def gen_config(folder) -> GenerateConfig:
    """9 images in 5 batches of 2 (the last of 1)."""
    return GenerateConfig.from_params(classes="n01440764,n02869837,n01443537", images_per_class=3, steps=2,
                                      resolution=32, images_per_call=2, model=str(folder), device="cpu", seed=0)


def images_of(out: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(out.glob("*/*.png"))}


def test_generation_finishes_its_batch_on_sigterm_and_the_rerun_completes_it(tmp_path, tiny_pipe, monkeypatch):
    folder, pipe = tiny_pipe
    cfg = gen_config(folder)
    generate(cfg, tmp_path / "reference", pipe=pipe, log=None)
    calls, real_run_batch = [], writer.run_batch

    def run_batch(pipe, jobs, settings):  # SIGTERM to this process while the second batch is computed
        calls.append(len(jobs))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_run_batch(pipe, jobs, settings)

    monkeypatch.setattr(writer, "run_batch", run_batch)
    handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "clone"
    with pytest.raises(Preempted) as stop:
        generate(cfg, out, pipe=pipe, log=None)
    assert stop.value.code == EXIT_PREEMPTED and len(calls) == 2
    assert ("SIGTERM received: generation of shard 0/1 stopped after batch 2/5 (4 of its 9 images written"
            in str(stop.value))
    assert signal.getsignal(signal.SIGTERM) is handler  # the test process's own handler is back
    reference, written = images_of(tmp_path / "reference"), images_of(out)
    assert len(written) == 4 and all(reference[f] == data for f, data in written.items())  # whole, as never stopped
    assert len(read_manifest(out)) == 4 and not list(out.rglob("*.tmp"))

    monkeypatch.setattr(writer, "run_batch", real_run_batch)
    generate(cfg, out, pipe=pipe, log=None)
    assert images_of(out) == reference
    assert [r["file"] for r in read_manifest(out)] == [r["file"] for r in read_manifest(tmp_path / "reference")]


# ----------------------------------------------------------------------------- one writer per folder

class Holder:
    """Another process that holds a workbench lock of ``folder`` until it is killed."""

    def __init__(self, folder: Path, name: str = ".workbench.lock"):
        ready = folder.parent / f"{folder.name}-{name}.held"
        self.proc = CTX.Process(target=distill_child.hold_lock, args=(str(folder), name, str(ready)), daemon=True)
        self.proc.start()
        t0 = time.time()
        while not ready.exists():
            assert self.proc.is_alive() and time.time() - t0 < 120
            time.sleep(0.01)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(60)


def test_a_folder_held_by_a_live_process_is_refused_naming_it_and_freed_by_its_death(tmp_path):
    out = tmp_path / "run"
    prepare_out_dir(out, {"a": 1}, kind="test")
    holder = Holder(out)
    named = f"in use by another run: pid {holder.proc.pid} on host {socket.gethostname()}, started "
    with pytest.raises(OutDirBusy, match=re.escape(named) + r".*a test holder.*Wait for that run to finish"):
        prepare_out_dir(out, {"a": 1}, kind="test")  # the notebook opened twice: its claim cell
    with pytest.raises(OutDirBusy, match=re.escape(named)):
        prepare_out_dir(out, {"a": 1}, overwrite=True, kind="test")  # and never cleared under the holder
    with pytest.raises(OutDirBusy, match="refusing to clear .* a live run is writing there"):
        clear_out_dir(out)
    assert (out / "run.json").is_file()
    holder.kill()  # SIGKILL: the OS releases its lock; the lock file stays and does not block
    assert (out / ".workbench.lock").is_file()
    with hold_lock(out), hold_lock(out):  # free at once; re-entrant in one process
        assert prepare_out_dir(out, {"a": 1}, kind="test") == out


def test_two_processes_on_one_shard_are_refused_and_other_shards_write_alongside(tmp_path, tiny_pipe):
    folder, pipe = tiny_pipe
    cfg, out = gen_config(folder), tmp_path / "clone"
    holder = Holder(out, shard_lock_name(Shard(0, 2)))
    with pytest.raises(OutDirBusy, match=f"{re.escape(str(out.resolve()))} \\(workbench-shard-00000-of-00002\\) is in "
                                         f"use by another run: pid {holder.proc.pid} "):
        generate(cfg, out, shard=Shard(0, 2), pipe=pipe, log=None)
    assert generate(cfg, out, shard=Shard(1, 2), pipe=pipe, log=None).generated == 4  # batches 1 and 3
    holder.kill()
    assert generate(cfg, out, shard=Shard(0, 2), pipe=pipe, log=None).generated == 5


# ----------------------------------------------------------------------------- a full disk

class FullDisk:
    """From the ``after + 1``-th write to a file whose path contains ``match``, the disk refuses (``code``)."""

    def __init__(self, monkeypatch, match: str, after: int = 0, code: int = errno.ENOSPC):
        if not Path("/proc/self/fd").is_dir():
            pytest.skip("needs /proc (Linux) to see which file a descriptor writes")
        self.match, self.after, self.code, self.seen, self.on = match, after, code, 0, True
        real_write, real_save = os.write, wio.save_file

        def write(fd, data):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if self.refuses(target):
                real_write(fd, bytes(data[: len(data) // 2]))  # what still fitted
                raise OSError(self.code, os.strerror(self.code))
            return real_write(fd, data)

        def save_file(tensors, filename, metadata=None):  # the message safetensors 0.8 gives (seen with EFBIG)
            if self.refuses(str(filename)):
                raise SafetensorError(f"Error while serializing: I/O error: {os.strerror(self.code)} "
                                      f"(os error {self.code})")
            return real_save(tensors, filename, metadata=metadata)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(wio, "save_file", save_file)

    def refuses(self, path: str) -> bool:
        if not self.on or self.match not in path:
            return False
        self.seen += 1
        return self.seen > self.after

    def freed(self) -> None:
        self.on = False


NO_SPACE = r"no space left on the device \([\d.]+ [KMGT]?B free of [\d.]+ [KMGT]?B on the file system of /"


def tiny_distill(out: Path, **overrides):
    torch.manual_seed(0)
    teachers = {n: wb.create_teacher(n, pretrained=False) for n in ("world_colour", "world_shape")}
    data = wb.load_data("world", n_train=48, n_test=16)
    cfg = DistillConfig(**{**dict(epochs=1, batch_size=8, student="wb_vit_tiny_patch8_32", seed=3, ckpt_every=2,
                                  keep_checkpoints=3), **overrides})
    return distill(cfg, data, teachers, out_dir=out, log_every=1, log=lambda *_: None)


def no_temporary_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_full_disk_at_a_checkpoint_stops_the_run_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    disk = FullDisk(monkeypatch, ".optimizer.safetensors.", after=1)  # the second checkpoint (step 4)
    with pytest.raises(DiskWriteError, match=re.escape(f"cannot write {out / 'checkpoints' / 'step_00000004'}/"
                                                       "optimizer.safetensors: ") + NO_SPACE) as err:
        tiny_distill(out)
    assert "everything written before (the last checkpoint, finished files) is intact" in str(err.value)
    ckpts = Checkpoints(out / "checkpoints")
    assert [p.name for p in ckpts.all()] == ["step_00000002"] and no_temporary_files(out)
    load_student(ckpts.latest())
    assert load_train_state(ckpts.latest())[0].step == 2

    disk.freed()
    assert tiny_distill(out).resumed_from == 2


def test_a_full_disk_at_a_metrics_line_stops_the_run_with_whole_lines_only(tmp_path, monkeypatch):
    out = tmp_path / "run"
    disk = FullDisk(monkeypatch, "metrics.jsonl", after=4)  # step 4's line, half written
    with pytest.raises(DiskWriteError, match=re.escape(f"cannot write {out / 'metrics.jsonl'}: ") + NO_SPACE):
        tiny_distill(out)
    records, bad = read_jsonl(out / "metrics.jsonl")
    assert bad == 0 and [r["step"] for r in records] == [0, 1, 2, 3]  # the cut line was taken back
    assert [p.name for p in Checkpoints(out / "checkpoints").all()] == ["step_00000002", "step_00000004"]
    disk.freed()
    run = tiny_distill(out)
    assert run.resumed_from == 4
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")[0] if "loss" in r] == list(range(6))


def test_a_full_disk_at_an_image_stops_generation_and_keeps_every_finished_image(tmp_path, tiny_pipe, monkeypatch):
    folder, pipe = tiny_pipe
    cfg, out = gen_config(folder), tmp_path / "clone"
    disk = FullDisk(monkeypatch, ".png.", after=2)  # the third image: the first of the second batch
    third = out / "n01440764" / "00002.png"
    with pytest.raises(DiskWriteError, match=re.escape(f"cannot write {third}: ") + NO_SPACE):
        generate(cfg, out, pipe=pipe, log=None)
    assert sorted(images_of(out)) == ["n01440764/00000.png", "n01440764/00001.png"] and no_temporary_files(out)
    for path in out.glob("*/*.png"):
        with Image.open(path) as im:
            im.load()
    assert [r["file"] for r in read_manifest(out)] == sorted(images_of(out))
    disk.freed()
    generate(cfg, out, pipe=pipe, log=None)
    assert len(images_of(out)) == len(read_manifest(out)) == 9


def test_a_full_disk_at_a_manifest_line_keeps_the_images_and_the_rerun_records_them(tmp_path, tiny_pipe,
                                                                                    monkeypatch):
    folder, pipe = tiny_pipe
    cfg, out = gen_config(folder), tmp_path / "clone"
    disk = FullDisk(monkeypatch, "manifest-", after=1)  # the second batch's lines
    manifest = out / "manifest-00000-of-00001.jsonl"
    with pytest.raises(DiskWriteError, match=re.escape(f"cannot write {manifest}: ") + NO_SPACE):
        generate(cfg, out, pipe=pipe, log=None)
    records, bad = read_jsonl(manifest)
    assert bad == 0 and [r["file"] for r in records] == ["n01440764/00000.png", "n01440764/00001.png"]
    assert len(images_of(out)) == 4 and no_temporary_files(out)  # the second batch's images were written first
    disk.freed()
    generate(cfg, out, pipe=pipe, log=None)
    assert [r["file"] for r in read_manifest(out)] == sorted(images_of(out)) and len(images_of(out)) == 9


@pytest.mark.parametrize("code, says", [(errno.ENOSPC, "no space left on the device"),
                                        (errno.EDQUOT, "disk quota exceeded"),
                                        (errno.EROFS, "the file system is read-only")])
def test_a_refused_summary_keeps_the_previous_one(tmp_path, monkeypatch, code, says):
    path = tmp_path / "out" / "summary.json"
    save_json({"top1": 1.0}, path)
    FullDisk(monkeypatch, "summary.json", code=code)
    with pytest.raises(DiskWriteError, match=re.escape(f"cannot write {path}: {says} (")) as err:
        wb.save_json({"top1": 2.0}, path)  # what every notebook's last cell does
    assert err.value.errno == code and isinstance(err.value, OSError)
    assert json.loads(path.read_text()) == {"top1": 1.0} and no_temporary_files(tmp_path)


@pytest.mark.parametrize("error, code", [(DiskWriteError("/runs/x/metrics.jsonl", errno.ENOSPC), 1),
                                         (OutDirBusy("/runs/x is in use by another run: pid 7 on host h"), 2)])
def test_the_command_line_says_it_in_one_line(tmp_path, monkeypatch, capsys, error, code):
    """``python -m workbench``: a refused write or a busy out_dir is one line, not a traceback."""
    from workbench.__main__ import main

    def refused(*args, **kwargs):
        raise error

    monkeypatch.setattr(sys.modules["workbench.__main__"], "run_distill", refused)
    assert main(["distill", "--config", str(tmp_path / "run.yaml")]) == code
    assert capsys.readouterr().err == f"{type(error).__name__}: {error}\n"


@pytest.mark.parametrize("process_exits, code", [(True, EXIT_PREEMPTED), (False, -signal.SIGTERM)])
def test_a_stopped_command_line_run_ignores_signals_while_it_exits(process_exits, code):
    """A command line's run that stopped (``Preempted``) exits with 75 even when another SIGTERM comes as it exits
    (torchrun sends one to every rank still running once one rank has ended); elsewhere (a notebook kernel) the
    previous handlers come back, and the same late SIGTERM kills as before."""
    script = ("import os, signal\n"
              "from workbench.core.preemption import Preempted, handle_preemption\n"
              "try:\n"
              f"    with handle_preemption(process_exits={process_exits}):\n"
              "        raise Preempted('stopped after step 3')\n"
              "finally:\n"
              "    os.kill(os.getpid(), signal.SIGTERM)  # the late signal, after the block\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(wb.__file__).parents[1]),
                                                                             os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == code, proc.stderr
