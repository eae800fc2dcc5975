"""Per-label figures of many labels: bins of 3- and 4-digit ranks get tilted, one-line tick labels;
up to 100 labels the axis is drawn as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from longtail.engine.report.per_class import _class_axis, _crowded
from longtail.engine.report.sections import ReportContext


def _axis_crowded(num_labels: int) -> bool:
    counts = sorted((1000 // (j + 1) for j in range(num_labels)), reverse=True)
    ctx = ReportContext(
        run_dir=Path("."),
        results={"class_counts": counts, "class_names": [f"label {j}" for j in range(num_labels)]},
        runs={"bce": [{"details": {}}]},
        config={},
        names=["bce"],
        styles={},
    )
    axis = _class_axis(ctx, "positives", "label")
    assert axis.binned == (num_labels > 30)
    width = max(9.0, min(12.0, 0.32 * len(axis.bins) + 4.0))  # as per_item_sections sizes it
    return _crowded(axis, width)


@pytest.mark.parametrize(
    ("num_labels", "crowded"), [(20, False), (40, False), (100, False), (300, True), (983, True)]
)
def test_many_label_ticks_are_crowded(num_labels: int, crowded: bool) -> None:
    assert _axis_crowded(num_labels) is crowded
