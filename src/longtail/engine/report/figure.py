"""Figure building blocks shared by the report's plots and the tracks' sections: a grid of panels
of computed layout, the legend of the overlaid plots, and small helpers.

Plots use matplotlib with the Agg backend. A figure is at most :data:`MAX_FIGURE_WIDTH` inches
wide, so it shows at nearly full size in ``report.html``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

from longtail.engine.report.sections import ReportContext
from longtail.engine.report.style import GREY

__all__ = ["MAX_FIGURE_WIDTH", "has_details", "legend", "mean_lists", "panel_grid", "short_name"]

#: The widest figure in inches (1320 pixels at 110 dpi: nearly full size in ``report.html``).
MAX_FIGURE_WIDTH = 12.0


def legend(ax: Any, ctx: ReportContext, *, grey_note: str = "") -> None:
    """A legend of the highlighted methods plus one entry for the grey ones, right of ``ax``."""
    from matplotlib.lines import Line2D  # optional: matplotlib (the cli extra)

    handles = [
        Line2D([], [], color=s.color, ls=s.linestyle, lw=s.linewidth, label=s.label)
        for s in sorted(ctx.styles.values(), key=lambda s: s.order)
        if s.highlighted
    ]
    grey = [m for m, s in ctx.styles.items() if not s.highlighted]
    if grey:
        handles.append(
            Line2D([], [], color=GREY, lw=0.9, label=f"{len(grey)} other methods{grey_note}")
        )
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def panel_grid(
    n: int,
    title: str,
    *,
    max_cols: int,
    width: float,
    height: float,
    left: float = 0.8,
    wgap: float = 0.8,
    hgap: float = 0.9,
    bottom: float = 0.6,
    colorbar: bool = False,
    min_width: float = 2.2,
    square: bool = False,
) -> tuple[Any, Any, Any]:
    """A grid of ``n`` panels of up to ``width`` x ``height`` inches with fixed gaps (inches) for
    each panel's title, tick labels and axis labels, a figure title, and an optional colour-bar
    axes on the right; the unused panels blank. Returns ``(fig, axes, colour-bar axes or None)``.

    The figure is at most :data:`MAX_FIGURE_WIDTH` inches wide (shown at nearly full size in
    ``report.html``): the panels narrow down to ``min_width`` (``square``: their height too),
    then the grid takes fewer columns. The layout is computed, not searched (constrained layout
    costs seconds on 20 panels).
    """
    import matplotlib.pyplot as plt  # optional: matplotlib (the cli extra)

    right = 0.3 + (1.2 if colorbar else 0.0)
    cols = max(1, min(n, max_cols))
    while True:
        fit = (MAX_FIGURE_WIDTH - left - right - (cols - 1) * wgap) / cols
        if fit >= min(width, min_width) or cols == 1:
            break
        cols -= 1
    if fit < width:
        height = height * max(fit, min_width) / width if square else height
        width = max(fit, min_width)
    rows = math.ceil(n / cols)
    fw = left + cols * width + (cols - 1) * wgap + right
    title = textwrap.fill(title, width=max(30, int(fw * 72 / (12 * 0.62))))  # 12 pt characters
    top = 0.5 + 0.25 * (title.count("\n") + 1)
    fh = top + rows * height + (rows - 1) * hgap + bottom
    fig, axes = plt.subplots(rows, cols, figsize=(fw, fh), squeeze=False)
    fig.subplots_adjust(
        left=left / fw,
        right=1 - right / fw,
        bottom=bottom / fh,
        top=1 - top / fh,
        wspace=wgap / width,
        hspace=hgap / height,
    )
    fig.suptitle(title, y=1 - 0.15 / fh, va="top", fontsize=12)
    _blank_unused(axes, n)
    cax = None
    if colorbar:
        span = min(rows * height + (rows - 1) * hgap, 5.0)
        y0 = fh - top - span
        cax = fig.add_axes((1 - 1.05 / fw, y0 / fh, 0.18 / fw, span / fh))
    return fig, axes, cax


def _blank_unused(axes: Any, used: int) -> None:
    for ax in list(axes.flat)[used:]:
        ax.axis("off")


def has_details(ctx: ReportContext, key: str) -> bool:
    """Whether every run of every method has ``details[key]`` (a plot needs its details)."""
    return bool(ctx.names) and all(
        key in r.get("details", {}) for m in ctx.names for r in ctx.runs[m]
    )


def mean_lists(lists: Sequence[Sequence[float | None]]) -> list[float]:
    n = max((len(v) for v in lists), default=0)
    out = []
    for i in range(n):
        vals = [v[i] for v in lists if i < len(v) and v[i] is not None]
        out.append(sum(vals) / len(vals) if vals else math.nan)  # type: ignore[arg-type]
    return out


def short_name(name: str, width: int = 16) -> str:
    """``name`` cut in the middle to ``width`` characters (both ends tell classes apart)."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]
