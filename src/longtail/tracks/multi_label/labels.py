"""Which labels a multi-label run trains and scores: :func:`select_labels`.

Rare labels are the normal case in multi-label data, not an error:

- **Kept by default.** A label without a visible positive in the training rows (none in the file,
  or every positive hidden by ``data.hide_fraction``) trains as all-negative under every loss (its
  terms are all negatives; :func:`~longtail.losses.class_balanced_weights` weighs it as a label
  with one positive, repeat-factor sampling gives it no factor). A :class:`DataWarning` names such
  labels (``longtail bench`` prints it as a ``note:`` line).
- **Dropped on request.** ``data.min_label_positives: K`` drops the labels with fewer than ``K``
  visible positives in the training rows: counted on the rows the model trains on, i.e. after the
  validation split (``data.validation_fraction``) and after hiding, the counts the report shows
  and the class-balanced weights use. So it decides from training labels only, and a label the
  model sees fewer than ``K`` positives of is not trained or scored. ``K = 0`` (the default) keeps
  every label; ``K = 1`` drops exactly the labels that would train as all-negative. A dropped
  label leaves the training and the evaluated targets alike.
- **Scored where defined.** A label's average precision needs a positive in the evaluated split
  (test, or validation), so mAP, CF1's per-label averages and Tail mAP average over the *scored*
  labels, those with at least one positive there; OF1 sums over every label.

:func:`select_labels` returns the kept columns and a JSON record (``results.json``'s
``data_details``): ``min_label_positives``, ``dropped_labels`` (``column`` in the data's own label
order, ``name``, ``positives``), ``unseen_labels`` (kept labels without a training positive:
``index`` among the kept labels, ``name``), ``scored_labels`` / ``scored_label_names`` (indices
among the kept labels) and ``num_labels``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from longtail.engine.datasets import DataWarning

__all__ = ["LabelSelection", "select_labels", "unseen_labels_note"]


@dataclass
class LabelSelection:
    """The labels a run keeps (see the module docstring)."""

    columns: list[int]
    names: list[str]
    counts: list[int]
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _quoted(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def unseen_labels_note(names: list[str], where: str) -> str:
    """The remark about the labels ``names`` without a training positive."""
    n = len(names)
    return (
        f"data: {n} label{'s' if n > 1 else ''} {'have' if n > 1 else 'has'} no positive example "
        f"in the training rows{where}: {_quoted(names)}; kept, {'they train' if n > 1 else 'it trains'}"
        " as all-negative (data.min_label_positives: 1 drops such labels)"
    )


def select_labels(
    train_y: Tensor,
    eval_y: Tensor,
    names: list[str],
    *,
    min_positives: int,
    where: str = "",
) -> LabelSelection:
    """Which label columns to keep and score (see the module docstring).

    Args:
        train_y: (N, L) training targets as trained on (after the validation split and hiding;
            1 = visible positive).
        eval_y: (M, L) targets of the evaluated split (test or validation).
        names: the L label names.
        min_positives: ``data.min_label_positives``.
        where: appended to "in the training rows" in messages (e.g. " of FOLDER").

    Warns:
        DataWarning: naming the kept labels without a training positive (also in ``notes``).

    Raises:
        ValueError: naming ``data.min_label_positives`` when it drops every label, or no kept
            label has a training positive (nothing can be learned).
    """
    counts = [int(c) for c in (train_y == 1).sum(0).tolist()]
    columns = [j for j, c in enumerate(counts) if c >= min_positives]
    dropped = [
        {"column": j, "name": names[j], "positives": c}
        for j, c in enumerate(counts)
        if c < min_positives
    ]
    if not columns:
        raise ValueError(
            f"config key 'data.min_label_positives': {min_positives} drops every label (the most "
            f"visible positives of a label in the training rows{where} is {max(counts)})"
        )
    kept_counts = [counts[j] for j in columns]
    kept_names = [names[j] for j in columns]
    if max(kept_counts) == 0:
        raise ValueError(
            f"data: no label has a positive example in the training rows{where}; nothing can be "
            "learned"
        )
    unseen = [i for i, c in enumerate(kept_counts) if c == 0]
    notes = []
    if unseen:
        notes.append(unseen_labels_note([kept_names[i] for i in unseen], where))
        warnings.warn(notes[-1], DataWarning, stacklevel=3)
    has_positive = (eval_y[:, columns] == 1).any(0).tolist()
    scored = [i for i, ok in enumerate(has_positive) if ok]
    details: dict[str, Any] = {
        "num_labels": len(columns),
        "min_label_positives": int(min_positives),
        "dropped_labels": dropped,
        "unseen_labels": [{"index": i, "name": kept_names[i]} for i in unseen],
        "scored_labels": scored,
        "scored_label_names": [kept_names[i] for i in scored],
    }
    return LabelSelection(columns, kept_names, kept_counts, notes, details)
