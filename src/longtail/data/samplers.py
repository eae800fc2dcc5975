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

For multi-label data, :class:`RepeatFactorSampler` implements repeat-factor sampling (Gupta,
Dollar, Girshick, "LVIS: A Dataset for Large Vocabulary Instance Segmentation", CVPR 2019): an
example is repeated ``r_i = max_{l in labels(i)} max(1, sqrt(t / f_l))`` times per epoch (in
expectation), ``f_l`` being the fraction of examples with label ``l``. It follows the same
contract (``set_epoch``, ``global_indices``, sharding, ``drop_last``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "ClassAwareSampler",
    "ClassBalancedSampler",
    "InstanceBalancedSampler",
    "ProgressivelyBalancedSampler",
    "RepeatFactorSampler",
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


class _ShardedSampler(Sampler[int]):
    """The sharding contract every sampler here keeps (see the module docstring).

    A subclass validates its inputs, calls :meth:`_shard` and implements :meth:`global_indices`,
    the epoch's global draw of ``total_size`` indices from :meth:`_generator`.
    """

    num_replicas: int
    rank: int
    num_samples: int
    total_size: int

    def _shard(self, num_samples: int, seed: int, drop_last: bool) -> None:
        """Per-rank length (``ceil``, or ``floor`` with ``drop_last``) and the epoch state."""
        if drop_last and num_samples < self.num_replicas:
            raise ValueError(
                f"num_samples: {num_samples} with drop_last leaves nothing for "
                f"{self.num_replicas} replicas"
            )
        self.seed = seed
        self.epoch = 0
        self.drop_last = drop_last
        self.num_samples_total = num_samples
        if drop_last:
            self.num_samples = num_samples // self.num_replicas
        else:
            self.num_samples = math.ceil(num_samples / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; the draw is a function of ``(seed, epoch)`` only."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: expected an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def global_indices(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        shard = self.global_indices()[self.rank : self.total_size : self.num_replicas]
        return iter(shard.tolist())

    def __len__(self) -> int:
        return self.num_samples


class ClassAwareSampler(_ShardedSampler):
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

    Example:
        >>> from longtail.data import ClassAwareSampler
        >>> labels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]  # 9 : 1
        >>> sampler = ClassAwareSampler(labels, q=0.5, num_samples=8, seed=0)
        >>> [round(p, 4) for p in sampler.class_probabilities().tolist()]  # 3 : 1
        [0.75, 0.25]
        >>> indices = list(sampler)
        >>> len(indices), all(0 <= i < 10 for i in indices)
        (8, True)
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
        self._shard(num_samples, seed, drop_last)
        self.q = float(q)
        counts = torch.bincount(self.labels)
        self.class_counts = counts
        self._order = torch.argsort(self.labels, stable=True)
        self._starts = torch.cumsum(counts, 0) - counts

    def class_probabilities(self) -> torch.Tensor:
        """``p_c`` (float64, shape ``(C,)``) used for the current epoch; 0 for empty classes."""
        counts = self.class_counts.to(torch.float64)
        present = counts > 0
        weights = torch.where(present, counts.clamp(min=1.0) ** self.q, torch.zeros_like(counts))
        return weights / weights.sum()

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


class InstanceBalancedSampler(ClassAwareSampler):
    """Instance-balanced sampling (``q = 1``): every sample equally likely.

    With ``replacement=False`` (default) the global draw is a random permutation of all ``N``
    indices (repeated with fresh permutations if ``num_samples > N``), i.e. ordinary shuffling;
    with ``replacement=True`` it draws i.i.d. like the other samplers.

    Example:
        >>> from longtail.data import InstanceBalancedSampler
        >>> sampler = InstanceBalancedSampler([0, 0, 0, 1], seed=0)  # a shuffled permutation
        >>> sorted(sampler)
        [0, 1, 2, 3]
        >>> sampler.class_probabilities().tolist()
        [0.75, 0.25]
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
    """Class-balanced sampling (``q = 0``): pick a class uniformly, then a sample in it.

    Example:
        >>> from longtail.data import ClassBalancedSampler
        >>> labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2])
        >>> sampler = ClassBalancedSampler(labels, num_samples=900, seed=0)
        >>> sampler.class_probabilities().tolist()
        [0.3333333333333333, 0.3333333333333333, 0.3333333333333333]
        >>> drawn = torch.bincount(labels[list(sampler)], minlength=3)
        >>> bool((drawn - 300).abs().max() < 60)  # about 300 of each class
        True
    """

    _Q = 0.0


class SquareRootSampler(_FixedExponentSampler):
    """Square-root sampling (``q = 1/2``; Mahajan et al. 2018): ``p_c ∝ sqrt(n_c)``.

    Example:
        >>> from longtail.data import SquareRootSampler
        >>> sampler = SquareRootSampler([0] * 16 + [1] * 4, seed=0)  # sqrt: 4 : 2
        >>> [round(p, 4) for p in sampler.class_probabilities().tolist()]
        [0.6667, 0.3333]
        >>> len(sampler)
        20
    """

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

    Example:
        >>> from longtail.data import ProgressivelyBalancedSampler
        >>> sampler = ProgressivelyBalancedSampler([0, 0, 0, 1], total_epochs=4, seed=0)
        >>> sampler.class_probabilities().tolist()  # epoch 0: instance-balanced
        [0.75, 0.25]
        >>> sampler.set_epoch(2)
        >>> sampler.class_probabilities().tolist()  # halfway
        [0.625, 0.375]
        >>> sampler.set_epoch(4)
        >>> sampler.class_probabilities().tolist()  # class-balanced
        [0.5, 0.5]
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


def _multilabel_targets(
    targets: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
) -> torch.Tensor:
    """``targets`` as a float64 ``(N, L)`` CPU tensor with entries in ``{1, 0, -1}``."""
    try:
        tensor = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"targets: expected a (N, L) tensor / array of 1, 0, -1, got "
            f"{type(targets).__name__} ({exc})"
        ) from None
    if tensor.dtype.is_complex:
        raise TypeError(f"targets: expected a real or bool tensor, got dtype {tensor.dtype}")
    if tensor.ndim != 2:
        raise ValueError(
            f"targets: expected a 2-D (N, L) multi-label matrix, got shape {tuple(tensor.shape)}"
        )
    if tensor.numel() == 0:
        raise ValueError(f"targets: empty, shape {tuple(tensor.shape)}")
    tensor = tensor.detach().to("cpu", torch.float64)
    valid = (tensor == 1) | (tensor == 0) | (tensor == -1)
    if not bool(valid.all()):
        row, col = (int(v) for v in torch.nonzero(~valid)[0])
        raise ValueError(
            f"targets: entries must be 1 (positive), 0 (negative) or -1 (unknown), got "
            f"{float(tensor[row, col])!r} at [{row}, {col}]"
        )
    return tensor


class RepeatFactorSampler(_ShardedSampler):
    """Repeat-factor sampling for multi-label data (Gupta, Dollar, Girshick, LVIS, CVPR 2019).

    With ``N`` training examples, ``targets`` ``(N, L)`` and threshold ``t``, label ``l`` has
    frequency ``f_l = #{i : targets[i, l] == 1} / N`` and repeat factor

    .. math:: r_l = \\max\\left(1, \\sqrt{t / f_l}\\right)

    (labels without any positive example have no factor and are ignored; ``-1``, unknown, counts
    as not positive). Example ``i`` gets the largest factor of its positive labels,

    .. math:: r_i = \\max_{l : y_{il} = 1} r_l

    and ``r_i = 1`` if it has no positive label. So labels with ``f_l >= t`` are not
    over-sampled and an example of a rare label is repeated about ``sqrt(t / f_l)`` times.

    **One epoch** (generator ``torch.Generator().manual_seed(seed + epoch)``, same on every rank):

    1. *stochastic rounding*: ``u = torch.rand(N, dtype=float64)``; example ``i`` is repeated
       ``floor(r_i) + (u_i < r_i - floor(r_i))`` times (``r_i`` in expectation, at least once);
    2. the resulting list of indices (ascending, each repeated) is shuffled with
       ``torch.randperm`` of its length;
    3. steps 1-2 are repeated (new rounds from the same generator, appended) until the list holds
       at least ``total_size`` indices, and the list is cut to ``total_size``.

    The length of a round varies with the draw (its expectation is ``sum_i r_i``), but a
    sampler's length must be known before iterating and every rank must take the same number of
    steps (DDP), so the epoch has a **fixed** global length: ``num_samples`` (default
    ``round(sum_i r_i)``, the expected round size), padded up to ``total_size = num_replicas *
    len(self)``. A round longer than that is truncated (a uniform random subset of it, since it is
    shuffled), a shorter one is continued by the next round; each example therefore appears
    ``r_i * total_size / sum_j r_j`` times per epoch in expectation, i.e. about ``r_i`` times with
    the default ``num_samples``. Rank ``k`` keeps ``global[k::num_replicas]`` like the other
    samplers of this module.

    Args:
        targets: multi-label matrix ``(N, L)`` (float, int or bool) with entries ``1``
            (positive), ``0`` (negative), ``-1`` (unknown).
        threshold: ``t`` in ``(0, 1]``; default ``0.001`` as in LVIS.
        num_samples: indices per epoch **over all replicas** (default ``round(sum_i r_i)``).
            Each rank yields ``ceil(num_samples / num_replicas)`` (``floor`` with ``drop_last``).
        seed: base seed; epoch ``e`` uses ``torch.Generator().manual_seed(seed + e)``.
        num_replicas: number of processes (default: world size if ``torch.distributed`` is
            initialised, else 1).
        rank: this process's rank (default: ``torch.distributed`` rank, else 0).
        drop_last: round the per-rank length down instead of up.

    Attributes:
        repeat_factors: ``r_i``, float64 ``(N,)``, all ``>= 1``.
        label_factors: ``r_l``, float64 ``(L,)``; NaN for labels with no positive example.
        label_frequencies: ``f_l``, float64 ``(L,)``.

    Raises:
        ValueError: ``targets`` not 2-D, empty or with entries outside ``{1, 0, -1}``;
            ``threshold`` not a number in ``(0, 1]``; ``num_samples < 1``; bad ``seed``,
            ``num_replicas`` / ``rank``; ``drop_last`` with fewer samples than replicas.
        TypeError: ``targets`` not convertible to a real tensor.

    Example:
        >>> y = torch.tensor([[1, 0], [1, 0], [1, 0], [0, 1]])
        >>> s = RepeatFactorSampler(y, threshold=1.0)
        >>> s.label_factors.tolist(), s.repeat_factors.tolist()
        ([1.1547005383792515, 2.0], [1.1547005383792515, 1.1547005383792515, 1.1547005383792515, 2.0])
        >>> len(s)  # round(3 * 1.1547 + 2)
        5
    """

    def __init__(
        self,
        targets: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
        *,
        threshold: float = 0.001,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        matrix = _multilabel_targets(targets)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not 0.0 < threshold <= 1.0  # also refuses NaN
        ):
            raise ValueError(f"threshold: expected a number in (0, 1], got {threshold!r}")
        if num_samples is not None and (
            isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
        ):
            raise ValueError(f"num_samples: expected an int >= 1, got {num_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        self.num_replicas, self.rank = _replicas(num_replicas, rank)
        n = matrix.shape[0]
        positive = matrix == 1
        frequencies = positive.sum(0).to(torch.float64) / n
        present = frequencies > 0
        factors = torch.sqrt(float(threshold) / frequencies.clamp(min=1.0 / n)).clamp(min=1.0)
        self.threshold = float(threshold)
        self.label_frequencies = frequencies
        self.label_factors = torch.where(present, factors, torch.full_like(factors, math.nan))
        per_entry = torch.where(positive, factors.expand_as(matrix), torch.ones_like(matrix))
        self.repeat_factors = per_entry.max(1).values
        if num_samples is None:
            num_samples = max(1, round(float(self.repeat_factors.sum())))
        self._shard(num_samples, seed, drop_last)
        self._floor = torch.floor(self.repeat_factors)
        self._frac = self.repeat_factors - self._floor

    def _round(self, generator: torch.Generator) -> torch.Tensor:
        """One stochastically rounded, shuffled round: every ``i`` about ``r_i`` times."""
        n = self.repeat_factors.numel()
        extra = torch.rand(n, generator=generator, dtype=torch.float64) < self._frac
        repeats = self._floor.long() + extra.long()
        indices = torch.repeat_interleave(torch.arange(n), repeats)
        return indices[torch.randperm(indices.numel(), generator=generator)]

    def global_indices(self) -> torch.Tensor:
        """The global draw of this epoch, ``(total_size,)`` int64, identical on every rank."""
        generator = self._generator()
        rounds: list[torch.Tensor] = []
        size = 0
        while size < self.total_size:
            rounds.append(self._round(generator))
            size += rounds[-1].numel()
        return torch.cat(rounds)[: self.total_size]
