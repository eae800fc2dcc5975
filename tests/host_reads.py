"""Count host reads of tensor values (what a device would have to synchronise for) while running code.

``count_host_reads(fn)`` runs ``fn`` under a ``TorchDispatchMode`` that records

- ``aten._local_scalar_dense``: what ``.item()``, ``bool(t)``, ``int(t)``, ``float(t)`` dispatch to;
- ops whose output size or result depends on tensor values and so needs them on the host:
  ``aten.nonzero`` (and therefore ``torch.nonzero`` / ``torch.where(mask)``), ``aten.masked_select``,
  ``aten.unique*``, ``aten.equal``, indexing with a boolean mask (``aten.index`` with a bool index),
  ``aten._assert_async`` (a host read on the CPU, an assertion kernel on CUDA);

and additionally ``Tensor.tolist`` and ``Tensor.numpy``, which read values without dispatching an
operator (they are patched for the duration of the call). The dispatch mode also sees the ops of a
``backward()`` run inside ``fn``. Import it in a test with ``from host_reads import count_host_reads``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostReads", "count_host_reads"]

aten = torch.ops.aten

#: Operator packets that always read tensor values on the host.
_READ_OPS = {
    aten._local_scalar_dense,
    aten.nonzero,
    aten.masked_select,
    aten.equal,
    aten._unique,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
    aten._assert_async,
}


@dataclass
class HostReads:
    """What :func:`count_host_reads` saw: the number of host reads and the name of each."""

    count: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.count += 1
        self.names.append(name)


def _bool_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices
    )


class _HostReadCounter(TorchDispatchMode):
    def __init__(self, reads: HostReads) -> None:
        super().__init__()
        self.reads = reads

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        packet = func.overloadpacket
        if packet in _READ_OPS or (packet is aten.index and _bool_index(args)):
            self.reads.add(str(func))
        return func(*args, **(kwargs or {}))


def count_host_reads(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``fn()`` and return ``(number of host reads, fn's result)``.

    Use :func:`record_host_reads` for the names of the reads (helpful in assertion messages).
    """
    reads, result = record_host_reads(fn)
    return reads.count, result


def record_host_reads(fn: Callable[[], Any]) -> tuple[HostReads, Any]:
    """Like :func:`count_host_reads`, returning a :class:`HostReads` with the name of each read."""
    reads = HostReads()
    patched: dict[str, Any] = {}
    for name in ("tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def counting(
            self: torch.Tensor, *a: Any, _o: Any = original, _n: str = name, **k: Any
        ) -> Any:
            reads.add(f"Tensor.{_n}")
            return _o(self, *a, **k)

        patched[name] = torch.Tensor.__dict__.get(name)
        setattr(torch.Tensor, name, functools.wraps(original)(counting))
    try:
        with _HostReadCounter(reads):
            result = fn()
    finally:
        for name, own in patched.items():
            if own is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, own)
    return reads, result
