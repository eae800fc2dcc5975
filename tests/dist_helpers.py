"""Two-process harnesses shared by the distributed tests (spawned workers import this module too).

- :func:`run_two_processes`: ``worker(rank, port, outdir)`` on two spawned processes in a gloo group;
- :class:`TorchrunMany`: several ``longtail`` commands under one ``torchrun --nproc_per_node=2``
  launch. Starting torchrun and two processes that import torch costs several seconds a launch, so
  a test module starts one launch for all its runs (this file is the script the launch runs: the
  runs share one process group, created by ``longtail``'s own :func:`init_distributed`) and compares
  each run in its own test.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

REPO_ROOT = Path(__file__).resolve().parents[1]


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


class TorchrunMany:
    """Start ``longtail RUN --no-progress`` for each argument list of ``runs``, one after the
    other, in one ``torchrun --standalone --nproc_per_node=2`` launch on CPU (gloo);
    :meth:`wait` for its end.

    Each rank stops at the first run that does not exit 0, with that run's exit code (torchrun then
    stops the other rank); ``workdir/done.json`` lists the runs both ranks finished with 0. The
    launch's output goes to files (``workdir/stdout.txt``, ``stderr.txt``), so that the caller may
    run something else meanwhile (the one-process reference runs).
    """

    def __init__(self, runs: Sequence[Sequence[str]], workdir: Path, timeout: float = 900) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        spec = workdir / "runs.json"
        spec.write_text(json.dumps([[*run, "--no-progress"] for run in runs]))
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"), OMP_NUM_THREADS="1")
        self.args = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            __file__,
            str(spec),
        ]
        self.workdir = workdir
        self.timeout = timeout
        with (workdir / "stdout.txt").open("w") as out, (workdir / "stderr.txt").open("w") as err:
            self.proc = subprocess.Popen(self.args, env=env, stdout=out, stderr=err, text=True)

    def wait(self) -> subprocess.CompletedProcess[str]:
        """The launch's exit code and output."""
        try:
            code = self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return subprocess.CompletedProcess(
            self.args,
            code,
            (self.workdir / "stdout.txt").read_text(),
            (self.workdir / "stderr.txt").read_text(),
        )


def once_per_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Any]
) -> tuple[Path, Any]:
    """``make(folder)`` (JSON-able result) once per pytest run, also across xdist workers: a
    worker that needs it while another computes it waits for it (a file lock), then reads it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this run
    folder, done = base / name, base / f"{name}.json"
    with FileLock(str(base / f"{name}.lock")):
        if not done.is_file():
            folder.mkdir(exist_ok=True)
            done.write_text(json.dumps(make(folder)))
    return folder, json.loads(done.read_text())


def _rank_main(spec: Path) -> NoReturn:
    """Under torchrun: create the process group once, run every command of ``spec`` in it."""
    import torch

    from longtail.cli import main
    from longtail.engine import distributed as D

    runs = json.loads(spec.read_text())
    assert D.init_distributed(torch.device("cpu")), "not launched by torchrun"
    destroy = D.cleanup_distributed
    D.cleanup_distributed = lambda: False  # main() keeps the group for the next run
    done: list[int] = []
    for i, args in enumerate(runs):
        code = main(args)
        if code != 0:
            D.exit_rank(code)  # as a failed `longtail` process would: torchrun stops the other rank
        D.barrier()
        done.append(i)
        if D.is_main_process():
            (spec.parent / "done.json").write_text(json.dumps(done))
    D.barrier()
    destroy()
    D.exit_rank(0)  # as the `longtail` command's ranks leave (see exit_rank)


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
