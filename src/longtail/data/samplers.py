"""Class-aware samplers for long-tailed training (Kang et al. ICLR 2020, "Decoupling").

With ``n_c`` training samples in class ``c`` and exponent ``q``, a sample ``i`` of class ``c`` is
drawn with probability ``n_c^q / sum_k n_k^{q+1}`` per draw, i.e. the class ``c`` is drawn with

.. math:: p_c = \\frac{n_c^q}{\\sum_k n_k^q}

and then a sample uniformly inside it.

- ``q = 1``: instance-balanced (every sample equally likely),
- ``q = 0``: class-balanced (every class equally likely),
- ``q = 1/2``: square-root sampling (Mahajan et al. 2018),
- progressively balanced: ``p_c(t) = (1 - t/T) p_c^{IB} + (t/T) p_c^{CB}`` at epoch ``t`` of ``T``.

All samplers draw with replacement (except :class:`InstanceBalancedSampler`, which by default
shuffles without replacement like a plain ``shuffle=True`` loader), are deterministic per
``(seed, epoch)`` (``set_epoch``), and shard like :class:`torch.utils.data.DistributedSampler`:
every rank computes the same global draw of ``total_size = num_replicas * len(self)`` indices
from a ``torch.Generator`` seeded with ``seed + epoch`` and keeps ``global[rank::num_replicas]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

__all__ = [
    "ClassAwareSampler",
    "ClassBalancedSampler",
    "InstanceBalancedSampler",
    "ProgressivelyBalancedSampler",
    "SquareRootSampler",
]


def _labels_tensor(labels: torch.Tensor | Sequence[int]) -> torch.Tensor:
    tensor = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
    if tensor.ndim != 1:
        raise ValueError(
            f"labels: expected a 1-D tensor of class indices, got shape {tuple(tensor.shape)}"
        )
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"labels: expected an integer tensor, got dtype {tensor.dtype}")
    if tensor.numel() == 0:
        raise ValueError("labels: empty")
    tensor = tensor.detach().to("cpu", torch.int64)
    if int(tensor.min()) < 0:
        raise ValueError(f"labels: class indices must be >= 0, got {int(tensor.min())}")
    return tensor


def _replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is None or rank is None:
        dist = torch.distributed
        initialised = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialised else 1
        if rank is None:
            rank = dist.get_rank() if initialised else 0
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
        raise ValueError(f"num_replicas: expected an int >= 1, got {num_replicas!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank: expected an int in [0, {num_replicas}), got {rank!r}")
    return num_replicas, rank


class ClassAwareSampler(Sampler[int]):
    """Draw indices so that class ``c`` has probability ``p_c = n_c^q / sum_k n_k^q``.

    A class is drawn from ``p`` (``torch.multinomial`` with replacement), then a sample
    uniformly within that class. Classes with no samples get probability 0.

    Args:
        labels: 1-D integer class indices ``(N,)`` of the data set being sampled.
        q: exponent (``1`` instance-, ``0`` class-balanced, ``0.5`` square-root). Default 1.
        num_samples: indices per epoch **over all replicas** (default ``N``). Each rank yields
            ``ceil(num_samples / num_replicas)`` (``floor`` with ``drop_last``).
        seed: base seed; the draw of epoch ``e`` uses ``torch.Generator().manual_seed(seed + e)``.
        num_replicas: number of processes (default: world size if ``torch.distributed`` is
            initialised, else 1).
        rank: this process's rank (default: ``torch.distributed`` rank, else 0).
        drop_last: round the per-rank length down instead of up.

    Raises:
        ValueError: bad ``labels``, ``q`` not finite, ``num_samples < 1``, bad ``num_replicas``
            / ``rank``, ``drop_last`` with fewer samples than replicas.
    """

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int],
        *,
        q: float = 1.0,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        self.labels = _labels_tensor(labels)
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q):
            raise ValueError(f"q: expected a finite number, got {q!r}")
        if num_samples is None:
            num_samples = int(self.labels.numel())
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected an int >= 1, got {num_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        self.num_replicas, self.rank = _replicas(num_replicas, rank)
        if drop_last and num_samples < self.num_replicas:
            raise ValueError(
                f"num_samples: {num_samples} with drop_last leaves nothing for "
                f"{self.num_replicas} replicas"
            )
        self.q = float(q)
        self.seed = seed
        self.epoch = 0
        self.drop_last = drop_last
        self.num_samples_total = num_samples
        if drop_last:
            self.num_samples = num_samples // self.num_replicas
        else:
            self.num_samples = math.ceil(num_samples / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        counts = torch.bincount(self.labels)
        self.class_counts = counts
        self._order = torch.argsort(self.labels, stable=True)
        self._starts = torch.cumsum(counts, 0) - counts

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; the draw is a function of ``(seed, epoch)`` only."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: expected an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def class_probabilities(self) -> torch.Tensor:
        """``p_c`` (float64, shape ``(C,)``) used for the current epoch; 0 for empty classes."""
        counts = self.class_counts.to(torch.float64)
        present = counts > 0
        weights = torch.where(present, counts.clamp(min=1.0) ** self.q, torch.zeros_like(counts))
        return weights / weights.sum()

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def global_indices(self) -> torch.Tensor:
        """The global draw of this epoch, ``(total_size,)`` int64, identical on every rank."""
        generator = self._generator()
        classes = torch.multinomial(
            self.class_probabilities(), self.total_size, replacement=True, generator=generator
        )
        sizes = self.class_counts[classes]
        offsets = (
            torch.rand(self.total_size, generator=generator, dtype=torch.float64) * sizes
        ).long()
        offsets = torch.minimum(offsets, sizes - 1)
        return self._order[self._starts[classes] + offsets]

    def __iter__(self) -> Iterator[int]:
        shard = self.global_indices()[self.rank : self.total_size : self.num_replicas]
        return iter(shard.tolist())

    def __len__(self) -> int:
        return self.num_samples


class InstanceBalancedSampler(ClassAwareSampler):
    """Instance-balanced sampling (``q = 1``): every sample equally likely.

    With ``replacement=False`` (default) the global draw is a random permutation of all ``N``
    indices (repeated with fresh permutations if ``num_samples > N``), i.e. ordinary shuffling;
    with ``replacement=True`` it draws i.i.d. like the other samplers.
    """

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int],
        *,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        replacement: bool = False,
    ) -> None:
        super().__init__(
            labels,
            q=1.0,
            num_samples=num_samples,
            seed=seed,
            num_replicas=num_replicas,
            rank=rank,
            drop_last=drop_last,
        )
        self.replacement = bool(replacement)

    def global_indices(self) -> torch.Tensor:
        if self.replacement:
            return super().global_indices()
        generator = self._generator()
        n = int(self.labels.numel())
        rounds = math.ceil(self.total_size / n)
        perms = [torch.randperm(n, generator=generator) for _ in range(rounds)]
        return torch.cat(perms)[: self.total_size]


class _FixedExponentSampler(ClassAwareSampler):
    """A :class:`ClassAwareSampler` whose exponent ``q`` is fixed by the subclass (``_Q``)."""

    _Q: float

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int],
        *,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            labels,
            q=self._Q,
            num_samples=num_samples,
            seed=seed,
            num_replicas=num_replicas,
            rank=rank,
            drop_last=drop_last,
        )


class ClassBalancedSampler(_FixedExponentSampler):
    """Class-balanced sampling (``q = 0``): pick a class uniformly, then a sample in it."""

    _Q = 0.0


class SquareRootSampler(_FixedExponentSampler):
    """Square-root sampling (``q = 1/2``; Mahajan et al. 2018): ``p_c ∝ sqrt(n_c)``."""

    _Q = 0.5


class ProgressivelyBalancedSampler(ClassAwareSampler):
    """Progressively balanced sampling (Kang et al. ICLR 2020).

    .. math:: p_c(t) = (1 - t/T)\\, p_c^{IB} + (t/T)\\, p_c^{CB}

    with ``p^IB_c = n_c / N``, ``p^CB_c = 1 / C'`` (``C'`` non-empty classes), ``t`` the epoch set
    by :meth:`set_epoch` (clamped to ``[0, T]``) and ``T = total_epochs``.

    Args:
        labels: 1-D integer class indices.
        total_epochs: ``T >= 1``.
        num_samples, seed, num_replicas, rank, drop_last: as in :class:`ClassAwareSampler`.
    """

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int],
        *,
        total_epochs: int,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"total_epochs: expected an int >= 1, got {total_epochs!r}")
        super().__init__(
            labels,
            q=1.0,
            num_samples=num_samples,
            seed=seed,
            num_replicas=num_replicas,
            rank=rank,
            drop_last=drop_last,
        )
        self.total_epochs = total_epochs

    def class_probabilities(self) -> torch.Tensor:
        counts = self.class_counts.to(torch.float64)
        instance = counts / counts.sum()
        present = (counts > 0).to(torch.float64)
        balanced = present / present.sum()
        t = min(self.epoch, self.total_epochs) / self.total_epochs
        return (1.0 - t) * instance + t * balanced
