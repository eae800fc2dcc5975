"""Base class of the accumulating metrics: a ``torchmetrics.Metric`` with typed states.

Every class of :mod:`longtail.metrics` derives from :class:`Metric`, a :class:`torchmetrics.Metric`
(hence an ``nn.Module``). Its states are registered with ``add_state``, so they follow
``.to(device)`` and the module that holds the metric, are reset by ``reset()`` and are synchronised
by torchmetrics when ``compute()`` runs under ``torch.distributed`` (then a collective call that every
process must make; the local states are restored afterwards, so ``update()`` may continue). The
torchmetrics keyword arguments (``sync_on_compute``, ``process_group``, ``dist_sync_fn``,
``compute_on_cpu``, ...) are accepted by every constructor.

Two kinds of state:

* **sum states** (``dist_reduce_fx="sum"``): fixed-shape counts (confusion matrix, calibration bins,
  TP / FP / FN); the value over all processes is their elementwise sum.
* **cat states** (``dist_reduce_fx="cat"``): per-sample 1-D tensors appended batch by batch (scores,
  flags, embeddings) and concatenated in rank order. Row data of several columns (multi-label
  scores, embeddings) are stored flattened, row-major, with the number of columns in a ``"max"``
  state, so every cat state is 1-D.

One correction to torchmetrics' synchronisation: a process that saw no sample holds an empty list,
for which torchmetrics gathers a 1-D placeholder of the metric's default floating dtype (float32).
Our cat states are float64 or int64, and an ``all_gather`` of different dtypes on different processes
fails (gloo aborts the process: "Received data size doesn't match expected size"), so
:meth:`Metric._sync_dist` first puts an empty tensor of the state's own dtype in place of the empty
list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torchmetrics
from torch import Tensor
from torchmetrics.utilities.distributed import gather_all_tensors


class Metric(torchmetrics.Metric):
    """A ``torchmetrics.Metric`` whose values are fractions in [0, 1] (NaN where undefined).

    Subclasses register their states with :meth:`_add_sum_state` and :meth:`_add_cat_state` and
    read a cat state with :meth:`_cat`; accessors other than ``compute()`` that need the states of
    every process read them inside ``with self._synced():``.

    Example:
        >>> from longtail.metrics import Metric
        >>> class Seen(Metric):
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self._add_sum_state("seen", torch.zeros((), dtype=torch.int64))
        ...     def update(self, x: torch.Tensor) -> None:
        ...         self.seen += x.shape[0]
        ...     def compute(self) -> int:
        ...         return int(self.seen)
        >>> metric = Seen()
        >>> metric.update(torch.zeros(3)); metric.update(torch.zeros(2))
        >>> metric.compute()
        5
    """

    is_differentiable: bool | None = False
    higher_is_better: bool | None = True
    full_state_update: bool | None = False
    plot_lower_bound: float | None = 0.0
    plot_upper_bound: float | None = 1.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cat_dtypes: dict[str, torch.dtype] = {}

    def _add_sum_state(self, name: str, default: Tensor) -> None:
        self.add_state(name, default=default, dist_reduce_fx="sum")

    def _add_cat_state(self, name: str, dtype: torch.dtype) -> None:
        self.add_state(name, default=[], dist_reduce_fx="cat")
        self._cat_dtypes[name] = dtype

    def _cat(self, name: str) -> Tensor:
        """The cat state ``name`` as one 1-D tensor (empty, of the state's dtype, if no sample)."""
        value = getattr(self, name)
        if isinstance(value, Tensor):  # already concatenated by a synchronisation
            return value.to(self._cat_dtypes[name])
        if value:
            return torch.cat(value).to(self._cat_dtypes[name])
        return torch.zeros(0, dtype=self._cat_dtypes[name], device=self.device)

    def _sync_dist(
        self,
        dist_sync_fn: Callable[..., Any] = gather_all_tensors,
        process_group: Any | None = None,
    ) -> None:
        # see the module docstring: an empty cat state is gathered as an empty tensor of its dtype
        for name, dtype in self._cat_dtypes.items():
            value = getattr(self, name)
            if isinstance(value, list) and not value:
                setattr(self, name, [torch.zeros(0, dtype=dtype, device=self.device)])
        super()._sync_dist(dist_sync_fn, process_group)

    @contextlib.contextmanager
    def _synced(self) -> Iterator[None]:
        """The states of all processes inside the block (as in ``compute()``), local ones after it."""
        self.sync(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync)
        try:
            yield
        finally:
            if self._is_synced:
                self.unsync()
