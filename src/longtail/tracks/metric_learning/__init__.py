"""Deep metric learning with relational distillation (``task: metric-learning``): a triplet
teacher, RKD students, recall@k on unseen classes."""

from __future__ import annotations

from longtail.engine.kinds import ConfigSection, TaskKind, register_task_kind
from longtail.tracks.metric_learning import report  # noqa: F401  (registers its report sections)
from longtail.tracks.metric_learning.config import (
    MetricLearningConfig,
    check_metric_learning_config,
)
from longtail.tracks.metric_learning.task import (
    METRIC_LEARNING_METHODS,
    METRIC_LEARNING_METRICS,
    MetricLearningTask,
    build_metric_learning_data,
    metric_finish_config,
    metric_finish_task,
    metric_stage_config,
    metric_stage_task,
)

__all__ = ["KIND", "MetricLearningConfig", "MetricLearningTask"]

KIND = register_task_kind(
    TaskKind(
        name="metric-learning",
        metrics=METRIC_LEARNING_METRICS,
        methods=METRIC_LEARNING_METHODS,
        build_data=build_metric_learning_data,
        stage_task=metric_stage_task,
        finish_task=metric_finish_task,
        finish_config=metric_finish_config,
        stage_config=metric_stage_config,
        recipes_refused="its methods are the registry's; any weighted combination of their "
        "terms: method_params",
        section=ConfigSection(
            "metric_learning",
            MetricLearningConfig,
            "classes, embeddings, triplets, the teacher",
        ),
        check_config=check_metric_learning_config,
    )
)
