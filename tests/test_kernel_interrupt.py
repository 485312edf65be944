"""The notebook's stop button: JupyterLab's square (``KernelManager.interrupt_kernel``, SIGINT to the kernel's
process group) during 01's generation, 03's or 05's training stops the cell at the next step boundary with a
checkpoint, as SIGTERM does (workbench/core/preemption.py); rerunning the cell in the same kernel resumes and ends as
a run never stopped. A second press stops at once. The slow tests run the notebooks' own cells (parameters injected
as papermill injects them, sizes of tests/test_papermill_preemption.py) in a real IPython kernel; the others check
``handle_preemption`` in this process, which is no kernel: there Ctrl-C stays Python's own.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from jupyter_client import KernelManager
from notebook_cells import ROOT, cache_with_user_teachers, code_cells
from PIL import Image

from workbench.core.files import load_tensors
from workbench.core.preemption import (
    EXIT_PREEMPTED,
    handle_preemption,
    in_kernel,
    interrupts_recorded,
    requested,
    watch_parent,
)

NOTEBOOKS = ROOT / "notebooks"

# 03 at CI size (tests/test_papermill_preemption.py): 3 epochs of 8 steps, a checkpoint every 3 steps; the test
# interrupts once the first one is on disk.
PARAMS_03 = {"n_train": 256, "n_test": 64, "epochs": 3, "batch_size": 32, "ckpt_every": 3}
STEPS_03 = 24
# 05: one seed, two students trained side by side in two worker processes (the default on two cores), which get
# the interrupt too (it goes to the kernel's process group).
PARAMS_05 = {"n_train": 256, "n_test": 64, "labels_per_class": 3, "students": "probed,labels", "student_steps": 60,
             "batch_size": 16, "finetune_steps": 2, "repeats": 1, "workers": 2}
# 01: 3 world classes x 4 images in 6 batches of 2, a few denoising steps of the shipped offline-world model.
PARAMS_01 = {"classes": "red_circle,blue_square,green_triangle", "images_per_class": 4, "images_per_call": 2,
             "steps": 4}
STOP = re.compile(rf"SIGINT received: (.+); exit code {EXIT_PREEMPTED}\. (Rerun .+\.)")


# ----------------------------------------------------------------------------- outside a kernel

def test_outside_a_kernel_sigint_still_interrupts_at_once():
    """A script or the command line: ``handle_preemption`` leaves SIGINT alone, Ctrl-C raises KeyboardInterrupt
    where the code is, and nothing is recorded."""
    before = signal.getsignal(signal.SIGINT)
    assert not in_kernel()
    with handle_preemption():
        assert signal.getsignal(signal.SIGINT) is before and not interrupts_recorded()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # interrupted at once
        assert requested() is None
    assert signal.getsignal(signal.SIGINT) is before


def test_in_a_kernel_the_first_interrupt_is_recorded_and_a_second_one_stops_at_once(monkeypatch):
    """The same in a kernel (``in_kernel`` made true here): the first SIGINT is recorded like SIGTERM, the second
    goes to the handler the kernel had (KeyboardInterrupt), and that handler comes back after the run."""
    import workbench.core.preemption as preemption

    monkeypatch.setattr(preemption, "in_kernel", lambda: True)
    before = signal.getsignal(signal.SIGINT)
    with handle_preemption():
        assert interrupts_recorded()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # not interrupted
        assert requested() == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGINT) is before
    with handle_preemption():  # a new run starts unasked
        assert requested() is None
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # SIGTERM first: this is the first interrupt, recorded
        time.sleep(0.01)
        assert requested() == "SIGTERM"
    assert signal.getsignal(signal.SIGINT) is before


def test_a_worker_process_records_the_interrupt_its_parent_acts_on(monkeypatch):
    """A pool worker (``workbench.core.parallel``) gets the interrupt the kernel's process group gets: it records it
    and stops after its step, as its parent does."""
    import workbench.core.preemption as preemption

    monkeypatch.setattr(preemption, "_shared_stop", None)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    try:
        watch_parent(None)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert requested() == "SIGINT"
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        preemption._received.clear()


# ----------------------------------------------------------------------------- a kernel, interrupted

class Kernel:
    """An IPython kernel started as JupyterLab starts one (jupyter_client), and what its cells print."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env=env)
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.output = ""  # the streams of every cell so far
        self.displays = 0  # display messages so far (a live plot's first one: training has begun)
        self.idle: set[str] = set()  # the cells (execute msg_ids) whose kernel went idle: their output is all read

    def run(self, code: str, *presses, timeout: float = 300) -> dict:
        """Run ``code`` as a cell; press the stop button once each of ``presses`` (predicates, in turn) holds. Returns
        the execute reply's content (status, and ename and evalue of an error), with ``stopped_s``: the seconds from
        the last press to the reply."""
        msg_id, t0, pressed = self.kc.execute(code), time.time(), []
        while True:
            self._read_iopub()
            if len(pressed) < len(presses) and presses[len(pressed)]():
                self.km.interrupt_kernel()
                pressed.append(time.time())
            try:
                reply = self.kc.get_shell_msg(timeout=0.05)
            except queue.Empty:
                if time.time() - t0 > timeout:
                    pytest.fail(f"the cell did not end in {timeout}s; its output:\n{self.output[-3000:]}")
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        self._read_iopub(until_idle=msg_id, deadline=time.time() + 60)
        content = reply["content"]
        assert len(pressed) == len(presses), f"the cell ended before press {len(pressed) + 1}:\n{self.output[-3000:]}"
        if presses:
            content["stopped_s"] = time.time() - pressed[-1]
        return content

    def ok(self, code: str, timeout: float = 300) -> None:
        content = self.run(code, timeout=timeout)
        assert content["status"] == "ok", f"{content.get('ename')}: {content.get('evalue')}\n{self.output[-3000:]}"

    def _read_iopub(self, until_idle: str | None = None, deadline: float = 0.0) -> None:
        """Read what the kernel published; with ``until_idle``, until that cell's idle status (which the reading
        while it ran may have met already: the status and the shell reply race)."""
        while until_idle is None or until_idle not in self.idle:
            try:
                msg = self.kc.get_iopub_msg(timeout=1 if until_idle else 0)
            except queue.Empty:
                if until_idle is None:
                    return
                if time.time() > deadline:
                    pytest.fail(f"no idle status from the kernel after the cell's reply:\n{self.output[-3000:]}")
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                self.output += content["text"]
            elif kind in ("display_data", "update_display_data"):
                self.displays += 1
            elif kind == "status" and content["execution_state"] == "idle":
                self.idle.add(msg["parent_header"].get("msg_id"))

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder for the kernels to run in and their environment: this checkout on the path, a cache of its own (with
    this machine's offline teachers, where it has them), one thread, fp32."""
    root = tmp_path_factory.mktemp("kernels")
    cache_with_user_teachers(root / "cache")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "WORKBENCH_CACHE": str(root / "cache"), "WORKBENCH_SHARE_CORES": "0", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "WORKBENCH_NATIVE_BF16": "0"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return root, env


def cells_up_to_training(notebook: str, params: dict, training: int) -> tuple[list[str], str]:
    """The notebook's code cells before its training cell (number ``training``), the parameters injected after the
    first as papermill injects them, and the training cell."""
    cells = code_cells(NOTEBOOKS / notebook)
    injected = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
    return [cells[0], injected, *cells[1:training]], cells[training]


def kernel_ready(workspace, notebook: str, params: dict, training: int) -> tuple[Kernel, str]:
    root, env = workspace
    kernel = Kernel(root, env)
    before, cell = cells_up_to_training(notebook, params, training)
    for source in before:
        kernel.ok(source)
    return kernel, cell


def uninterrupted(workspace, notebook: str, params: dict, training: int) -> None:
    kernel, cell = kernel_ready(workspace, notebook, params, training)
    try:
        kernel.ok(cell, timeout=600)
    finally:
        kernel.close()


def stopped(content: dict, kernel: Kernel, printed: bool = True) -> re.Match:
    """The cell stopped with ``Preempted``, the one-line message (``printed`` too) saying how to continue, promptly."""
    assert content["status"] == "error" and content["ename"] == "Preempted", (content, kernel.output[-3000:])
    line = STOP.fullmatch(content["evalue"])
    assert line, content["evalue"]
    assert not printed or content["evalue"] in kernel.output
    assert content["stopped_s"] < 60  # the step and the checkpoint, not the run
    assert kernel.km.is_alive()
    return line


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2], ids=["in-the-kernel", "torchrun"])
def test_the_stop_button_stops_03_after_a_step_with_a_checkpoint_and_the_rerun_ends_identical(workspace, nproc):
    """In the kernel's process, or in two torchrun ranks the kernel follows (nproc=2): torchrun is in the kernel's
    process group and gets the interrupt too, but only the kernel acts on it, passing SIGTERM on to the ranks."""
    root, _ = workspace
    params = {**PARAMS_03, "nproc": nproc}
    reference, out = root / f"03-{nproc}-reference", root / f"03-{nproc}-run"
    uninterrupted(workspace, "03_distill.ipynb", {**params, "out_dir": str(reference)}, training=4)

    kernel, cell = kernel_ready(workspace, "03_distill.ipynb", {**params, "out_dir": str(out)}, training=4)
    try:
        content = kernel.run(cell, (out / "checkpoints" / "step_00000003").is_dir)
        line = stopped(content, kernel, printed=nproc == 1)
        processes = " with 2 processes" if nproc > 1 else ""
        found = re.fullmatch(rf"distillation{processes} stopped after step (\d+) \(checkpoint at step \1: (.+)\)",
                             line[1])
        assert found, line[0]
        step, where = int(found[1]), Path(found[2])
        assert PARAMS_03["ckpt_every"] <= step < STEPS_03  # stopped mid-training...
        assert where == out / "checkpoints" / f"step_{step:08d}" and (where / "config.json").is_file()
        marker = json.loads((out / "preempted.json").read_text())  # ...with a checkpoint of that step
        assert (marker["step"], marker["checkpoint"]) == (step, str(where))
        assert marker["signal"] == ("SIGINT" if nproc == 1 else "SIGTERM")  # what the ranks got from the kernel
        assert not (out / "student").exists()
        assert line[2] == "Rerun the same command (or notebook cell) with the same out_dir to resume."

        kernel.ok(cell, timeout=600)  # the same cell again, in the same kernel
        kernel.ok(f"assert run.resumed_from == {step}, run.resumed_from")
    finally:
        kernel.close()
    assert not (out / "preempted.json").exists()
    history = [[{k: v for k, v in json.loads(line).items() if k != "time_s"}
                for line in (d / "history.jsonl").read_text().splitlines()] for d in (out, reference)]
    assert history[0] == history[1]
    a, b = (load_tensors(d / "student" / "student.safetensors") for d in (out, reference))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


def task_jobs(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "student_checkpoints").glob("*/job.json")}


@pytest.mark.slow
def test_the_stop_button_stops_05_after_a_step_with_its_students_saved_and_the_rerun_ends_identical(workspace):
    root, _ = workspace
    reference, out = root / "05-reference", root / "05-run"
    uninterrupted(workspace, "05_task_distill.ipynb", {**PARAMS_05, "out_dir": str(reference)}, training=3)

    kernel, cell = kernel_ready(workspace, "05_task_distill.ipynb", {**PARAMS_05, "out_dir": str(out)}, training=3)
    try:
        shown = kernel.displays
        content = kernel.run(cell, lambda: kernel.displays > shown)  # the live plot's first records
        line = stopped(content, kernel)
        assert line[1].startswith("task distillation stopped after the current steps: "), line[0]
        jobs = task_jobs(out)
        midway = {name: job["step"] for name, job in jobs.items() if not job["finished"]}
        assert midway and all(0 < step < PARAMS_05["student_steps"] for step in midway.values()), (jobs, line[0])
        for name, step in midway.items():  # the message names each student's step, its checkpoint holds it
            assert f"{name.split('-', 1)[1]} (seed 0) at step {step}" in line[0]
        assert f"saved in {out / 'student_checkpoints'}" in line[0] and not (out / "students").exists()
        assert line[2] == "Rerun the same command (or notebook cell) with the same out_dir to resume."

        kernel.ok(cell, timeout=600)
    finally:
        kernel.close()
    assert all(job["finished"] for job in task_jobs(out).values())
    for name in PARAMS_05["students"].split(","):
        for file in ("student.safetensors", "head.safetensors"):
            a, b = (load_tensors(d / "students" / name / file) for d in (out, reference))
            assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == [], (name, file)
    history = [sorted(json.dumps({k: v for k, v in json.loads(line).items() if k != "time_s"}, sort_keys=True)
                      for line in (d / "history.jsonl").read_text().splitlines()) for d in (out, reference)]
    assert history[0] == history[1]  # two workers' records interleave: compared as sets


def clone_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.png"))}


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.glob("manifest-*.jsonl")) for line in p.read_text().splitlines()]


@pytest.mark.slow
def test_the_stop_button_stops_01_after_a_batch_with_whole_images_and_the_rerun_completes_the_clone(workspace):
    root, _ = workspace
    reference, out = root / "01-reference", root / "01-run"
    uninterrupted(workspace, "01_synthetic_imagenet.ipynb", {**PARAMS_01, "out_dir": str(reference)}, training=5)
    expected = clone_files(reference)
    assert len(expected) == 12

    kernel, cell = kernel_ready(workspace, "01_synthetic_imagenet.ipynb", {**PARAMS_01, "out_dir": str(out)},
                                training=5)
    try:
        content = kernel.run(cell, lambda: bool(manifest_lines(out)))  # a batch written
        line = stopped(content, kernel)
        found = re.fullmatch(r"generation of shard 0/1 stopped after batch (\d+)/6 \((\d+) of its 12 images "
                             r"written, each whole, with its manifest line\)", line[1])
        assert found, line[0]
        written = int(found[2])
        assert 2 <= written < 12 and written == 2 * int(found[1])
        assert line[2] == "Rerun the same command (or notebook cell) to continue with the next batch."
        files = clone_files(out)
        records = manifest_lines(out)  # every line parses...
        assert sorted(r["file"] for r in records) == sorted(files) and len(files) == written  # ...one per image
        assert [p for p in out.rglob("*") if p.is_file() and ".tmp" in p.name] == []
        for name, data in files.items():  # each image whole: it decodes, and is the uninterrupted clone's
            with Image.open(out / name) as image:
                image.load()
            assert data == expected[name], name

        kernel.ok(cell, timeout=600)
    finally:
        kernel.close()
    assert clone_files(out) == expected
    assert sorted(r["file"] for r in manifest_lines(out)) == sorted(expected)


@pytest.mark.slow
def test_a_second_press_of_the_stop_button_stops_at_once(workspace):
    """The first press asks for a stop after the step; a second one while the run finishes that step (or writes its
    checkpoint) interrupts it where it is, KeyboardInterrupt, and the kernel lives on with its own handler back."""
    root, env = workspace
    running, asked = root / "running", root / "asked"
    kernel = Kernel(root, env)
    try:
        content = kernel.run("import signal, time\n"
                             "from workbench.core.preemption import handle_preemption, requested\n"
                             "with handle_preemption():\n"
                             f"    open({str(running)!r}, 'w').close()\n"
                             "    while not requested():  # training\n"
                             "        time.sleep(0.01)\n"
                             f"    open({str(asked)!r}, 'w').close()\n"
                             "    time.sleep(120)  # the last step, the checkpoint: long\n",
                             running.exists, asked.exists)
        assert content["status"] == "error" and content["ename"] == "KeyboardInterrupt", content
        assert content["stopped_s"] < 10 and kernel.km.is_alive()
        kernel.ok("assert signal.getsignal(signal.SIGINT) is signal.default_int_handler")  # the kernel's, in a cell
    finally:
        kernel.close()
