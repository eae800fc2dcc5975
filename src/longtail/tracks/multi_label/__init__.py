"""Multi-label classification (``task: multi-label``): BCE, focal, ASL, class-balanced and Hill
losses, repeat-factor sampling, hidden labels; Mulan folders, tables and Fashion-tiles."""

from __future__ import annotations

from typing import Any, NoReturn

from longtail.engine.kinds import ConfigSection, TaskKind, register_task_kind
from longtail.tracks.multi_label import report  # noqa: F401  (registers its report sections)
from longtail.tracks.multi_label.config import MultiLabelConfig
from longtail.tracks.multi_label.data import build_multilabel_data  # registers its data formats
from longtail.tracks.multi_label.losses import LOSS_COMPONENTS
from longtail.tracks.multi_label.methods import MULTILABEL_METHODS, VOCABULARY
from longtail.tracks.multi_label.sklearn import sklearn_reference
from longtail.tracks.multi_label.task import MULTILABEL_METRICS, MultiLabelTask

__all__ = ["KIND", "MULTILABEL_METHODS", "MultiLabelConfig", "MultiLabelTask"]


def _no_finish(*args: Any) -> NoReturn:
    raise ValueError("multi-label methods have no second stage or post-hoc step")


KIND = register_task_kind(
    TaskKind(
        name="multi-label",
        labels="multi",
        metrics=MULTILABEL_METRICS,
        methods=MULTILABEL_METHODS,
        build_data=lambda c, variant, seed: build_multilabel_data(c.data),
        stage_task=lambda m, d, c, p: MultiLabelTask(m, d, c, params=p),
        finish_task=_no_finish,
        finish_config=_no_finish,
        vocabulary=VOCABULARY,
        sklearn_reference=sklearn_reference,
        section=ConfigSection(
            "multi_label", MultiLabelConfig, "how the training loss is reduced over labels"
        ),
        recipe_help=lambda: (
            "Compose your own in a config's `recipes:` section (with task: multi-label) from: "
            f"loss {{{', '.join(LOSS_COMPONENTS)}}}, sampler {{instance, rfs}} (see docs/cli.md)."
        ),
    )
)
