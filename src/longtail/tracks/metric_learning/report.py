"""The metric-learning part of a run's report: what its test set is, in the text above the table.

Registered with the report (:func:`longtail.engine.report.register_prose`) when the track is
imported.
"""

from __future__ import annotations

from longtail.engine.report import TaskProse, register_prose

__all__: list[str] = []

TASK = "metric-learning"

register_prose(
    TASK,
    TaskProse(
        test_set="retrieval is evaluated on the test images of the classes not seen in training; "
        "Recall@K: a query counts if one of its K nearest neighbours (itself excluded) has its "
        "class"
    ),
)
