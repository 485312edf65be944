# first: importing workbench sets OpenMP's wait policy before torch loads it (workbench/core/threads.py)
import workbench  # noqa: F401

# isort: split
import os

# precision "auto" computes in fp32 in every process of the suite (the notebooks' kernels, torchrun ranks and
# workers inherit it; fixtures of a module scope too): no bf16 timing in every run, which could choose differently
# for a run and its reference. tests/test_precision.py lifts it where it tests the choice.
os.environ["WORKBENCH_NATIVE_BF16"] = "0"

# isort: split
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
