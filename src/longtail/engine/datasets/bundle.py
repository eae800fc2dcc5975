"""The data of a run as the trainer reads them: :class:`DataBundle`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from longtail.engine.datasets.preprocessing import Preprocessing

__all__ = ["DataBundle", "DataWarning"]


class DataWarning(UserWarning):
    """A remark about the data of a run that is not an error (e.g. a multi-label label without a
    training positive). A data builder warns with it and puts the same text in
    :attr:`DataBundle.notes`; ``longtail bench`` prints the notes as ``note:`` lines on standard
    error instead of the warnings."""


@dataclass
class DataBundle:
    """Training and test tensors of a run.

    Attributes:
        name: data set name.
        train_x, train_y: training inputs (float32, ``(N, D)`` or ``(N, C, H, W)``) and int64 labels.
        test_x, test_y: the balanced test set.
        class_names: one name per class.
        class_counts: training images per class.
        group_counts: counts used to group classes into many / medium / few (the long-tailed counts,
            also for the balanced reference run, so that the groups are the same classes).
        imbalance_factor: the configured imbalance factor (``None``: data used as is).
        extra_splits: further named evaluation splits besides ``test`` (see :attr:`eval_splits`).
        train_dataset: lazy data (image folders): a map-style ``Dataset`` whose item ``i`` is
            ``(x_i, y_i)`` for training example ``i`` (``train_y[i]``); ``train_x`` is then an
            empty ``(0, ...)`` placeholder that only gives the input shape. ``None``: in memory.
        eval_datasets: lazy evaluation splits by name (``test``), read instead of
            :attr:`eval_splits`' tensors of the same name.
        split: the hold-out made when the data has no test set (``test``: row indices or file
            names, plus how it was drawn); written to ``split.json`` by :func:`write_split`.
        num_workers: ``DataLoader`` workers for the lazy datasets.
        evaluated_on: ``"test"``, or ``"validation"`` when the evaluation splits were held out of
            the training data (``data.validation_fraction``, see :func:`hold_out_validation`).
        feature_scaling: the scaling of feature vectors (``data.feature_scaling`` resolved:
            ``standard``, ``maxabs`` or ``none``); ``None`` for data not scaled so (images, digits).
        notes: remarks about the data for the user (one sentence each; see :class:`DataWarning`).
        preprocessing: the steps from raw inputs to the network's inputs (standardisation
            statistics of the training subset, image size, feature names), when known: what a
            model bundle applies to new inputs (:class:`~longtail.engine.datasets.Preprocessing`).
        details: JSON-serialisable facts the data building decided (e.g. the labels a multi-label
            set dropped or scores), recorded in ``results.json`` as ``data_details``.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    class_names: list[str]
    class_counts: list[int]
    group_counts: list[int]
    imbalance_factor: float | None
    extra_splits: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    train_dataset: Dataset[Any] | None = None
    eval_datasets: dict[str, Dataset[Any]] = field(default_factory=dict)
    split: dict[str, Any] | None = None
    num_workers: int = 0
    evaluated_on: str = "test"
    feature_scaling: str | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None

    @property
    def lazy(self) -> bool:
        """The training examples are read from :attr:`train_dataset`, not held in ``train_x``."""
        return self.train_dataset is not None

    @property
    def eval_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Named evaluation splits ``{name: (x, y)}``: ``test`` first, then ``extra_splits``
        (e.g. ``unknown`` for open set)."""
        return {"test": (self.test_x, self.test_y), **self.extra_splits}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train_x.ndim == 4
