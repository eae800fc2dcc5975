"""Open-set recognition (``task: open-set``): known / unknown class splits, max-softmax and
max-logit scores, GCPL, RPL, ARPL (+CS); AUROC, OSCR and closed-set accuracy."""

from __future__ import annotations

from longtail.engine.kinds import ConfigSection, TaskKind, register_task_kind
from longtail.tracks.open_set import report  # noqa: F401  (registers its report sections)
from longtail.tracks.open_set.config import OpenSetConfig, check_open_set_config
from longtail.tracks.open_set.data import build_open_set_data
from longtail.tracks.open_set.evaluation import OPEN_SET_METRICS
from longtail.tracks.open_set.methods import OPEN_SET_METHODS
from longtail.tracks.open_set.task import OpenSetTask, open_set_finish_config

__all__ = ["KIND", "OpenSetConfig", "OpenSetTask"]

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
        recipes_refused="its methods are the registry's: longtail methods --task open-set; tune "
        "them with method_params",
        section=ConfigSection(
            "open_set", OpenSetConfig, "the known-class splits (default: the MNIST splits)"
        ),
        check_config=check_open_set_config,
    )
)
