"""Open-set recognition (``task: open-set``): known / unknown class splits, max-softmax and
max-logit scores, GCPL, RPL, ARPL (+CS); AUROC, OSCR and closed-set accuracy."""

from __future__ import annotations

from longtail.engine.kinds import TaskKind, register_task_kind
from longtail.tracks.open_set.task import (
    OPEN_SET_METHODS,
    OPEN_SET_METRICS,
    OpenSetTask,
    build_open_set_data,
    open_set_finish_config,
)

__all__ = ["KIND", "OpenSetTask"]

KIND = register_task_kind(
    TaskKind(
        name="open-set",
        metrics=OPEN_SET_METRICS,
        methods=OPEN_SET_METHODS,
        build_data=lambda c, variant, seed: build_open_set_data(c, 0 if seed is None else seed),
        stage_task=lambda m, d, c, p: OpenSetTask(m, d, c, params=p),
        finish_task=lambda m, d, c, s, p: OpenSetTask(m, d, c, params=p, stage_state=s),
        finish_config=open_set_finish_config,
        data_per_seed=True,
    )
)
