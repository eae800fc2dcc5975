"""The ``open_set:`` config section (the known-class splits) and the checks of ``task: open-set``."""

from __future__ import annotations

from dataclasses import dataclass, field

from longtail.engine.config import Config, ConfigError, option_meta
from longtail.engine.datasets import class_split_formats

__all__ = ["MNIST_OPEN_SET_SPLITS", "OpenSetConfig", "check_open_set_config"]

#: The five known-class splits of MNIST in the open-set literature (the ARPL code's): 6 known
#: classes, the other 4 unknown. Seed ``i`` of an open-set run trains on split ``i``.
MNIST_OPEN_SET_SPLITS: tuple[tuple[int, ...], ...] = (
    (2, 4, 5, 9, 8, 3),
    (3, 2, 6, 9, 4, 0),
    (5, 8, 3, 2, 4, 6),
    (3, 7, 8, 4, 0, 5),
    (6, 3, 4, 9, 8, 2),
)


@dataclass
class OpenSetConfig:
    """Open-set protocol (``task: open-set``): which classes are known in each split."""

    splits: list[list[int]] = field(
        default_factory=lambda: [list(s) for s in MNIST_OPEN_SET_SPLITS],
        metadata=option_meta(
            ge=0,
            doc="known classes of each split (the rest are unknown); seed i trains on split i",
        ),
    )


def check_open_set_config(cfg: Config) -> None:
    """``task: open-set``: the splits (known classes), the seeds that pick them, what it refuses.

    What needs the data (a class out of range, no unknown class left) is checked when the data are
    built (:func:`longtail.tracks.open_set.task.build_open_set_data`), before any training.
    """
    d = cfg.data
    splits = (cfg.open_set or OpenSetConfig()).splits
    if not splits:
        raise ConfigError("config key 'open_set.splits': must not be empty")
    for i, known in enumerate(splits):
        key = f"open_set.splits[{i}]"
        if len(known) < 2:
            raise ConfigError(
                f"config key '{key}': needs at least 2 known classes to classify, got {known}"
            )
        dup = sorted({c for c in known if known.count(c) > 1})
        if dup:
            raise ConfigError(f"config key '{key}': duplicate known class {dup[0]} in {known}")
        if len(known) != len(splits[0]):
            raise ConfigError(
                f"config key '{key}': has {len(known)} known classes but open_set.splits[0] has "
                f"{len(splits[0])}; every split of the protocol has the same number"
            )
    for k, seed in enumerate(cfg.seeds):
        if seed >= len(splits):
            raise ConfigError(
                f"config key 'seeds[{k}]': seed {seed} trains on open_set.splits[{seed}], but "
                f"open_set.splits has {len(splits)} entries (seed i uses split i)"
            )
    class_split = class_split_formats()
    if d.dataset not in class_split:
        raise ConfigError(
            f"config key 'data.dataset': task open-set splits an in-memory data set with a test "
            f"split into known and unknown classes ({', '.join(class_split)}), got "
            f"{d.dataset!r}"
        )
    if d.balanced_reference:
        raise ConfigError(
            "config key 'data.balanced_reference': not used by task open-set (the balanced "
            "reference is a single-label method); set it to false"
        )
    if d.class_order != "fixed":
        raise ConfigError(
            "config key 'data.class_order': task open-set orders the known classes as listed in "
            f"open_set.splits (the first is the head); got {d.class_order!r}"
        )
    if cfg.model.factory is not None:
        raise ConfigError(
            "config key 'model.factory': not available with task open-set (its heads work on "
            "the built-in backbones' features)"
        )
