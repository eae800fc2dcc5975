"""The multi-label part of a run's report: the per-label AP plots and the text around the table.

- ``plots/per_label_ap.png`` (and ``per_label_ap_grid.png`` when some methods are grey): each
  label's test AP (mean over seeds), labels by training positives, head to tail;
- the paragraphs above the table: the data (labels, visible positives per label, hidden label
  entries), the model, and how to read mAP, CF1 / OF1 and Tail mAP.

Registered with the report (:func:`longtail.engine.report.register_section`,
:func:`longtail.engine.report.register_prose`) when the track is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from longtail.engine.report import (
    ReportContext,
    Section,
    TaskProse,
    has_details,
    per_item_sections,
    register_prose,
    register_section,
)
from longtail.engine.report.prose import counts_text, data_phrase, model_text, validation_text

__all__ = ["multi_label_intro", "per_label_ap_sections"]

TASK = "multi-label"


def per_label_ap_sections(ctx: ReportContext) -> list[Section]:
    """Each label's test AP (mean over seeds), labels by training positives."""
    if not has_details(ctx, "per_label_ap"):
        return []
    return per_item_sections(
        ctx,
        "per_label_ap",
        filename="per_label_ap.png",
        title="Per-label AP",
        quantity="average precision",
        unit="positives",
        kind="label",
    )


def _validation(results: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    return validation_text(results, data, unit="the training rows")


def multi_label_intro(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    """The paragraphs above the table of a multi-label run."""
    data = cfg.get("data", {})
    counts = results["class_counts"]
    read = data_phrase(results, cfg)
    names = results.get("class_names") or []
    hidden = float(data.get("hide_fraction", 0.0) or 0.0)
    return [
        f"Data: {read}; {results.get('num_train', '?')} training and "
        f"{results.get('num_test', '?')} test examples, {len(counts)} labels. Visible positive "
        f"training examples per label: {counts_text(counts, names)}."
        + (
            (
                f" {100 * hidden:g}% of the training label entries are hidden (unknown, ignored "
                "by the losses); the test labels are complete."
                if data.get("hidden_as", "unknown") == "unknown"
                else f" {100 * hidden:g}% of the training label entries are hidden and taken "
                "as negatives (hidden positives are false negatives); the test labels are "
                "complete."
            )
            if hidden
            else ""
        )
        + (
            f" Metrics {_validation(results, data).replace('**evaluated', '**are of', 1)}."
            if results.get("evaluated_on") == "validation"
            else ""
        )
        + " "
        + model_text(cfg),
        "",
        "Mean ± sample std over seeds, in percent, at the last epoch (no model selection on "
        "the test set). Best of each column in **bold**. mAP: mean over labels of the test "
        "average precision; CF1 / OF1: per-label (macro) and overall (micro) F1 at "
        "probability 0.5; Tail mAP: mAP of the third of the labels with the fewest training "
        "positives.",
    ]


register_section(TASK, per_label_ap_sections)
register_prose(TASK, TaskProse(intro=multi_label_intro, validation=_validation))
