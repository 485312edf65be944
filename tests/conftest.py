# first: importing workbench sets OpenMP's wait policy before torch loads it (workbench/core/threads.py)
import workbench  # noqa: F401

# isort: split
import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own workbench cache and no network for the Hugging Face hub."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
