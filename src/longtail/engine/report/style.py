"""How each method is drawn where methods share axes: colour, line, legend entry.

In the plots that overlay methods, the baseline (``erm``, or ``bce`` for multi-label data) is black,
the balanced reference black dashed, the best few methods on the primary metric in colour and the
others grey; up to :data:`ALL_COLOURED_MAX` methods every one has its own colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from longtail.engine.report.table import REFERENCE, primary_mean, primary_spec, same_method_groups

__all__ = [
    "ALL_COLOURED_MAX",
    "BASELINES",
    "GREY",
    "HIGHLIGHT_BEST",
    "MethodStyle",
    "method_styles",
]

#: The plain baseline of each task, drawn in black in the overlaid plots.
BASELINES = ("erm", "bce")
#: How many of the best methods are drawn in colour when the others are grey.
HIGHLIGHT_BEST = 3
#: Up to this many methods every one gets its own colour.
ALL_COLOURED_MAX = 6
_BEST_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
#: The colour of the methods that are not highlighted.
GREY = "#a8a8a8"


@dataclass(frozen=True)
class MethodStyle:
    """How a method is drawn where methods share axes.

    Attributes:
        color: a matplotlib colour.
        linestyle, linewidth, zorder: line settings.
        highlighted: drawn in colour and named in the legend (the others are grey, one legend
            entry together).
        label: the legend text (``la-loss (= balanced-softmax)`` for a method with twins).
        order: position in the legend (the best method first, then the baseline, the reference).
    """

    color: str
    linestyle: str = "-"
    linewidth: float = 1.8
    zorder: int = 3
    highlighted: bool = True
    label: str = ""
    order: int = 0


def method_styles(results: Mapping[str, Any], names: Sequence[str]) -> dict[str, MethodStyle]:
    """Colours of the overlaid plots: the baseline black, the reference black dashed, the best
    :data:`HIGHLIGHT_BEST` methods on the primary metric in colour (one per group of same
    methods), the rest grey; up to :data:`ALL_COLOURED_MAX` methods all in colour."""
    baseline = next((b for b in BASELINES if b in names), None)
    higher = bool(primary_spec(results)["higher_is_better"])
    cands = [m for m in names if m not in (baseline, REFERENCE)]
    scored = sorted(
        cands,
        key=lambda m: (
            primary_mean(results, m) is None,
            -(primary_mean(results, m) or 0.0) if higher else (primary_mean(results, m) or 0.0),
            names.index(m),
        ),
    )
    groups = same_method_groups(results)
    twin = {m: [o for o in g if o != m] for g in groups for m in g}
    if len(names) <= ALL_COLOURED_MAX:
        picked = scored
    else:
        picked, seen = [], set()
        for m in scored:
            if m in seen or primary_mean(results, m) is None:
                continue
            picked.append(m)
            seen.update([m, *twin.get(m, [])])
            if len(picked) == HIGHLIGHT_BEST:
                break
    styles: dict[str, MethodStyle] = {}
    for m in names:
        label = m + (f" (= {', '.join(twin[m])})" if m in twin else "")
        if m == baseline:
            styles[m] = MethodStyle("black", "-", 1.6, 4, True, label, len(names))
        elif m == REFERENCE:
            styles[m] = MethodStyle(
                "black", "--", 1.6, 4, True, "balanced (reference)", len(names) + 1
            )
        elif m in picked:
            i = picked.index(m)
            styles[m] = MethodStyle(
                _BEST_COLOURS[i % len(_BEST_COLOURS)], "-", 1.8, 5, True, label, i
            )
        else:
            styles[m] = MethodStyle(GREY, "-", 0.9, 1, False, label, len(names) + 2)
    return styles
