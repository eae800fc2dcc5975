"""The multi-label part of a run's report: the per-label AP plots and the text around the table.

- ``plots/per_label_ap.png`` (and ``per_label_ap_grid.png`` when some methods are grey): each
  label's test AP (mean over seeds), labels by training positives, head to tail;
- the paragraphs above the table: the data (labels, visible positives per label, hidden label
  entries, labels without a training positive, labels dropped by ``data.min_label_positives``),
  the model, and how to read mAP, CF1 / OF1 and Tail mAP (over how many scored labels), and the
  tuned CF1 / OF1 of a validation run.

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
from longtail.tracks.multi_label.task import THRESHOLD_MIN_POSITIVES

__all__ = ["labels_text", "multi_label_intro", "per_label_ap_sections", "scored_text"]

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


def _quoted(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def labels_text(results: Mapping[str, Any]) -> str:
    """The labels dropped by ``data.min_label_positives`` and those without a training positive
    (``results.json``'s ``data_details``); empty when there are none."""
    details = results.get("data_details") or {}
    out = ""
    dropped = details.get("dropped_labels") or []
    if dropped:
        listed = ", ".join(f"`{d['name']}` ({d['positives']})" for d in dropped[:10])
        more = f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
        out += (
            f" Dropped by `data.min_label_positives: {details.get('min_label_positives')}` "
            f"(fewer visible training positives): {len(dropped)} label"
            f"{'s' if len(dropped) > 1 else ''}, {listed}{more}."
        )
    unseen = [u["name"] for u in details.get("unseen_labels") or []]
    if unseen:
        n = len(unseen)
        out += (
            f" {n} label{'s' if n > 1 else ''} without a visible training positive "
            f"({_quoted(unseen)}) {'train' if n > 1 else 'trains'} as all-negative."
        )
    return out


def scored_text(results: Mapping[str, Any]) -> str:
    """``mAP over S of L labels with a test positive`` (the evaluated split's name), or ``""`` when
    the run did not record its scored labels."""
    details = results.get("data_details") or {}
    if "scored_labels" not in details:
        return ""
    split = "validation" if results.get("evaluated_on") == "validation" else "test"
    total = details.get("num_labels", len(results.get("class_counts") or []))
    return f"mAP over {len(details['scored_labels'])} of {total} labels with a {split} positive"


def _has_tuned(results: Mapping[str, Any]) -> bool:
    return any(
        (m.get("metrics", {}).get("CF1_tuned") or {}).get("mean") is not None
        for m in (results.get("methods") or {}).values()
    )


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
        + labels_text(results)
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
            f" Metrics {_validation(results, data).replace('**evaluated on', '**are of', 1)}."
            if results.get("evaluated_on") == "validation"
            else ""
        )
        + " "
        + model_text(cfg),
        "",
        "Mean ± sample std over seeds, in percent, at the last epoch (no model selection on "
        "the test set). Best of each column in **bold**. mAP: mean over labels of the test "
        "average precision, over the labels with a test positive (a label without one has no "
        "AP"
        + (f"; here: {scored_text(results)}" if scored_text(results) else "")
        + "); CF1 / OF1: per-label (macro, over the same labels) and overall (micro, over every "
        "label) F1 at probability 0.5; Tail mAP: mAP of the third of the labels with the fewest "
        "training positives."
        + (
            " CF1 / OF1 tuned: at per-label thresholds chosen on the validation split to "
            f"maximise each label's F1 (a label with fewer than {THRESHOLD_MIN_POSITIVES} "
            "positives among the rows its threshold is chosen on keeps 0.5), cross-fitted: each random half of the "
            "validation rows is scored at the thresholds chosen on the other half (the "
            "thresholds of the whole split are in each run's `result.json`)."
            if _has_tuned(results)
            else ""
        ),
    ]


register_section(TASK, per_label_ap_sections)
register_prose(TASK, TaskProse(intro=multi_label_intro, validation=_validation))
