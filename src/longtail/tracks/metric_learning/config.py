"""The ``metric_learning:`` config section and the checks of ``task: metric-learning``.

What needs the data (the classes of ``train_classes``, the teacher checkpoint) is checked when the
data are built, before the run folder is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from longtail.engine.config import (
    Config,
    ConfigError,
    ModelConfig,
    check_teacher_model,
    option,
    option_meta,
)
from longtail.engine.datasets import class_split_formats

__all__ = ["MetricLearningConfig", "MetricTeacherConfig", "check_metric_learning_config"]


@dataclass
class MetricTeacherConfig:
    """The teacher embedding network of ``task: metric-learning``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    embedding_dim: int = option(128, ge=1, doc="teacher embedding size")
    checkpoint: str | None = option(
        None, doc="load the teacher's weights from this file instead of training it"
    )


@dataclass
class MetricLearningConfig:
    """``task: metric-learning``: seen / unseen classes, embeddings, triplet loss, batches."""

    train_classes: list[int] = field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        metadata=option_meta(
            ge=0, doc="classes trained on; the test images of every other class are evaluated"
        ),
    )
    embedding_dim: int = option(64, ge=1, doc="student embedding size")
    classes_per_batch: int = option(
        5, ge=2, doc="P of the P x K batches (K = train.batch_size / P images per class)"
    )
    margin: float = option(0.2, gt=0.0, doc="triplet margin (teacher and the triplet student)")
    mining: str = option(
        "all",
        choices=("all", "batch_hard"),
        doc="triplets of a batch (mine_triplets): every valid one, or each anchor's hardest",
    )
    teacher: MetricTeacherConfig = field(default_factory=MetricTeacherConfig)


def check_metric_learning_config(cfg: Config) -> None:
    """``task: metric-learning``: classes, P x K batches, the teacher, what it refuses."""
    d = cfg.data
    if cfg.model.factory is not None:
        raise ConfigError(
            f"config key 'model.factory': not available with task {cfg.task} (student and "
            "teacher are built from the built-in backbones)"
        )
    check_teacher_model(
        "metric_learning.teacher.model",
        (cfg.metric_learning or MetricLearningConfig()).teacher.model,
    )
    if d.validation_fraction is not None:
        raise ConfigError(
            "config key 'data.validation_fraction': not available for task metric-learning "
            "(its evaluation classes are unseen in training, so the training data holds none "
            "of them)"
        )
    m = cfg.metric_learning or MetricLearningConfig()
    classes = m.train_classes
    if len(classes) < 2:
        raise ConfigError(
            "config key 'metric_learning.train_classes': needs at least 2 classes (a triplet "
            f"needs a negative), got {classes}"
        )
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ConfigError(
            f"config key 'metric_learning.train_classes': duplicate class {dup[0]} in {classes}"
        )
    if m.classes_per_batch > len(classes):
        raise ConfigError(
            f"config key 'metric_learning.classes_per_batch': {m.classes_per_batch} is more than "
            f"the {len(classes)} training classes"
        )
    per_class, rest = divmod(cfg.train.batch_size, m.classes_per_batch)
    if rest or per_class < 2:
        raise ConfigError(
            f"config key 'train.batch_size': a P x K batch of metric_learning.classes_per_batch "
            f"P = {m.classes_per_batch} classes needs a multiple of P with K >= 2 images per "
            f"class (a positive), got {cfg.train.batch_size}"
        )
    class_split = class_split_formats()
    if d.dataset not in class_split:
        raise ConfigError(
            f"config key 'data.dataset': task metric-learning splits an in-memory data set with "
            f"a test split into seen and unseen classes ({', '.join(class_split)}), got "
            f"{d.dataset!r}"
        )
    for key, bad, why in (
        ("data.balanced_reference", d.balanced_reference, "the reference is a classifier"),
        ("data.class_order", d.class_order != "fixed", "classes are listed in train_classes"),
    ):
        if bad:
            raise ConfigError(f"config key '{key}': not used by task metric-learning ({why})")
