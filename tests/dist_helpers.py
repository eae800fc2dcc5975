"""Two-process gloo harness shared by the distributed tests (spawned workers import it too)."""

from __future__ import annotations

import contextlib
import datetime
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A free TCP port on localhost for the rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gloo_group(rank: int, port: int, world_size: int = 2) -> Iterator[None]:
    """Join a gloo process group for the body of the ``with`` block."""
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        yield
        # every rank done with its collectives before any tears the group down (a rank that
        # destroys its gloo context while the other still talks to it can abort the other)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_two_processes(worker: Callable[[int, int, str], None], outdir: Path) -> None:
    """Spawn ``worker(rank, port, outdir)`` on two processes (skip without gloo)."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.start_processes(
        worker, args=(free_port(), str(outdir)), nprocs=2, join=True, start_method="spawn"
    )
