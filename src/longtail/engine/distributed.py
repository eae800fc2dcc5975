"""torch.distributed helpers: set-up from ``torchrun``'s environment, rank queries, gathers.

Under ``torchrun --nproc_per_node=N -m longtail train CONFIG`` every process sees ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`init_distributed` then creates the default process group with
the backend of :func:`backend_for`: ``gloo`` on CPU, and ``"cpu:gloo,cuda:nccl"`` on CUDA (``nccl``
for GPU tensors, ``gloo`` for the CPU tensors that evaluation synchronises, e.g. the metric states),
and pins each process to ``cuda:LOCAL_RANK``. Without those variables everything runs in one process
and these helpers are no-ops.

:func:`convert_sync_batchnorm` makes batch-norm layers compute their batch statistics over the global
batch (all processes), so that a step of N processes equals a step of one process on the whole batch:
``torch.nn.SyncBatchNorm`` on CUDA, and :class:`CPUSyncBatchNorm` on CPU (``torch.nn.SyncBatchNorm``
refuses CPU tensors).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import time
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "CPUSyncBatchNorm",
    "all_gather_cat",
    "all_reduce_mean",
    "backend_for",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "convert_sync_batchnorm",
    "exit_rank",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "launch_rank",
    "rank",
    "resolve_device",
    "settle_after_error",
    "world_size",
]


def is_distributed() -> bool:
    """Whether a default process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def launch_rank() -> int:
    """This process's rank, also before :func:`init_distributed` (or after a failed one).

    The process group's rank once it exists, else the ``RANK`` that ``torchrun`` sets, else 0. The
    command line prints its errors on rank 0 only, so that N processes failing alike print one line.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def settle_after_error(timeout: float = 10.0) -> None:
    """After an error, let rank 0 report it before this process exits (best effort, never raises).

    ``torchrun`` stops every process as soon as one exits with an error, so a rank that leaves first
    could cut off rank 0's one-line report. With a process group, every failing process meets in a
    ``monitored_barrier`` (at most ``timeout`` seconds: a rank that did not fail is not waited
    for); before the group exists (a config error, found alike by every rank at the same moment),
    the other ranks wait a second.
    """
    try:
        if is_distributed():
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout), wait_all_ranks=True)
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and launch_rank() != 0:
            time.sleep(1.0)
    except Exception:  # a rank that is not failing never arrives: leave anyway
        pass


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


def backend_for(device: torch.device) -> str:
    """Process-group backend for ``device``: ``"cpu:gloo,cuda:nccl"`` on CUDA, ``"gloo"`` on CPU.

    On CUDA the group needs both: ``nccl`` for the GPU tensors (gradients, batch-norm statistics)
    and ``gloo`` for the collectives on CPU tensors (the metric states summed at evaluation).
    """
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: torch.device) -> bool:
    """Create the process group (backend :func:`backend_for`) when launched by ``torchrun``
    (``WORLD_SIZE > 1``); on CUDA, first pin the process to ``device``.

    Returns:
        ``True`` if running distributed.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return True
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device))
    return True


def cleanup_distributed() -> bool:
    """Leave the process group (if any); return whether there was one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        return True
    return False


def exit_rank(code: int) -> NoReturn:
    """End this ``torchrun`` rank now with ``code``, after flushing its output, without the
    interpreter's finalization.

    A process that built a ``DistributedDataParallel`` model keeps the gloo group's worker threads
    after :func:`cleanup_distributed`: measured with torch 2.13, the ``pt_gloo_runloop`` threads
    outlive ``destroy_process_group`` once a DDP model was made, even one deleted and collected
    (``scripts/gloo_threads_after_ddp.py``).
    When such a thread releases a finished collective while the interpreter finalizes, freeing
    its tensors takes the GIL, the thread is made to exit, and the C++ runtime aborts the process
    ("terminate called without an active exception", SIGABRT; core dump: ``~AsyncBarrierWork``
    -> ``~AsyncAllgatherWork`` -> ``decref_pyobject`` -> ``take_gil`` -> ``pthread_exit``). It
    happened in about one ``torchrun -m longtail bench`` of fifteen on a loaded 2-core machine,
    after every result was written; torchrun then reports the command as failed. Every file the
    command writes is closed (written atomically) before this point, so skipping the finalization
    loses nothing; the command line calls this only as a rank that left a process group, also
    after an unexpected error (its traceback printed first).
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader gone (`| head`): nothing to flush to
            stream.flush()
    logging.shutdown()
    os._exit(code)


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


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes: the gradient is summed over processes too."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    r"""Batch norm whose training statistics are taken over all processes (gloo / CPU).

    In training, with a process group initialised, every process all-reduces the per-channel
    :math:`\sum x`, :math:`\sum x^2` and the element count of its batch (in float64, one
    differentiable ``all_reduce``), and normalises with the global mean and biased variance
    :math:`\sigma^2 = E[x^2] - E[x]^2`; the running mean and (unbiased) variance are updated from the
    same global values, as ``torch.nn.SyncBatchNorm`` does on GPUs. The backward pass all-reduces the
    gradient of the statistics, so the gradients equal those of one process on the whole batch.
    Otherwise (evaluation, no process group) it is plain batch norm. Same parameters, buffers and
    ``state_dict`` keys as ``nn.BatchNorm*d``; input ``(N, C, *)``.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            out: Tensor = super().forward(input)
            return out
        self._check_input_dim(input)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        x64 = input.double()
        local = torch.cat(
            [
                x64.sum(dims),
                (x64 * x64).sum(dims),
                x64.new_full((1,), float(input.numel() // max(c, 1))),
            ]
        )
        total = _AllReduceSum.apply(local)
        count = total[2 * c]
        mean = total[:c] / count
        var = (total[c : 2 * c] / count - mean * mean).clamp_min(0.0)
        shape = [1, c] + [1] * (input.dim() - 2)
        inv_std = torch.rsqrt(var + self.eps)
        out = ((x64 - mean.view(shape)) * inv_std.view(shape)).to(input.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else float(self.momentum)
                )
                n = float(count)
                unbiased = var * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype) * factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype) * factor)
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every ``nn.BatchNorm*d`` of ``module`` by a synchronised one (same parameters).

    ``torch.nn.SyncBatchNorm`` on CUDA, :class:`CPUSyncBatchNorm` otherwise. The parameter and
    buffer tensors are moved over, not copied, so an optimiser built before still applies.
    """
    if device.type == "cuda":
        converted: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return converted
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, (CPUSyncBatchNorm, nn.SyncBatchNorm)
    ):
        out = CPUSyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out
