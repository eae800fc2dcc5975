"""``cifar10`` / ``cifar100``: the python batches of CIFAR in ``data.data_dir``
(:func:`longtail.data.load_cifar`): the official train split is the pool and the official
(balanced) test split is the test set. Images are scaled to ``[0, 1]`` and standardised with the
training subset's per-channel mean and std."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from longtail.data import load_cifar
from longtail.engine.datasets.formats import DataFormat, LoadedData, register_data_format

if TYPE_CHECKING:
    from longtail.engine.config import DataConfig

__all__ = ["CIFAR_FORMATS"]


def _load(cfg: DataConfig, source: Path | None) -> LoadedData:
    assert source is not None
    train = load_cifar(source, split="train")
    test = load_cifar(source, split="test")
    num_classes = int(train.targets.max()) + 1
    names = list(train.class_names or [str(c) for c in range(num_classes)])
    return LoadedData(train.data, train.targets.long(), test.data, test.targets.long(), names)


CIFAR_FORMATS = tuple(
    register_data_format(
        DataFormat(
            name=name,
            load=_load,
            class_split=True,
            doc=f"{name.upper()} python batches",
            fetch=name,
        )
    )
    for name in ("cifar10", "cifar100")
)
