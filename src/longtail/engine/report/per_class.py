"""Per-class (per-label) plots: classes head to tail on the x axis, one line per method.

Up to :data:`NAMED_CLASSES_MAX` classes each is named with its training count; beyond, neighbouring
ranks are averaged in 10 to 20 bins (beyond 100 classes, tick labels too wide for their bin are
tilted). :func:`per_item_sections` draws the overlaid plot of a per-class quantity of the runs'
``details`` and, when some methods are grey, one panel per method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from longtail.engine.report.figure import (
    MAX_FIGURE_WIDTH,
    legend,
    mean_lists,
    panel_grid,
    short_name,
)
from longtail.engine.report.sections import ReportContext, Section
from longtail.engine.report.table import primary_mean, primary_spec

__all__ = ["NAMED_CLASSES_MAX", "counts_of", "fixed_order", "per_item_sections", "rank_order"]

#: Per-class plots name every class up to this many; beyond, classes are averaged in rank bins.
NAMED_CLASSES_MAX = 30


def counts_of(ctx: ReportContext, run: Mapping[str, Any]) -> list[int]:
    """The training count of each class of ``run`` (its own ``group_counts`` if it has them)."""
    return list(run.get("group_counts") or ctx.results["class_counts"])


def rank_order(counts: Sequence[int]) -> list[int]:
    """Classes head first (most training examples), ties by index (as the shot groups)."""
    return sorted(range(len(counts)), key=lambda c: (-counts[c], c))


def fixed_order(ctx: ReportContext) -> bool:
    """Whether rank r is the same class in every run: not so with ``data.class_order: random``,
    nor when each seed has its own classes (``details["known_classes"]``, open set)."""
    orders = {
        (
            tuple(rank_order(counts_of(ctx, r))),
            tuple(r.get("details", {}).get("known_classes") or ()),
        )
        for m in ctx.names
        for r in ctx.runs[m]
    }
    return len(orders) <= 1


@dataclass(frozen=True)
class _ClassAxis:
    """The x axis of a per-class plot: classes head to tail, one point per class or per bin."""

    bins: list[list[int]]  # rank positions in each point
    ticklabels: list[str]
    xlabel: str
    binned: bool


def _plural(kind: str) -> str:
    return "classes" if kind == "class" else f"{kind}s"


def _class_axis(ctx: ReportContext, unit: str, kind: str = "class") -> _ClassAxis:
    counts = list(ctx.results["class_counts"])
    c = len(counts)
    first = next(r for m in ctx.names for r in ctx.runs[m])
    ranked = rank_order(counts_of(ctx, first))
    ranked_counts = [counts_of(ctx, first)[j] for j in ranked]
    names = list(ctx.results.get("class_names") or [str(j) for j in range(c)])
    if c <= NAMED_CLASSES_MAX:
        if fixed_order(ctx):
            ticks = [
                f"{short_name(names[j])} ({n})" for j, n in zip(ranked, ranked_counts, strict=True)
            ]
            xlabel = f"{kind} (training {unit}), most to fewest training {unit}"
        else:
            ticks = [f"#{r + 1} ({n})" for r, n in enumerate(ranked_counts)]
            xlabel = (
                f"{kind} rank (training {unit}), most to fewest; a random class per seed "
                "(data.class_order: random)"
            )
        return _ClassAxis([[r] for r in range(c)], ticks, xlabel, False)
    nb = min(20, max(10, c // 10))
    size, extra = divmod(c, nb)
    bins, start = [], 0
    for b in range(nb):
        stop = start + size + (b < extra)
        bins.append(list(range(start, stop)))
        start = stop
    ticks = [
        f"{b[0] + 1}-{b[-1] + 1}\n({ranked_counts[b[0]]}-{ranked_counts[b[-1]]})" for b in bins
    ]
    xlabel = (
        f"{_plural(kind)} by training {unit}, most to fewest, averaged in {nb} bins of "
        f"neighbouring ranks: ranks (training {unit})"
    )
    return _ClassAxis(bins, ticks, xlabel, True)


def _per_rank(ctx: ReportContext, m: str, key: str, axis: _ClassAxis) -> list[float]:
    """``details[key]`` (per class) of method ``m`` by rank, mean over seeds, then over each bin."""
    by_rank = mean_lists(
        [[r["details"][key][j] for j in rank_order(counts_of(ctx, r))] for r in ctx.runs[m]]
    )
    out = []
    for b in axis.bins:
        vals = [by_rank[i] for i in b if not math.isnan(by_rank[i])]
        out.append(100 * sum(vals) / len(vals) if vals else math.nan)
    return out


def _crowded(axis: _ClassAxis, width: float) -> bool:
    """Whether the axis bins more than 100 classes and its longest tick line (8 pt characters,
    about 0.067 inch each) is wider than a point's share of the axes (the figure ``width`` less
    about 2.6 inches of labels and legend). Up to 100 classes the axis is drawn as it always was."""
    if not axis.binned or sum(len(b) for b in axis.bins) <= 100:
        return False
    longest = max(len(line) for tick in axis.ticklabels for line in tick.split("\n"))
    return longest * 0.067 > (width - 2.6) / len(axis.bins)


def per_item_sections(
    ctx: ReportContext,
    key: str,
    *,
    filename: str,
    title: str,
    quantity: str,
    unit: str,
    kind: str,
) -> list[Section]:
    """The overlaid per-class (per-label) plot of ``details[key]`` (``quantity``, a fraction per
    class) and, when some methods are grey, its small multiples."""
    import matplotlib.pyplot as plt  # optional: matplotlib (the cli extra)

    axis = _class_axis(ctx, unit, kind)
    xs = list(range(len(axis.bins)))
    series = {m: _per_rank(ctx, m, key, axis) for m in ctx.names}
    width = max(9.0, min(MAX_FIGURE_WIDTH, 0.32 * len(xs) + 4.0))
    fig, ax = plt.subplots(figsize=(width, 5.2), layout="constrained")
    for m in sorted(ctx.names, key=lambda m: ctx.styles[m].zorder):
        s = ctx.styles[m]
        ax.plot(
            xs,
            series[m],
            color=s.color,
            ls=s.linestyle,
            lw=s.linewidth,
            zorder=s.zorder,
            marker="o" if s.highlighted else None,
            ms=3.5,
        )
    ax.set_xticks(xs)
    rotate = not axis.binned
    # bins of 3- and 4-digit ranks: the labels would overlap side by side, tilt them (one line)
    tilt = _crowded(axis, width)
    ax.set_xticklabels(
        [t.replace("\n", " ") for t in axis.ticklabels] if tilt else axis.ticklabels,
        rotation=60 if rotate else 40 if tilt else 0,
        ha="right" if rotate or tilt else "center",
        rotation_mode="anchor" if rotate or tilt else "default",
        fontsize=8,
    )
    ax.set_xlabel(axis.xlabel, fontsize=9)
    ax.set_ylabel(f"test {quantity} of the {kind} (%)", fontsize=9)
    ax.set_title(f"{title} (mean over seeds)", fontsize=11)
    ax.grid(True, alpha=0.3)
    grid_name = filename.replace(".png", "_grid.png")
    greys = [m for m in ctx.names if not ctx.styles[m].highlighted]
    legend(ax, ctx, grey_note=" (one panel each below)" if greys else "")
    sections = [
        Section(
            title,
            ctx.save(fig, filename),
            f"Each method's test {quantity} of each {kind} (mean over seeds), "
            f"{_plural(kind)} head (left) to tail (right)"
            + (", averaged over neighbouring ranks" if axis.binned else "")
            + (f"; {ctx.baseline} black" if ctx.baseline else "")
            + ("; the balanced reference dashed" if ctx.reference else "")
            + "; the best methods on the primary metric in colour"
            + (", the others grey." if greys else "."),
        )
    ]
    if greys:
        sections.append(_per_item_grid(ctx, series, axis, grid_name, title, quantity, kind))
    return sections


def _per_item_grid(
    ctx: ReportContext,
    series: Mapping[str, list[float]],
    axis: _ClassAxis,
    filename: str,
    title: str,
    quantity: str,
    kind: str,
) -> Section:
    from matplotlib.ticker import FixedLocator, MaxNLocator  # optional: matplotlib (the cli extra)

    panels = [m for m in ctx.names if m not in (ctx.baseline, ctx.reference)]
    refs = " and ".join(
        f"{r} ({'dashed' if r == ctx.reference else 'black'})"
        for r in (ctx.baseline, ctx.reference)
        if r is not None
    )
    fig, axes, _ = panel_grid(
        len(panels),
        f"{title}: each method (blue)" + (f" against {refs}" if refs else ""),
        max_cols=3,
        width=3.0,
        height=2.2,
        left=0.75,
        wgap=0.85,
        hgap=0.95,
    )
    xs = list(range(1, len(axis.bins) + 1))
    finite = [v for m in ctx.names for v in series[m] if not math.isnan(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 100.0)
    pad = max(1.0, 0.05 * (hi - lo))
    primary = primary_spec(ctx.results)
    for ax, m in zip(axes.flat, panels, strict=False):
        for other, style in ((ctx.baseline, "-"), (ctx.reference, "--")):
            if other is not None:
                ax.plot(xs, series[other], color="black", ls=style, lw=1.0)
        ax.plot(xs, series[m], color="tab:blue", lw=1.6, marker="o", ms=2.5)
        value = primary_mean(ctx.results, m)
        shown = "" if value is None else f": {primary['label']} {100 * value:.1f}"
        ax.set_title(f"{m}{shown}", fontsize=9)
        ax.set_ylim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(
            FixedLocator(xs) if len(xs) <= 10 else MaxNLocator(6, integer=True)
        )
        ax.tick_params(labelsize=8)
        ax.set_xlabel(
            f"{kind} rank (1: most training data)" if not axis.binned else f"bin of {kind} ranks",
            fontsize=8,
        )
        ax.set_ylabel(f"{quantity} (%)", fontsize=8)
        ax.grid(True, alpha=0.3)
    return Section(
        f"{title}: every method",
        ctx.save(fig, filename, tight=False),
        "One panel per method"
        + (f", with {refs} in every panel" if refs else "")
        + (
            f"; x: {kind} ranks head to tail"
            if not axis.binned
            else f"; x: bins of neighbouring {kind} ranks, head to tail (as above)"
        )
        + "; the same y range in every panel.",
    )
