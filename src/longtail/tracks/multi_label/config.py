"""The ``multi_label:`` config section: how the training loss of ``task: multi-label`` is reduced.

``label_reduction`` says what one optimiser step sees of each label:

- ``mean`` (when the section is absent): the loss averaged over every known (row, label) entry of
  the batch, ``sum_{i,j known} l_ij / #known``. Each label's output then gets ``1 / L`` of the
  gradient it would get if it were trained alone, so with many labels (Enron's 53) a learning rate
  that suits one label barely moves any of them.
- ``sum``: summed over the labels of a row and averaged over the rows,
  ``sum_{i,j known} l_ij / N`` (the convention of the ASL code, which sums its loss, and of one
  logistic regression per label): each label learns at the pace it would alone, whatever ``L``.

See docs/results.md ("Multi-label: why the baseline won on text sets") for the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from longtail.engine.config import option

__all__ = ["LABEL_REDUCTIONS", "MultiLabelConfig"]

LABEL_REDUCTIONS = ("mean", "sum")


@dataclass
class MultiLabelConfig:
    """``task: multi-label``: how the training loss is reduced over labels."""

    label_reduction: str = option(
        "mean",
        choices=LABEL_REDUCTIONS,
        doc="mean: over every known (row, label) entry; sum: over a row's labels, mean over rows",
    )
