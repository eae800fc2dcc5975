"""Knowledge distillation on long-tailed data (``task: distillation``): a teacher stage, then KD,
DKD and RKD students."""

from __future__ import annotations

from longtail.engine.classifier import CLASSIFIER_METRICS
from longtail.engine.kinds import TaskKind, register_task_kind
from longtail.tracks.distillation.task import (
    DISTILL_METHODS,
    DistillTask,
    build_distill_data,
    distill_finish_config,
    distill_finish_task,
    distill_stage_config,
    distill_stage_task,
)

__all__ = ["KIND", "DistillTask"]

KIND = register_task_kind(
    TaskKind(
        name="distillation",
        metrics=CLASSIFIER_METRICS,
        methods=DISTILL_METHODS,
        build_data=build_distill_data,
        stage_task=distill_stage_task,
        finish_task=distill_finish_task,
        finish_config=distill_finish_config,
        stage_config=distill_stage_config,
    )
)
