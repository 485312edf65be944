"""The device, picked once per run: every stage asks here, nothing calls ``.cuda()`` on its own."""
from __future__ import annotations

import os

import torch

from .errors import ParameterError


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU; ``cuda`` where there is none is refused, with what to pass."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device={device!r} but CUDA is not available here; use device='cpu' or 'auto'")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ParameterError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None


def local_device(device: str = "auto") -> torch.device:
    """``pick_device``, except that under torchrun ``auto`` is this process's own GPU (``LOCAL_RANK``), for work
    that joins no process group (each rank generates its own shard of images)."""
    if device == "auto" and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}")
    return pick_device(device)
