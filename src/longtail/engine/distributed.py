"""torch.distributed helpers: set-up from ``torchrun``'s environment, rank queries, gathers.

Under ``torchrun --nproc_per_node=N -m longtail train CONFIG`` every process sees ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`init_distributed` then creates the default process group with
``gloo`` on CPU and ``nccl`` on CUDA, and pins each process to ``cuda:LOCAL_RANK``. Without those
variables everything runs in one process and these helpers are no-ops.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_gather_cat",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "rank",
    "resolve_device",
    "world_size",
]


def is_distributed() -> bool:
    """Whether a default process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes files and prints."""
    return rank() == 0


def resolve_device(preference: str = "auto") -> torch.device:
    """``"auto"``: ``cuda:LOCAL_RANK`` if CUDA is available, else CPU."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("train.device: 'cuda' requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init_distributed(device: torch.device) -> bool:
    """Create the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    Returns:
        ``True`` if running distributed.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return True
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value: float, device: torch.device | None = None) -> float:
    """Mean of a Python float over processes."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def all_gather_cat(x: Tensor) -> Tensor:
    """Concatenate ``x`` (same trailing shape, any first dimension) from all processes, rank order."""
    if not is_distributed():
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    max_n = int(max(int(s.item()) for s in sizes))
    padded = torch.zeros((max_n, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    bufs = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(bufs, padded)
    return torch.cat([b[: int(s.item())] for b, s in zip(bufs, sizes, strict=True)])


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
