"""Sharing the CPU (``workbench.core.threads``): thread counts follow the cores this process may use; the wait
policy is libgomp's own unless the user chose one (a passive default cost 1.32x alone: see the module), and a
user's choice reaches every way into the workbench.

What libgomp itself read is checked where it can be: ``OMP_DISPLAY_ENV=VERBOSE`` makes it print its settings,
``GOMP_SPINCOUNT`` among them (0 passive, 300000 its default, 30000000000 active), to stderr as it loads."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.core import threads
from workbench.core.parallel import map_jobs

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
PASSIVE, DEFAULT, ACTIVE = "0", "300000", "30000000000"  # libgomp's spin count for each wait policy


def clean_env(**extra) -> dict:
    """This environment without any OpenMP setting of the user's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in threads.USER_WAIT + threads.USER_THREADS}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_DISPLAY_ENV="VERBOSE", **extra)
    return env


def run(args: list[str], **extra) -> tuple[str, str]:
    """(stdout, the spin count libgomp read) of ``python args`` in a clean environment plus ``extra``."""
    done = subprocess.run([sys.executable, *args], env=clean_env(**extra), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    spins = re.findall(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr)
    assert spins, f"libgomp printed no settings (is torch's OpenMP libgomp?):\n{done.stderr[-2000:]}"
    return done.stdout, spins[0]


# ----------------------------------------------------------------------------- the defaults, on a dict

def test_the_wait_policy_is_never_set_nor_overridden():
    env = {}
    assert threads.share_cores(env, cgroup="/nonexistent") == {} and env == {}
    for users in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "passive"}, {"GOMP_SPINCOUNT": "1000"}):
        env = dict(users)
        assert threads.share_cores(env, cgroup="/nonexistent") == {}
        assert env == users


def cgroup_v2(tmp_path, cpu_max: str) -> Path:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


@pytest.mark.parametrize(("cpu_max", "quota", "cores"), [("max 100000", None, 4), ("200000 100000", 2.0, 2),
                                                          ("150000 100000", 1.5, 2), ("50000 100000", 0.5, 1),
                                                          ("800000 100000", 8.0, 4)])
def test_cores_are_the_affinity_mask_capped_by_the_cgroup_quota(tmp_path, monkeypatch, cpu_max, quota, cores):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    root = cgroup_v2(tmp_path, cpu_max)
    assert threads.cpu_quota(root) == quota
    assert threads.cpu_cores(root) == cores
    env = {}
    added = threads.share_cores(env, cgroup=root)
    assert added.get("OMP_NUM_THREADS") == (str(cores) if cores < 4 else None)  # only where the quota is smaller


def test_cgroup_v1_quota_and_no_cgroup(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cpu_quota(tmp_path) == 3.0 and threads.cpu_cores(tmp_path) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no quota"
    assert threads.cpu_quota(tmp_path) is None and threads.cpu_cores(tmp_path) == 8
    assert threads.cpu_quota(tmp_path / "nonexistent") is None


def test_a_users_thread_count_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    root = cgroup_v2(tmp_path, "100000 100000")
    for users in ({"OMP_NUM_THREADS": "3"}, {"MKL_NUM_THREADS": "4"}):
        env = dict(users)
        assert threads.share_cores(env, cgroup=root) == {}
        assert env == users
    assert threads.share_cores({}, cgroup=root) == {"OMP_NUM_THREADS": "1"}


# ----------------------------------------------------------------------------- the entry points, as processes

@pytest.mark.parametrize(("users", "printed", "spin"), [({}, "None", DEFAULT),
                                                        ({"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE", PASSIVE),
                                                        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE", ACTIVE),
                                                        ({"GOMP_SPINCOUNT": "1234"}, "None", "1234")])
def test_importing_workbench_keeps_libgomps_default_or_the_users_choice(users, printed, spin):
    out, read = run(["-c", "import workbench, os; print(os.environ.get('OMP_WAIT_POLICY'))"], **users)
    assert out.strip() == printed
    assert read == spin


def test_the_command_line_runs_with_the_users_policy():
    out, read = run(["-m", "workbench", "--help"], OMP_WAIT_POLICY="PASSIVE")
    assert "usage: python -m workbench" in out and read == PASSIVE


def report_environment(job, shared, emit):
    """A pool job (module level: the workers import it by name): its process's environment as it started (exec),
    before anything in it ran, and now."""
    started = dict(e.split("=", 1) for e in Path("/proc/self/environ").read_text().split("\0") if "=" in e)
    return started.get("OMP_WAIT_POLICY"), os.environ.get("OMP_WAIT_POLICY")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("users", [None, "PASSIVE"])
def test_pool_workers_start_with_the_users_choice(monkeypatch, users):
    for name in threads.USER_WAIT:
        monkeypatch.delenv(name, raising=False)
    if users:
        monkeypatch.setenv("OMP_WAIT_POLICY", users)
    results = {}
    map_jobs(report_environment, [0, 1], None, 2, lambda r: None, results.__setitem__)
    assert results == {0: (users, users), 1: (users, users)}  # set before the worker's torch loaded


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_imports_workbench_before_anything_that_loads_torch(notebook):
    """A kernel's libgomp loads with the notebook's first import of torch (or timm, numpy's neighbours...): the
    notebook's first import is workbench, so the kernel runs with the policy (papermill, nbval, JupyterLab)."""
    first = min((node for node in ast.walk(ast.parse(notebook.read_text()))
                 if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", "") != "__future__"),
                key=lambda node: node.lineno)
    names = [a.name for a in first.names] if isinstance(first, ast.Import) else [first.module]
    assert names[0].split(".")[0] == "workbench", f"{notebook.name} line {first.lineno} imports {names} first"


# ----------------------------------------------------------------------------- processes that train split the cores

class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fake_threads(monkeypatch):
    """torch's thread count, as a number the test reads and sets (this process's own stays as it is)."""
    state = {"n": 4}
    monkeypatch.setattr(torch, "get_num_threads", lambda: state["n"])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: state.__setitem__("n", n))
    return state


def test_trainers_split_the_cores_and_take_them_back(tmp_path, fake_threads):
    clock = Clock()
    mine = threads.CoreShare(tmp_path, cores=4, clock=clock, wall=clock, pid=os.getpid())
    other = threads.CoreShare(tmp_path, cores=4, clock=clock, wall=clock, pid=os.getppid())  # alive, like a trainer
    mine()
    assert fake_threads["n"] == 4  # alone: every core
    other.announce(2.0)
    clock.t += 0.1
    mine()
    assert fake_threads["n"] == 4  # checked at most every check_s
    clock.t += 0.5
    mine()
    assert fake_threads["n"] == 2  # two trainers: half each
    clock.t += 2.5  # the other one's claim ran out (it stopped training)
    mine()
    assert fake_threads["n"] == 4
    other.announce(2.0)
    other.leave()  # it exited: its cores come back at the next check
    clock.t += 0.5
    mine()
    assert fake_threads["n"] == 4


def test_a_dead_process_does_not_count_and_its_file_goes(tmp_path, fake_threads):
    clock = Clock()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / dead).write_text(f"{clock.t + 60:.3f}")
    (tmp_path / "not-a-pid").write_text("garbage")
    mine = threads.CoreShare(tmp_path, cores=2, clock=clock, wall=clock, pid=os.getpid())
    mine()
    assert fake_threads["n"] == 2 and not (tmp_path / dead).exists()


def test_slow_steps_keep_their_claim_between_two_steps(tmp_path, fake_threads):
    clock = Clock()
    slow = threads.CoreShare(tmp_path, cores=2, clock=clock, wall=clock, pid=os.getppid())
    for _ in range(4):  # 10 s per step
        slow()
        clock.t += 10
    until = float((tmp_path / str(os.getppid())).read_text())
    assert until >= clock.t - 10 + 20 - 1e-6  # twice the median step from its last step
    mine = threads.CoreShare(tmp_path, cores=2, clock=clock, wall=clock, pid=os.getpid())
    mine()
    assert fake_threads["n"] == 1


def test_a_users_thread_count_is_the_ceiling_and_is_followed(tmp_path, fake_threads):
    clock = Clock()
    fake_threads["n"] = 1  # the user's torch.set_num_threads(1)
    mine = threads.CoreShare(tmp_path, cores=4, clock=clock, wall=clock, pid=os.getpid())
    mine()
    assert fake_threads["n"] == 1  # never more than the user's
    fake_threads["n"] = 3  # the user changes it mid-run
    clock.t += 1
    mine()
    assert fake_threads["n"] == 3


def test_sharing_is_off_with_the_variable_or_on_one_core(monkeypatch):
    assert threads.install_core_share({threads.SHARE_ENV: "0"}) is None
    monkeypatch.setattr(threads, "cpu_cores", lambda: 1)
    assert threads.install_core_share({}) is None


TRAINER = """
import workbench, time, torch
model = torch.nn.Linear(256, 256)
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
start, seen, t0 = torch.get_num_threads(), set(), time.monotonic()
while time.monotonic() - t0 < {seconds}:
    model(torch.randn(512, 256)).square().mean().backward()
    opt.step()
    seen.add(torch.get_num_threads())
print([start, sorted(seen)])
"""


@pytest.mark.slow
@pytest.mark.skipif(threads.cpu_cores() < 2, reason="needs 2 cores to share")
def test_two_training_processes_take_one_share_each(tmp_path):
    """Real processes, the default path (``import workbench`` installs the hook): alone, all the cores; two at once,
    half each for most of their steps."""
    env = clean_env(TMPDIR=str(tmp_path))
    env.pop(threads.SHARE_ENV, None)
    cores = threads.cpu_cores()
    alone = subprocess.run([sys.executable, "-c", TRAINER.format(seconds=1)], env=env, capture_output=True,
                           text=True, timeout=120)
    assert alone.returncode == 0, alone.stderr[-2000:]
    start, seen = ast.literal_eval(alone.stdout.strip())
    assert seen == [start]
    pair = [subprocess.Popen([sys.executable, "-c", TRAINER.format(seconds=6)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in pair]
    for p, (out, err) in zip(pair, outs):
        assert p.returncode == 0, err[-2000:]
        start, seen = ast.literal_eval(out.strip())
        assert max(1, min(start, cores // 2)) in seen
