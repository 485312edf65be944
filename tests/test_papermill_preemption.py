"""Papermill runs preempt like command-line runs (workbench/core/notebook_engine.py): a signal to the papermill
process reaches the kernel, the training step finishes, the checkpoint and ``preempted.json`` are written and
papermill exits with 75 and one line; a second signal stops at once. The slow tests run papermill itself, as a
scheduler's job does, and signal it; the others check the engine's parts in this process.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill
import pytest
import torch
from notebook_cells import cache_with_user_teachers
from papermill.engines import NBClientEngine, papermill_engines

from workbench.core.files import load_tensors
from workbench.core.notebook_engine import WorkbenchEngine, _Stop
from workbench.core.preemption import EXIT_PREEMPTED

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_03 = ROOT / "notebooks" / "03_distill.ipynb"

# 03 at CI size: 3 epochs of 8 steps, a checkpoint every 3 steps; the test signals once the first one (step 3) is on
# disk, which leaves the run most of its 24 steps to be caught in.
PARAMS_03 = {"n_train": 256, "n_test": 64, "epochs": 3, "batch_size": 32, "ckpt_every": 3}
STEPS_03 = 24
FIRST_CHECKPOINT = "step_00000003"
STOP_LINE = re.compile(r"SIGTERM received: distillation stopped after step (\d+) \(checkpoint at step \1: (.+)\); "
                       rf"exit code {EXIT_PREEMPTED}\. Rerun the same command \(or notebook cell\) with the same "
                       r"out_dir to resume\.")


def papermill_command(notebook: Path, output: Path, params: dict | None = None) -> list[str]:
    """The command a job script runs (plain ``papermill``: no ``--engine``)."""
    pairs = [a for k, v in (params or {}).items() for a in ("-p", k, str(v))]
    return [sys.executable, "-m", "papermill", "--no-progress-bar", str(notebook), str(output), *pairs]


def start(command: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def signal_when(proc: subprocess.Popen, ready, signum: int, timeout: float = 240) -> None:
    """Send ``signum`` to papermill (not to its kernel) as soon as ``ready()`` holds."""
    t0 = time.time()
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"papermill ended (exit code {proc.returncode}) before the signal point:\n{err}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail("the signal point was never reached")
        time.sleep(0.02)
    os.kill(proc.pid, signum)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"papermill did not end in {timeout}s:\n{err}")
    return proc.returncode, out, err


def last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else ""


def notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def alive(pid: int) -> bool:
    """The process exists and is no zombie (an orphan's parent may be slow to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# ----------------------------------------------------------------------------- the engine's parts, in this process

def test_papermill_runs_notebooks_with_the_workbench_engine_by_default():
    assert papermill_engines.get_engine(None) is WorkbenchEngine  # plain `papermill nb out`
    assert papermill_engines.get_engine("workbench") is WorkbenchEngine  # --engine workbench
    assert papermill_engines.get_engine("nbclient") is NBClientEngine  # papermill's own, by its name


@pytest.mark.slow
def test_the_engine_is_the_default_when_it_is_imported_before_papermill():
    """The module imports papermill, whose entry point then finds it half-loaded. (This process imported papermill
    first, as the papermill command does: the test above.)"""
    subprocess.run([sys.executable, "-c", "import workbench.core.notebook_engine as m\n"
                    "from papermill.engines import papermill_engines as e\n"
                    "assert e.get_engine(None) is e.get_engine('workbench') is m.WorkbenchEngine, e._engines"],
                   check=True, timeout=120)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT], ids=lambda s: s.name)
def test_the_first_signal_goes_to_the_kernel_as_sigterm_and_the_handlers_come_back(signum):
    """Whichever papermill gets, the kernel gets SIGTERM, the signal a workbench kernel stops after a step on."""
    stop = _Stop()
    manager = stop.kernel_manager_class("jupyter_client.AsyncKernelManager")()  # as nbclient makes it
    assert stop.kernels == [manager]
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    stop.kernels[:] = [SimpleNamespace(provisioner=SimpleNamespace(process=kernel, pgid=kernel.pid))]  # started
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    try:
        with stop.handling():
            os.kill(os.getpid(), signum)  # handled between two bytecodes of this thread
            assert kernel.wait(30) == -signal.SIGTERM
    finally:
        kernel.kill()
    assert stop.signals == [signum]
    assert {s: signal.getsignal(s) for s in before} == before  # e.g. KeyboardInterrupt again after the notebook
    assert f"{signum.name} received: the notebook stopped before its first cell; exit code 75" in stop.stopped_message()


# ----------------------------------------------------------------------------- papermill, signalled

@pytest.mark.slow
def test_notebooks_that_end_or_fail_get_papermills_own_behaviour(tmp_path):
    """Compared with papermill's own engine: the same output notebook, the same error (timings aside)."""
    ok = notebook(tmp_path / "ok.ipynb", "x = 6 * 7\nprint(x)", "x")
    bad = notebook(tmp_path / "bad.ipynb", "print('before')", "raise ValueError('no good')", "print('never')")
    results = {}
    for name in (None, "nbclient"):
        out = tmp_path / f"{name}.ipynb"
        papermill.execute_notebook(str(ok), str(out), engine_name=name, progress_bar=False)
        with pytest.raises(papermill.PapermillExecutionError) as error:
            papermill.execute_notebook(str(bad), str(out.with_suffix(".bad.ipynb")), engine_name=name,
                                       progress_bar=False)
        results[name] = (untimed(out), untimed(out.with_suffix(".bad.ipynb")), str(error.value))
    assert results[None] == results["nbclient"]
    assert results[None][0]["cells"][1]["outputs"][0]["data"]["text/plain"] == ["42"]


def untimed(path: Path) -> dict:
    """An output notebook without what differs from one run to the next (times, paths of this test's runs)."""
    nb = json.loads(path.read_text())
    nb["metadata"].pop("papermill")
    for cell in nb["cells"]:
        cell["metadata"].pop("papermill", None)
        cell["metadata"].pop("execution", None)
        if "papermill-error-cell-tag" in cell["metadata"].get("tags", []):
            cell.pop("id")  # the cells papermill adds before a failed cell have random ids
    return nb


@pytest.mark.slow
def test_sigint_stops_a_notebook_out_of_training_with_75_and_one_line(tmp_path):
    """Ctrl-C on a kernel that is not training (it sleeps): the kernel dies of the forwarded SIGTERM at once, and
    papermill says so in one line, with no zmq traceback, and saves the output notebook."""
    marker = tmp_path / "sleeping"
    nb = notebook(tmp_path / "sleep.ipynb", "print('first')",
                  f"import time\nopen({str(marker)!r}, 'w').close()\ntime.sleep(120)", "print('never')")
    out = tmp_path / "out.ipynb"
    proc = start(papermill_command(nb, out))
    signal_when(proc, marker.exists, signal.SIGINT)
    t0 = time.time()
    code, _, err = finish(proc, timeout=60)
    assert code == EXIT_PREEMPTED, err
    assert time.time() - t0 < 20  # nbclient sees the dead kernel within a second or two
    assert last_line(err) == ("SIGINT received: the notebook stopped in cell 2, its kernel not in a step it could "
                              "finish first; exit code 75. Rerun it with the same out_dir to resume: workbench "
                              "notebooks reload the work they finished.")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "zmq" not in err
    saved = json.loads(out.read_text())
    assert saved["cells"][0]["outputs"][0]["text"] == ["first\n"] and not saved["cells"][2]["outputs"]


@pytest.mark.slow
def test_a_second_signal_kills_the_kernel_and_stops_at_once(tmp_path):
    """The kernel takes the first signal but runs on (it ignores SIGTERM here); the second one kills it and all it
    started, and papermill exits with 128 + the signal without waiting for anything."""
    marker = tmp_path / "pids"
    nb = notebook(tmp_path / "stubborn.ipynb",
                  "import os, signal, subprocess, sys, time\n"
                  "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                  "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
                  f"open({str(marker)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
                  "time.sleep(120)")
    proc = start(papermill_command(nb, tmp_path / "out.ipynb"))
    signal_when(proc, lambda: marker.exists() and marker.read_text(), signal.SIGTERM)
    time.sleep(1)
    assert proc.poll() is None  # the kernel ignored it: still running
    os.kill(proc.pid, signal.SIGINT)
    code, _, err = finish(proc, timeout=30)
    assert code == 128 + signal.SIGINT, err
    assert last_line(err).startswith("SIGINT received again: the kernel was killed and papermill stopped at once; "
                                     "exit code 130.")
    kernel, child = map(int, marker.read_text().split())
    t0 = time.time()
    while (alive(kernel) or alive(child)) and time.time() - t0 < 10:
        time.sleep(0.1)
    assert not alive(kernel) and not alive(child)


# ----------------------------------------------------------------------------- 03, preempted and resumed

@pytest.fixture(scope="module")
def runs_03(tmp_path_factory):
    """A cache for the runs of 03 (with this machine's offline teachers, where it has them), its environment, and
    one uninterrupted run of 03 as the reference."""
    root = tmp_path_factory.mktemp("runs_03")
    env = {**os.environ, "WORKBENCH_CACHE": str(cache_with_user_teachers(root / "cache")), "HF_HUB_OFFLINE": "1"}
    code, _, err = finish(start(papermill_command(NOTEBOOK_03, root / "reference.ipynb",
                                                  {**PARAMS_03, "out_dir": root / "reference"}), env))
    assert code == 0, err
    return env, root / "reference"


def run_history(out_dir: Path) -> list[dict]:
    """The run's curves, without their wall times."""
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (out_dir / "history.jsonl").read_text().splitlines()]


def student_tensors(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_tensors(out_dir / "student" / "student.safetensors")


RESULTS = ("final_loss", "val_loss", "val_loss/world_colour", "val_loss/world_shape", "probe", "gain_over_best_teacher")


@pytest.mark.slow
def test_a_papermill_run_of_03_sent_sigterm_checkpoints_exits_75_and_its_rerun_ends_identical(runs_03, tmp_path):
    """SIGTERM to papermill mid-training (a scheduler's preemption): the kernel finishes its step, writes a checkpoint
    and preempted.json, papermill exits with 75 and the kernel's one line; the same command again resumes there and
    ends with the uninterrupted run's student and results."""
    env, reference = runs_03
    out = tmp_path / "run"
    command = papermill_command(NOTEBOOK_03, tmp_path / "out.ipynb", {**PARAMS_03, "out_dir": out})
    proc = start(command, env)
    signal_when(proc, (out / "checkpoints" / FIRST_CHECKPOINT).is_dir, signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == EXIT_PREEMPTED, err
    line = STOP_LINE.fullmatch(last_line(err))
    assert line, err
    assert "Traceback" not in err and sum("received:" in x for x in err.splitlines()) == 1
    step = int(line[1])
    assert PARAMS_03["ckpt_every"] <= step < STEPS_03  # stopped mid-training...
    assert not (out / "student").exists()
    assert json.loads((out / "preempted.json").read_text())["step"] == step  # ...with a checkpoint of that step
    assert Path(line[2]) == out / "checkpoints" / f"step_{step:08d}" and (Path(line[2]) / "config.json").is_file()
    cells = json.loads((tmp_path / "out.ipynb").read_text())["cells"]  # saved as papermill saves a failed notebook
    errors = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"] if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["Preempted"] and errors[0]["evalue"] == line[0]
    assert any("papermill-error-cell-tag" in c["metadata"].get("tags", []) for c in cells)

    code, _, err = finish(start(command, env))
    assert code == 0, err
    assert not (out / "preempted.json").exists()
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (out, reference))
    assert summary["resumed_from_step"] == step and expected["resumed_from_step"] is None
    assert {k: summary[k] for k in RESULTS} == {k: expected[k] for k in RESULTS}
    assert run_history(out) == run_history(reference)
    a, b = student_tensors(out), student_tensors(reference)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
