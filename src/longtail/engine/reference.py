"""The scikit-learn reference row (``data.sklearn_reference``): what a track's hook returns, and how
its test scores go through the task's own evaluation.

A task kind that offers the row sets :attr:`~longtail.engine.kinds.TaskKind.sklearn_reference` to a
function ``(data, config) -> SklearnReference`` that fits a scikit-learn estimator on the data's
training split (the same inputs the methods train on) and scores the evaluation split with
:func:`evaluate_scores`: the scores are fed to the task's ``evaluate`` as if a model had produced
them, so the row is measured by exactly the metric code of the methods. The runner
(:mod:`longtail.engine.runner.reference`) writes it like any other row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from longtail.engine import distributed as D
from longtail.engine.batches import eval_batches
from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.tasks import Evaluation, Task

__all__ = ["SklearnReference", "evaluate_scores"]


@dataclass(frozen=True)
class SklearnReference:
    """A fitted scikit-learn reference, scored (what :attr:`TaskKind.sklearn_reference` returns).

    Attributes:
        evaluation: the task's evaluation of its test scores (:func:`evaluate_scores`).
        estimator: one phrase naming the estimator and how it covers the classes, for the report
            (e.g. ``"LogisticRegression, one per label (one-vs-rest)"``).
        settings: the estimator's settings (``C``, ``solver``, ``max_iter``...), recorded in
            ``results.json``.
        info: what the fit found (converged, iterations, labels scored by a constant...).
    """

    evaluation: Evaluation
    estimator: str
    settings: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class _GivenScores(nn.Module):
    """Returns its input: the evaluation batches carry the reference's test scores.

    Its empty buffer sits on the run's device, where the task's evaluation puts its metric states
    (a distributed run synchronises them there)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.register_buffer("anchor", torch.empty(0, device=device))

    def forward(self, x: Tensor) -> Tensor:
        return x


def evaluate_scores(task: Task, data: DataBundle, config: Config, scores: Tensor) -> Evaluation:
    """``task.evaluate`` of ``scores``, the ``(N, C)`` outputs (logits) for ``data.test_x``.

    The scores are batched and sharded as the trainer batches the test split (this process's
    shard under ``torchrun``), so the metrics are computed, and synchronised, by the same code as
    for the methods' models.
    """
    if scores.shape[0] != data.test_y.shape[0]:
        raise ValueError(
            f"scores: one row per test example ({data.test_y.shape[0]}), got {scores.shape[0]}"
        )
    device = D.resolve_device(config.train.device)
    local_batch = max(config.train.batch_size // D.world_size(), 1)
    given = dataclasses.replace(data, test_x=scores, extra_splits={}, eval_datasets={})
    splits = eval_batches(given, D.rank(), D.world_size(), local_batch, device)
    return task.evaluate(_GivenScores(device), splits)
