"""Several processes, one training run: what the distillation loop needs from ``torch.distributed``.

torchrun starts N copies of the same command and tells each its place through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); ``init_distributed``
joins them into a process group (NCCL on GPUs, Gloo on CPUs) and returns a ``ProcessGroup``:

    ranks = init_distributed()          # ProcessGroup(rank=0, size=1) outside torchrun: nothing to join
    loader = data.loader(..., rank=ranks.rank, world_size=ranks.size)
    ddp = wrap_ddp(model, device, ranks)
    ...
    cleanup()

What keeps N ranks x batch B equal to one process with batch N*B:

- ``ShardSampler``: every rank walks the same epoch order (``workbench.data.EpochSampler``, a function
  of seed and epoch) and takes every N-th sample (rank r:
  positions r, r + N, ...), so the N local batches of a step together are the global batch of one
  process, and all ranks make the same number of steps (DistributedDataParallel needs that);
- ``ProcessGroup.all_sum``: the standardization statistics (``workbench.layers.standardize.batch_moments``), the
  teacher-dropping normalization (``workbench.distillation.losses``) and the logged metrics are summed over ranks;
- DistributedDataParallel averages the gradients; everything else (weights at the start, the
  teacher-dropping generator) is seeded identically on every rank.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Sampler


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and logs."""
        return self.rank == 0

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (returned for convenience)."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    @contextmanager
    def main_first(self, per_node: bool = False):
        """Rank 0 (``per_node``: each machine's local rank 0) runs the block first, the others after it:
        for work that writes what the others then read (a cache, removing a killed run's leftovers)."""
        first = (self.local_rank if per_node else self.rank) == 0
        if not first:
            self.barrier()
        yield
        if first:
            self.barrier()


def current_group() -> ProcessGroup:
    """The running process group's view of this process; a group of one process outside ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return ProcessGroup()


def init_distributed(device: str = "auto") -> ProcessGroup:
    """Join the process group torchrun describes in the environment (no-op without one).

    Backend: NCCL when this run trains on CUDA, Gloo otherwise. On CUDA each process takes the GPU of
    its ``LOCAL_RANK`` (``torch.cuda.set_device``), so ``device="auto"``/``"cuda"`` means that GPU."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return current_group()
    if not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        on_cuda = torch.cuda.is_available() and not str(device).startswith("cpu")
        if on_cuda:
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) on this "
                                   "node: use torchrun --nproc_per_node <= the number of GPUs")
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if on_cuda else "gloo")
    return current_group()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device, ranks: ProcessGroup,
             find_unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel around ``model`` on several ranks; ``model`` itself on one.

    ``find_unused_parameters``: some parameters take no part in the loss (DistributedDataParallel then looks for
    them after each forward, which costs a walk of the autograd graph, instead of waiting for their gradients).

    Buffers are not broadcast from rank 0 at every forward: the only ones that change, the
    standardization statistics, are already equal on every rank (they are updated with all-reduced
    moments), and the broadcast would cost a collective per step."""
    if ranks.size == 1:
        return model
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters  # the newer name
    no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters, **no_sync)


class ShardSampler(Sampler[int]):
    """This rank's part of another sampler's order: positions ``rank``, ``rank + N``, ... of each epoch.

    The order is cut to a multiple of N first (at most N - 1 samples per epoch left out, as
    ``DistributedSampler(drop_last=True)``), so that every rank gets the same number of samples.
    The base sampler must give the same order on every rank (``EpochSampler`` does: seed and epoch)."""

    def __init__(self, base: Sampler[int], rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.base, self.rank, self.world_size = base, rank, world_size

    def __iter__(self) -> Iterator[int]:
        order = list(self.base)
        usable = len(order) - len(order) % self.world_size
        return iter(order[self.rank:usable:self.world_size])

    def __len__(self) -> int:
        return len(self.base) // self.world_size
