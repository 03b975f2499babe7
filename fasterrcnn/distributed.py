"""Many processes with ``torch.distributed``: one per device, launched by ``torchrun``.

Each process (rank) runs its shard of the images; rank 0 gathers what the others found. On
CPU the processes talk through gloo, on GPUs through NCCL (one GPU per process,
``cuda:LOCAL_RANK``). Without ``torchrun`` everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "cpu") -> DistributedContext:
    """Join the process group ``torchrun`` set up (gloo for CPU, NCCL for CUDA), once.

    Returns the single-process context when not launched by ``torchrun``.
    """
    if not launched_by_torchrun():
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank)


def current_context() -> DistributedContext:
    """The context of the process group already joined, if any."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    )


def rank_device(device: str, context: DistributedContext) -> str:
    """``cuda`` -> ``cuda:LOCAL_RANK`` in a multi-process job; other devices unchanged."""
    if device == "cuda" and context.world_size > 1:
        return f"cuda:{context.local_rank}"
    return device


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0 (None elsewhere); ``[obj]`` alone."""
    context = current_context()
    if context.world_size == 1:
        return [obj]
    gathered: list[Any] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if current_context().world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every process of the job (nothing to wait for alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
