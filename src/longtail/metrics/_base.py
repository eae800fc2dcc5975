"""Base class of the accumulating metrics and the torch.distributed synchronisation.

A metric holds two kinds of state:

* **sum states**: tensors of fixed shape (confusion matrix counts, histogram bins, TP/FP/FN counts). The
  value over the whole data set is the elementwise sum of the per-process values, so under
  ``torch.distributed`` they are combined with one ``all_reduce(SUM)`` each.
* **cat states**: per-sample tensors appended batch by batch (scores for ranking metrics, embeddings).
  Under ``torch.distributed`` each process's concatenation is gathered with ``all_gather``; since
  ``all_gather`` needs equal shapes, the per-process lengths are exchanged first and every process pads
  to the longest, then the padding is cut off again. Processes may hold different numbers of samples,
  including none.

``compute()`` synchronises when ``torch.distributed`` is available and initialised with more than one
process and ``sync_on_compute`` is true (the default). It is then a *collective* call: every process of
the group must call it. Synchronisation works on copies: the local state is never modified, so
``update()`` may continue after ``compute()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")
M = TypeVar("M", bound="Metric[Any]")


def _distributed_active(group: Any) -> bool:
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1)


def sync_sum(t: Tensor, group: Any = None) -> Tensor:
    """Elementwise sum of ``t`` over all processes (on a copy; ``t`` is left untouched)."""
    if not _distributed_active(group):
        return t
    out = t.clone()
    if out.dtype == torch.bool:
        out = out.to(torch.int64)
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


def sync_cat(t: Tensor, group: Any = None) -> Tensor:
    """Concatenation along dim 0 of ``t`` from all processes, in rank order.

    The per-process tensors may differ in length (dim 0, possibly 0); their other dimensions must agree
    across the processes that hold at least one row.
    """
    if not _distributed_active(group):
        return t
    world = dist.get_world_size(group)
    dtype = t.dtype
    local = t.to(torch.uint8) if dtype == torch.bool else t
    shape = torch.tensor(list(local.shape), dtype=torch.int64, device=local.device)
    shapes = [torch.zeros_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape, group=group)
    lengths = [int(s[0]) for s in shapes]
    trailing = {tuple(int(x) for x in s[1:]) for s, n in zip(shapes, lengths, strict=True) if n > 0}
    if not trailing:
        return t
    if len(trailing) > 1:
        raise RuntimeError(
            f"cannot gather metric state: per-process trailing shapes differ {trailing}"
        )
    (tail,) = trailing
    max_len = max(lengths)
    send = local.new_zeros((max_len, *tail))
    if local.shape[0]:
        send[: local.shape[0]] = local
    recv = [torch.empty_like(send) for _ in range(world)]
    dist.all_gather(recv, send, group=group)
    out = torch.cat([r[:n] for r, n in zip(recv, lengths, strict=True)])
    return out.to(dtype)


class Metric(ABC, Generic[T]):
    """Accumulating metric: ``update(...)`` per batch, ``compute()`` at the end, ``reset()`` to start over.

    Attributes:
        sync_on_compute: if true (default) ``compute()`` combines the states of all processes when
            ``torch.distributed`` is initialised with world size > 1. Set to false for a local value.
        process_group: the process group to synchronise over (``None`` = the default group).
    """

    sync_on_compute: bool = True
    process_group: Any = None

    def __init__(self) -> None:
        self._sum_defaults: dict[str, Tensor] = {}
        self._sum_states: dict[str, Tensor] = {}
        self._cat_specs: dict[str, tuple[int, torch.dtype]] = {}
        self._cat_states: dict[str, list[Tensor]] = {}

    # -- state registration ---------------------------------------------------------------------
    def _add_sum_state(self, name: str, default: Tensor) -> None:
        self._sum_defaults[name] = default.clone()
        self._sum_states[name] = default.clone()

    def _add_cat_state(self, name: str, ndim: int, dtype: torch.dtype) -> None:
        self._cat_specs[name] = (ndim, dtype)
        self._cat_states[name] = []

    def _accumulate(self, name: str, value: Tensor) -> None:
        cur = self._sum_states[name]
        if cur.device != value.device:
            cur = cur.to(value.device)
        self._sum_states[name] = cur + value.to(cur.dtype)

    def _append(self, name: str, value: Tensor) -> None:
        ndim, dtype = self._cat_specs[name]
        if value.ndim != ndim:  # pragma: no cover - guarded by the public update() checks
            raise ValueError(
                f"state {name} expects {ndim}-D tensors, got shape {tuple(value.shape)}"
            )
        self._cat_states[name].append(value.detach().to(dtype))

    def _local_cat(self, name: str) -> Tensor:
        parts = self._cat_states[name]
        if parts:
            return torch.cat(parts)
        ndim, dtype = self._cat_specs[name]
        return torch.zeros((0,) * ndim, dtype=dtype)

    # -- public API -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Return every state to its initial (empty) value."""
        for name, default in self._sum_defaults.items():
            self._sum_states[name] = default.clone()
        for name in self._cat_states:
            self._cat_states[name] = []

    def states(self, sync: bool | None = None) -> dict[str, Tensor]:
        """The current states (sum states and concatenated cat states), synchronised if requested.

        Args:
            sync: synchronise across processes; ``None`` = ``self.sync_on_compute``. Synchronisation
                happens only when ``torch.distributed`` is initialised with world size > 1, and never
                modifies the local state.
        """
        do_sync = self.sync_on_compute if sync is None else sync
        group = self.process_group
        out: dict[str, Tensor] = {}
        for name, value in self._sum_states.items():
            out[name] = sync_sum(value, group) if do_sync else value
        for name in self._cat_states:
            local = self._local_cat(name)
            out[name] = sync_cat(local, group) if do_sync else local
        return out

    def compute(self) -> T:
        """The metric over everything seen since the last ``reset()`` (on all processes, see class doc)."""
        return self._compute(self.states())

    @abstractmethod
    def _compute(self, states: dict[str, Tensor]) -> T:
        """The metric from (already synchronised) states. Must not modify ``states``."""

    def to(self: M, device: torch.device | str) -> M:
        """Move every state to ``device`` (e.g. the CUDA device NCCL needs); returns ``self``."""
        for name, value in self._sum_states.items():
            self._sum_states[name] = value.to(device)
        for name, parts in self._cat_states.items():
            self._cat_states[name] = [p.to(device) for p in parts]
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
