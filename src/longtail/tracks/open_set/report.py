"""The open-set plots of a run folder: known vs unknown score distributions and ROC curves.

:func:`open_set_sections` reads each ``<method>/seed_<s>/result.json`` of an open-set run (its
evaluation ``details``, see :func:`longtail.tracks.open_set.task.open_set_evaluation`) and writes

- ``plots/open_set_scores.png``: for every method, the histograms (densities) of the thresholded
  score on the known and on the unknown test images of the first seed's split, with that split's
  AUROC;
- ``plots/open_set_roc.png``: every method's ROC curve (unknown images detected against known
  images rejected), the TPR averaged over the seeds (splits) on a common FPR grid, with the mean
  AUROC in the legend.

It returns ``[(caption, path)]``; an empty list for other tasks or when the details are missing.
Importing this module (the track's ``__init__`` does) registers with the report
(:mod:`longtail.engine.report`) the two plots as sections of open-set runs, after the per-class
accuracy, and the words of the text around the table: what the test set is (the known classes'
test images plus the unknown classes') and what a validation split holds out.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import atomic_write_bytes
from longtail.engine.report import (
    ReportContext,
    Section,
    TaskProse,
    load_runs,
    register_prose,
    register_section,
)

__all__ = ["open_set_report_sections", "open_set_sections"]

TASK = "open-set"

_SCORE_LABELS = {"max-logit": "maximum logit", "max-softmax": "maximum softmax probability"}


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt  # optional: matplotlib (the cli extra)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _scores_plot(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> bool:
    import matplotlib  # optional: matplotlib (the cli extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: matplotlib (the cli extra)

    shown = [
        (name, rs[0])
        for name, rs in runs.items()
        if rs and (rs[0].get("details") or {}).get("score_histogram", {}).get("edges")
    ]
    if not shown:
        return False
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, run) in zip(axes.flat, shown, strict=False):
        det = run["details"]
        hist = det["score_histogram"]
        edges = hist["edges"]
        widths = [b - a for a, b in itertools.pairwise(edges)]
        for key, color in (("known", "tab:blue"), ("unknown", "tab:red")):
            counts = hist[key]
            total = sum(counts) or 1
            dens = [c / total / w if w > 0 else 0.0 for c, w in zip(counts, widths, strict=True)]
            ax.stairs(dens, edges, color=color, fill=True, alpha=0.35, label=key)
            ax.stairs(dens, edges, color=color)
        auroc = run.get("metrics", {}).get("auroc")
        shown_auroc = "n/a" if auroc is None else f"{100 * auroc:.1f}"
        ax.set_title(f"{name} (seed {run.get('seed')}): AUROC {shown_auroc}", fontsize=9)
        ax.set_xlabel(_SCORE_LABELS.get(det.get("score", ""), str(det.get("score"))), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle("Thresholded score on known and unknown test images (density)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def _roc_plot(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> bool:
    import matplotlib  # optional: matplotlib (the cli extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: matplotlib (the cli extra)

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    drawn = 0
    for name, rs in runs.items():
        curves = [
            r["details"]["roc"]
            for r in rs
            if (r.get("details") or {}).get("roc", {}).get("tpr")
            and None not in r["details"]["roc"]["tpr"]
        ]
        if not curves:
            continue
        fpr = curves[0]["fpr"]
        tpr = [sum(c["tpr"][i] for c in curves) / len(curves) for i in range(len(fpr))]
        aurocs = [r["metrics"].get("auroc") for r in rs if r.get("metrics")]
        aurocs = [a for a in aurocs if a is not None]
        label = name + (f" ({100 * sum(aurocs) / len(aurocs):.1f})" if aurocs else "")
        ax.plot(fpr, tpr, label=label, linewidth=1.4)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("known test images rejected (FPR)")
    ax.set_ylabel("unknown test images detected (TPR)")
    ax.set_title("ROC of unknown detection, mean over splits (AUROC)", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    return True


def open_set_sections(run_dir: str | Path, results: Mapping[str, Any]) -> list[tuple[str, Path]]:
    """Write the open-set plots of ``run_dir`` (see the module docstring); return their captions
    and paths, ``[]`` for a run of another task."""
    if results.get("task") != TASK:
        return []
    run_dir = Path(run_dir)
    runs = load_runs(run_dir, results)
    if not runs:
        return []
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    scores = plots / "open_set_scores.png"
    if _scores_plot(runs, scores):
        out.append(
            (
                "Known and unknown score distributions: the score each method thresholds, on the "
                "known and the unknown test images of the first split",
                scores,
            )
        )
    roc = plots / "open_set_roc.png"
    if _roc_plot(runs, roc):
        out.append(
            (
                "ROC curves of unknown detection (TPR: unknown images detected; FPR: known images "
                "rejected), mean over the splits; the legend gives the mean AUROC",
                roc,
            )
        )
    return out


def open_set_report_sections(ctx: ReportContext) -> list[Section]:
    """:func:`open_set_sections` as report sections: the title is the caption up to its colon."""
    return [
        Section(caption.split(":")[0], path, caption)
        for caption, path in open_set_sections(ctx.run_dir, ctx.results)
    ]


def _validation(results: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    fraction = data.get("validation_fraction", "?")
    return (
        f"**evaluated on a validation split, not the test set**: {fraction} of each known "
        "class held out of the training subset, plus as many training images per unknown "
        "class (`data.validation_fraction`; where this report says test, read validation)"
    )


register_section(TASK, open_set_report_sections)
register_prose(
    TASK,
    TaskProse(
        test_set="the test set is the known classes' test images plus the unknown classes' (each "
        "seed runs one split of known / unknown classes)",
        validation=_validation,
    ),
)
