import os

# a fixed thread count in every process of the suite (the notebooks' kernels, torchrun ranks and workers inherit
# it): a run and its reference compute the same sums even when tests run side by side (workbench/core/threads.py)
os.environ["WORKBENCH_SHARE_CORES"] = "0"

# pytest-xdist (make test: -n auto): each worker computes on its share of the cores, and so does every process it
# starts (notebook kernels, torchrun, pool workers inherit OMP_NUM_THREADS), so that no OpenMP thread of one worker
# spins on the core another one needs (workbench/core/threads.py)
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1 and "OMP_NUM_THREADS" not in os.environ:
    from workbench.core.threads import cpu_cores  # imports nothing heavy: torch is not loaded yet

    os.environ["OMP_NUM_THREADS"] = str(max(1, cpu_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

# isort: split
# first: importing workbench sets OpenMP's wait policy before torch loads it (workbench/core/threads.py)
import workbench  # noqa: F401

# isort: split
# precision "auto" computes in fp32 in every process of the suite (the notebooks' kernels, torchrun ranks and
# workers inherit it; fixtures of a module scope too): no bf16 timing in every run, which could choose differently
# for a run and its reference. tests/test_precision.py lifts it where it tests the choice.
os.environ["WORKBENCH_NATIVE_BF16"] = "0"

# isort: split
import importlib.util

import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own workbench cache, no network for the Hugging Face hub, and fp32 for precision "auto"
    (no bf16 timing in every run, which could choose differently from one run to the next; test_precision asks)."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBENCH_NATIVE_BF16", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)


# pytest-xdist (make test: -n auto --dist loadscope): a test module's tests run on one worker (module-scoped fixtures
# are built once), a notebook's cells on one worker in order (one kernel), and scopes go to the workers in the order
# of the command line (the Makefile names the notebooks, the longest scopes, first). 04 reuses the student 03 distilled
# in notebooks/runs/03_distill (it would distill its own otherwise): the two are one scope, 03 first.
NOTEBOOK_SCOPES = ("03_distill", "04_transfer")

if importlib.util.find_spec("xdist") is not None:
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScopes(LoadScopeScheduling):
        """``--dist loadscope`` by file (a module's classes too), 03 and 04 as one scope, in command-line order."""

        def __init__(self, config, log=None):
            config.option.loadscopereorder = False
            super().__init__(config, log)

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "notebooks 03 and 04" if any(name in path for name in NOTEBOOK_SCOPES) else path

    def pytest_xdist_make_scheduler(config, log):
        if config.getvalue("dist") == "loadscope":
            return ModuleScopes(config, log)
        return None
