"""The figures every classifier run gets, from the ``details`` of its ``result.json`` files.

In the plots that overlay methods, the baseline (``erm``, or ``bce`` for multi-label data) is black,
the balanced reference black dashed, the best few methods on the primary metric in colour and the
others grey; the small multiples show every method.

- ``per_class_accuracy.png``: per-class test accuracy (mean over seeds) of every method, classes
  head to tail (named up to 30 classes; more classes are averaged in bins of neighbouring ranks);
- ``per_class_accuracy_grid.png``: the same, one panel per method against the baseline and the
  reference (when some methods are grey in the first plot);
- ``confusion.png``: up to 20 classes, the row-normalised confusion matrix of every method with
  the class names on the axes and a colour bar; more classes, where each group's (many / medium /
  few) test examples go: correct, or wrongly into a class of each group;
- ``reliability.png``: reliability diagram of every method (bins pooled over seeds);
- ``training_curves.png``: training loss and the test primary metric per epoch (mean over seeds).

A track adds its own figures with :func:`longtail.engine.report.sections.register_section`; they
come after these and before the training curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from longtail.engine.report.figure import (
    MAX_FIGURE_WIDTH,
    has_details,
    legend,
    mean_lists,
    panel_grid,
    short_name,
)
from longtail.engine.report.per_class import counts_of, fixed_order, per_item_sections, rank_order
from longtail.engine.report.prose import example_unit
from longtail.engine.report.sections import ReportContext, Section
from longtail.engine.report.table import primary_spec
from longtail.metrics import shot_groups

__all__ = ["NAMED_CONFUSION_MAX", "common_sections", "group_confusion", "training_curves"]

#: Confusion matrices with class names up to this many classes; a group view beyond.
NAMED_CONFUSION_MAX = 20


def _confusion_named(ctx: ReportContext) -> Section:
    """Row-normalised confusion matrices with the class names (ranks) on both axes."""
    from matplotlib.colors import PowerNorm  # optional: matplotlib (the cli extra)

    counts = list(ctx.results["class_counts"])
    c = len(counts)
    names = list(ctx.results.get("class_names") or [str(j) for j in range(c)])
    fixed = fixed_order(ctx)
    first = next(r for m in ctx.names for r in ctx.runs[m])
    order = rank_order(counts_of(ctx, first))
    labels = [short_name(names[j], 14) for j in order] if fixed else [f"#{r + 1}" for r in range(c)]
    text = 0.075 * max(len(x) for x in labels)  # inches of a tick label at 8 pt
    side = 2.8 if c <= 10 else 3.8
    fig, axes, cax = panel_grid(
        len(ctx.names),
        "Confusion matrices: rows true class, columns predicted, head first (summed over seeds, "
        "row-normalised)",
        max_cols=3 if c <= 10 else 2,
        width=side,
        height=side,
        min_width=0.14 * c + 0.6,  # 10 pt per class row: 8-pt names do not collide
        square=True,
        left=0.45 + text,
        wgap=0.5 + text,
        hgap=0.55 + text,
        bottom=0.35 + text,
        colorbar=True,
    )
    image = None
    for ax, m in zip(axes.flat, ctx.names, strict=False):
        total = [[0.0] * c for _ in range(c)]
        for r in ctx.runs[m]:
            o, mm = rank_order(counts_of(ctx, r)), r["details"]["confusion"]
            for i in range(c):
                for j in range(c):
                    total[i][j] += mm[o[i]][o[j]]  # head first
        norm = [[v / max(sum(row), 1) for v in row] for row in total]
        image = ax.imshow(norm, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0))
        ax.set_title(m, fontsize=10)
        ax.set_xticks(range(c))
        ax.set_xticklabels(labels, rotation=90, fontsize=8)
        ax.set_yticks(range(c))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xlabel("predicted class", fontsize=8)
        ax.set_ylabel("true class", fontsize=8)
    if image is not None and cax is not None:
        bar = fig.colorbar(image, cax=cax)
        bar.set_label("share of the true class's test examples (square-root scale)", fontsize=8)
        bar.ax.tick_params(labelsize=8)
    order_txt = "" if fixed else " (#r: the r-th largest class of each seed)"
    return Section(
        "Confusion matrices",
        ctx.save(fig, "confusion.png", tight=False),
        "Each method's test predictions summed over seeds, each row divided by its class's test "
        f"count; classes head (top, left) to tail{order_txt}. The colour scale is the square "
        "root, so small confusions stay visible.",
    )


def _groups(ctx: ReportContext, counts: Sequence[int]) -> tuple[list[str], list[list[int]], str]:
    """The many / medium / few classes of ``counts`` by the config's ``metrics.shot_mode``
    (terciles when the thresholds leave fewer than two groups); empty groups dropped."""
    mode = ctx.config.get("metrics", {}).get("shot_mode", "terciles")
    rule = (
        "thirds of the classes by training count"
        if mode == "terciles"
        else "more than 100, 20 to 100, fewer than 20 training examples"
    )
    groups = shot_groups(list(counts), mode=mode)
    if mode != "terciles" and sum(1 for g in groups.values() if bool(g.any())) < 2:
        groups = shot_groups(list(counts), mode="terciles")
        rule = "thirds of the classes by training count (the thresholds put all in one group)"
    names, members = [], []
    for g in _GROUPS:
        idx = [int(i) for i in groups[g].nonzero().flatten().tolist()]
        if idx:
            names.append(g)
            members.append(idx)
    return names, members, rule


_GROUPS = ("many", "medium", "few")


def group_confusion(
    confusion: Sequence[Sequence[float]], names: Sequence[str], members: Sequence[Sequence[int]]
) -> list[list[float]]:
    """Where each group's test examples go: per group (row), the count classified correctly and
    the counts classified wrongly into a class of each group (columns ``correct, *names``).

    Args:
        confusion: ``(C, C)`` counts, rows true class, columns predicted.
        names: the groups, e.g. ``("many", "medium", "few")``.
        members: the classes of each group (a partition of ``range(C)``).
    """
    group_of = {j: k for k, idx in enumerate(members) for j in idx}
    out = []
    for idx in members:
        row = [0.0] * (1 + len(names))
        for i in idx:
            for j, v in enumerate(confusion[i]):
                row[0 if i == j else 1 + group_of[j]] += float(v)
        out.append(row)
    return out


def _confusion_groups(ctx: ReportContext) -> Section:
    """Many classes: where each group's test examples go (correct, or into each group)."""
    c = len(ctx.results["class_counts"])
    fig, axes, cax = panel_grid(
        len(ctx.names),
        f"Where the test examples go: {c} classes in many / medium / few groups (summed over "
        "seeds)",
        max_cols=3,
        width=2.7,
        height=1.7,
        left=1.1,
        wgap=1.1,
        hgap=0.95,
        colorbar=True,
    )
    image = None
    rule = ""
    for ax, m in zip(axes.flat, ctx.names, strict=False):
        table: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        for r in ctx.runs[m]:
            names, members, rule = _groups(ctx, counts_of(ctx, r))
            # columns: correct, then the three groups (a group missing here counts nothing)
            rows = group_confusion(r["details"]["confusion"], names, members)
            for g, idx, row in zip(names, members, rows, strict=True):
                acc = table.setdefault(g, [0.0] * (1 + len(_GROUPS)))
                sizes[g] = len(idx)
                acc[0] += row[0]
                for k, h in enumerate(names):
                    acc[1 + _GROUPS.index(h)] += row[1 + k]
        groups = [g for g in _GROUPS if g in table]
        cols = [0] + [1 + _GROUPS.index(g) for g in groups]
        shares = [[100 * table[g][k] / max(sum(table[g]), 1) for k in cols] for g in groups]
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=100, aspect="auto")
        for i, row in enumerate(shares):
            for j, v in enumerate(row):
                ax.text(
                    j, i, f"{v:.0f}", ha="center", va="center", fontsize=9,
                    color="white" if v > 55 else "black",
                )  # fmt: skip
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(["correct", *[f"→ {g}" for g in groups]], fontsize=8)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([f"{g} ({sizes[g]})" for g in groups], fontsize=8)
        ax.set_xlabel("prediction", fontsize=8)
        ax.set_ylabel("true class group", fontsize=8)
        ax.set_title(m, fontsize=10)
    if image is not None and cax is not None:
        bar = fig.colorbar(image, cax=cax)
        bar.set_label("% of the group's test examples", fontsize=8)
        bar.ax.tick_params(labelsize=8)
    return Section(
        "Confusion by class group",
        ctx.save(fig, "confusion.png", tight=False),
        f"{c} classes are too many for a readable matrix. Each row is a group of classes ({rule}; "
        "classes per group in brackets) and gives the share of its test examples classified "
        "correctly (*correct*) and the share classified wrongly as a class of each group (*→ "
        "many*, *→ medium*, *→ few*, confusions within the group included); a row sums to 100. "
        "Mass in the *→ many* column of the *few* row is the head bias that long-tail methods "
        "try to remove.",
    )


# ---- reliability and training curves -------------------------------------------------------


def _reliability(ctx: ReportContext) -> Section:
    fig, axes, _ = panel_grid(
        len(ctx.names),
        "Reliability diagrams: accuracy per confidence bin (pooled over seeds)",
        max_cols=4,
        width=2.3,
        height=2.1,
        left=0.7,
        wgap=0.75,
        hgap=0.9,
    )
    for ax, m in zip(axes.flat, ctx.names, strict=False):
        ax.set_xticks([0.0, 0.5, 1.0])  # three ticks a panel: the labels are most of the drawing
        ax.set_yticks([0.0, 0.5, 1.0])
        rels = [r["details"]["reliability"] for r in ctx.runs[m]]
        nb = len(rels[0]["count"])
        cnt = [sum(rr["count"][b] for rr in rels) for b in range(nb)]
        acc = [
            sum((rr["accuracy"][b] or 0.0) * rr["count"][b] for rr in rels) / cnt[b]
            if cnt[b]
            else 0.0
            for b in range(nb)
        ]
        edges = [b / nb for b in range(nb)]
        ax.bar(edges, acc, width=1 / nb, align="edge", edgecolor="k", lw=0.3, color="tab:blue")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ece = ctx.results["methods"][m]["metrics"].get("ece", {}).get("mean")
        ax.set_title(f"{m}" + (f" (ECE {100 * ece:.1f})" if ece is not None else ""), fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("confidence (top probability)", fontsize=8)
        ax.set_ylabel("accuracy in the bin", fontsize=8)
    return Section(
        "Reliability",
        ctx.save(fig, "reliability.png", tight=False),
        "Bars above the diagonal: the method is under-confident in that bin; below: "
        "over-confident. ECE in percent.",
    )


def training_curves(ctx: ReportContext) -> Section:
    """Training loss and the test primary metric per epoch, mean over seeds (the last figure)."""
    import matplotlib.pyplot as plt  # optional: matplotlib (the cli extra)

    primary = primary_spec(ctx.results)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(MAX_FIGURE_WIDTH, 4.6), layout="constrained")
    drawn = False
    for m in sorted(ctx.names, key=lambda m: ctx.styles[m].zorder):
        s = ctx.styles[m]
        hist = [r.get("history", []) for r in ctx.runs[m]]
        loss = mean_lists([[row.get("train_loss") for row in h] for h in hist])
        curve = mean_lists([[row.get(f"test_{primary['name']}") for row in h] for h in hist])
        ep = list(range(1, len(loss) + 1))
        line = {"color": s.color, "ls": s.linestyle, "lw": s.linewidth, "zorder": s.zorder}
        a1.plot(ep, loss, **line)
        pts = [(e, 100 * v) for e, v in zip(ep, curve, strict=False) if not math.isnan(v)]
        if pts:
            drawn = True
            a2.plot(*zip(*pts, strict=True), marker="." if s.highlighted else None, **line)
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss (each method's own loss)")
    a1.set_title("Training loss", fontsize=10)
    a2.set_xlabel("epoch")
    a2.set_ylabel(f"test {primary['label']} (%)")
    a2.set_title(
        f"Test {primary['label']} (monitoring only; the table reports the last epoch)"
        if drawn
        else "No test curve (train.eval_every: 0)",
        fontsize=10,
    )
    for a in (a1, a2):
        a.grid(True, alpha=0.3)
    legend(a2, ctx)
    return Section(
        "Training curves",
        ctx.save(fig, "training_curves.png"),
        "Mean over seeds; losses of different methods are on different scales (each its own loss). "
        "A second stage continues the epoch count.",
    )


def common_sections(ctx: ReportContext) -> list[Section]:
    """The figures whose ``details`` every run of every method has, in report order."""
    out: list[Section] = []
    if has_details(ctx, "per_class"):
        out += per_item_sections(
            ctx,
            "per_class",
            filename="per_class_accuracy.png",
            title="Per-class accuracy",
            quantity="accuracy",
            unit=example_unit(ctx.config.get("data", {}).get("dataset")),
            kind="class",
        )
    if has_details(ctx, "confusion"):
        c = len(ctx.results["class_counts"])
        out.append(_confusion_named(ctx) if c <= NAMED_CONFUSION_MAX else _confusion_groups(ctx))
    if has_details(ctx, "reliability"):
        out.append(_reliability(ctx))
    return out
