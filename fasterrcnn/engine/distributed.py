"""Old path of :mod:`fasterrcnn.distributed`."""

from fasterrcnn.distributed import (
    DistributedContext,
    broadcast_from_main,
    current_context,
    gather_to_main,
    init_distributed,
    shutdown,
)

__all__ = [
    "DistributedContext",
    "broadcast_from_main",
    "current_context",
    "gather_to_main",
    "init_distributed",
    "shutdown",
]
