"""Tables and figures of a run folder: ``report.md``, ``report.html`` and ``plots/*.png``.

Everything is rebuilt from the files of the run folder (``results.json``, ``config.yaml``,
``run.json`` and each ``<method>/seed_<s>/result.json``), so ``longtail report RUN_DIR`` can redo
it at any time. ``report.html`` holds the same tables, every plot (embedded, one file that opens in
any browser) and the run's metadata (config, data read, versions, date, seeds).

The table drops a metric column whose values repeat an earlier column's for every method and seed
(accuracy is balanced accuracy on a balanced test set) and marks methods that train the same
function under two names (``la-loss`` at tau 1 is ``balanced-softmax``), with a note for each.

Plots (matplotlib, Agg backend). In the plots that overlay methods, the baseline (``erm``, or
``bce`` for multi-label data) is black, the balanced reference black dashed, the best few methods
on the primary metric in colour and the others grey; the small multiples show every method.

- ``per_class_accuracy.png``: per-class test accuracy (mean over seeds) of every method, classes
  head to tail (named up to 30 classes; more classes are averaged in bins of neighbouring ranks);
- ``per_class_accuracy_grid.png``: the same, one panel per method against the baseline and the
  reference (when some methods are grey in the first plot);
- ``confusion.png``: up to 20 classes, the row-normalised confusion matrix of every method with
  the class names on the axes and a colour bar; more classes, where each group's (many / medium /
  few) test images go: correct, or wrongly into a class of each group;
- ``reliability.png``: reliability diagram of every method (bins pooled over seeds);
- ``training_curves.png``: training loss and the test primary metric per epoch (mean over seeds);
- multi-label runs: ``per_label_ap.png`` (and its grid), each label's test AP, labels by training
  positives.

Other tracks add their plots with :func:`register_section` (a function of :class:`ReportContext`
returning :class:`Section` s, keyed by the ``task`` of ``results.json``).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import atomic_write_bytes, atomic_write_text, read_json

__all__ = [
    "REPORT_SECTIONS",
    "MethodStyle",
    "ReportContext",
    "Section",
    "TableModel",
    "format_table",
    "group_confusion",
    "method_identity",
    "method_styles",
    "register_section",
    "repeated_columns",
    "same_method_groups",
    "table_model",
    "write_report",
]

_REFERENCE = "balanced"
#: The plain baseline of each task, drawn in black in the overlaid plots.
_BASELINES = ("erm", "bce")
#: Two metric columns are the same when every value (method, seed) differs by at most this.
REPEAT_TOLERANCE = 1e-9
_MARKS = "¹²³⁴⁵⁶⁷⁸⁹"
#: Confusion matrices with class names up to this many classes; a group view beyond.
NAMED_CONFUSION_MAX = 20
#: Per-class plots name every class up to this many; beyond, classes are averaged in rank bins.
NAMED_CLASSES_MAX = 30
#: How many of the best methods are drawn in colour when the others are grey.
HIGHLIGHT_BEST = 3
#: Up to this many methods every one gets its own colour.
ALL_COLOURED_MAX = 6
_BEST_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
_GREY = "#a8a8a8"
_DPI = 110
#: The widest figure in inches (1320 pixels at 110 dpi: nearly full size in ``report.html``).
MAX_FIGURE_WIDTH = 12.0


def metric_specs(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The metric specs of a ``results.json`` (name, label, higher_is_better), in table order.

    Written by the runner from the task's :attr:`~longtail.engine.tasks.Task.metrics`; a results file
    without them (older runs) gets one spec per metric, higher is better.
    """
    specs = results.get("metric_specs")
    if specs:
        return [dict(s) for s in specs]
    methods = results.get("methods") or {}
    names = list(next(iter(methods.values()))["metrics"].keys()) if methods else []
    return [{"name": n, "label": n, "higher_is_better": True} for n in names]


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{100 * mean:.1f} ± {100 * (std or 0.0):.1f}"


def _gap_closed(results: Mapping[str, Any], name: str) -> float | None:
    """``(method - erm) / (reference - erm)`` on the primary (first) metric."""
    methods = results["methods"]
    if _REFERENCE not in methods or "erm" not in methods:
        return None
    specs = metric_specs(results)
    if not specs:
        return None
    key = specs[0]["name"]
    try:
        ref = methods[_REFERENCE]["metrics"][key]["mean"]
        erm = methods["erm"]["metrics"][key]["mean"]
        val = methods[name]["metrics"][key]["mean"]
    except KeyError:
        return None
    if ref is None or erm is None or val is None or abs(ref - erm) < 1e-12:
        return None
    return float((val - erm) / (ref - erm))


# ---- repeated columns and methods that are the same ------------------------------------------


def _values(entry: Mapping[str, Any], metric: str) -> list[float | None]:
    stats = entry.get("metrics", {}).get(metric) or {}
    values = stats.get("values")
    return list(values) if values is not None else [stats.get("mean")]


def _same_column(methods: Mapping[str, Any], a: str, b: str) -> bool:
    """Whether metrics ``a`` and ``b`` agree within :data:`REPEAT_TOLERANCE` for every method and
    seed (undefined in the same places, at least one defined value)."""
    defined = False
    for entry in methods.values():
        va, vb = _values(entry, a), _values(entry, b)
        if len(va) != len(vb):
            return False
        for x, y in zip(va, vb, strict=True):
            if x is None or y is None:
                if (x is None) != (y is None):
                    return False
                continue
            if not abs(float(x) - float(y)) <= REPEAT_TOLERANCE:  # NaN is never the same
                return False
            defined = True
    return defined


def repeated_columns(results: Mapping[str, Any]) -> dict[str, str]:
    """The metric columns that repeat an earlier one: ``{dropped metric: metric it repeats}``.

    A column repeats another when both have the same direction (higher or lower is better) and
    every method's per-seed values agree within :data:`REPEAT_TOLERANCE` (accuracy and balanced
    accuracy on a balanced test set). The first column (the primary metric) is always kept.
    """
    methods = results.get("methods") or {}
    if not methods:
        return {}
    specs = metric_specs(results)
    higher = {s["name"]: bool(s["higher_is_better"]) for s in specs}
    kept: list[str] = []
    out: dict[str, str] = {}
    for spec in specs:
        name = spec["name"]
        twin = next(
            (k for k in kept if higher[k] == higher[name] and _same_column(methods, k, name)), None
        )
        if twin is None:
            kept.append(name)
        else:
            out[name] = twin
    return out


def method_identity(entry: Mapping[str, Any]) -> str | None:
    """What a method trains, canonical: two methods with the same identity are the same method.

    Built from the ``composition`` and ``params`` of its ``results.json`` entry with the loss in
    canonical form (:func:`longtail.engine.methods.canonical_loss`: ``la`` at tau 1 is
    ``balanced-softmax``). ``None`` when either is missing or the loss is hand-written (not
    comparable).
    """
    from longtail.engine.methods import canonical_loss

    comp, params = entry.get("composition"), entry.get("params")
    if not isinstance(comp, Mapping) or not isinstance(params, Mapping):
        return None
    loss = str(comp.get("loss"))
    if loss.startswith("<"):
        return None
    canon, rest = canonical_loss(loss, params)
    return json.dumps({**comp, "loss": canon, "params": rest}, sort_keys=True, default=str)


def same_method_groups(results: Mapping[str, Any]) -> list[list[str]]:
    """Groups (two or more, in table order) of methods with the same :func:`method_identity`.

    The balanced reference is never grouped: it trains ``erm`` on other data.
    """
    groups: dict[str, list[str]] = {}
    for name, entry in (results.get("methods") or {}).items():
        if name == _REFERENCE:
            continue
        ident = method_identity(entry)
        if ident is not None:
            groups.setdefault(ident, []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def _same_reason(results: Mapping[str, Any], group: Sequence[str]) -> str:
    from longtail.engine.methods import SAME_LOSS, canonical_loss

    why: dict[str, str] = {}
    for m in group:
        entry = results["methods"][m]
        loss = str(entry["composition"]["loss"])
        if loss in SAME_LOSS and canonical_loss(loss, entry["params"])[0] != loss:
            key, value, same = SAME_LOSS[loss]
            why[loss] = f"loss `{loss}` with {key} {value:g} is loss `{same}`"
    what = "the same loss" + (f" ({'; '.join(why.values())})" if why else "")
    return (
        f"{what}, sampler, head, stages and hyper-parameters; any difference between their rows "
        "comes from floating-point rounding in separate trainings, not from the method"
    )


# ---- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableModel:
    """The results table before rendering: header, cells, which cells are best, notes.

    Attributes:
        header: column titles.
        rows: one list of cell texts per method (table order, the reference last).
        best: per cell, whether it is the best of its column (bold in markdown and HTML).
        methods: the method (``results.json`` key) of each row.
        notes: markdown sentences under the table (dropped columns, same methods).
    """

    header: list[str]
    rows: list[list[str]]
    best: list[list[bool]]
    methods: list[str]
    notes: list[str] = field(default_factory=list)


def table_model(results: Mapping[str, Any]) -> TableModel:
    """The results table of a ``results.json`` mapping (see :func:`format_table`)."""
    methods: Mapping[str, Any] = results["methods"]
    specs = metric_specs(results)
    dropped = repeated_columns(results)
    undefined = [
        s["name"]
        for s in specs[1:]  # the primary metric is always shown
        if s["name"] not in dropped
        and all(m["metrics"].get(s["name"], {}).get("mean") is None for m in methods.values())
    ]
    shown = [s for s in specs if s["name"] not in dropped and s["name"] not in undefined]
    labels = {s["name"]: s["label"] for s in specs}
    has_ref = _REFERENCE in methods and "erm" in methods
    order = [m for m in methods if m != _REFERENCE] + (
        [_REFERENCE] if _REFERENCE in methods else []
    )
    best: set[tuple[str, str]] = set()
    for spec in shown:
        metric = spec["name"]
        cands = {
            m: round(100 * methods[m]["metrics"][metric]["mean"], 1)
            for m in order
            if m != _REFERENCE and methods[m]["metrics"].get(metric, {}).get("mean") is not None
        }
        if cands:
            target = (max if spec["higher_is_better"] else min)(cands.values())
            best.update((m, metric) for m, v in cands.items() if v == target)
    groups = same_method_groups(results)
    mark = {m: _MARKS[i % len(_MARKS)] for i, g in enumerate(groups) for m in g}
    header = ["Method", *[s["label"] for s in shown]]
    if has_ref:
        header.append("Gap closed")
    header += ["Seeds", "Train s"]
    rows, bold = [], []
    for m in order:
        entry = methods[m]
        name = "balanced (reference)" if m == _REFERENCE else m
        cells = [f"{name} {mark[m]}" if m in mark else name]
        flags = [False]
        for spec in shown:
            st = entry["metrics"].get(spec["name"], {})
            cells.append(_fmt(st.get("mean"), st.get("std")))
            flags.append((m, spec["name"]) in best)
        if has_ref:
            gap = _gap_closed(results, m)
            cells.append("" if m == _REFERENCE or gap is None else f"{100 * gap:.0f}%")
            flags.append(False)
        cells += [str(len(entry["seeds"])), f"{entry['train_seconds']:.1f}"]
        flags += [False, False]
        rows.append(cells)
        bold.append(flags)
    notes = []
    for metric, twin in dropped.items():
        why = (
            " (the test set is balanced, so both average the classes equally)"
            if {metric, twin} == {"accuracy", "balanced_accuracy"}
            else ""
        )
        notes.append(
            f"Column *{labels[metric]}* not shown: it equals *{labels[twin]}* for every method "
            f"and seed{why}."
        )
    if undefined:
        cols = ", ".join(f"*{labels[m]}*" for m in undefined)
        notes.append(
            f"Not shown, undefined for every method: {cols} (e.g. many / medium / few on "
            "classes of equal size)."
        )
    for i, g in enumerate(groups):
        names = ", ".join(f"`{m}`" for m in g)
        notes.append(
            f"{_MARKS[i % len(_MARKS)]} {names}: the same method under {len(g)} names: "
            f"{_same_reason(results, g)}."
        )
    return TableModel(header, rows, bold, order, notes)


def format_table(results: Mapping[str, Any], *, markdown: bool = True, notes: bool = True) -> str:
    """The results table: mean ± std over seeds in percent; best of each column in bold (markdown).

    The balanced reference (if any) is listed last, is not a candidate for "best", and adds a
    column with each method's share of the ``erm`` -> reference gap in balanced accuracy. A
    metric column that repeats an earlier one (:func:`repeated_columns`) is left out, and methods
    that are the same (:func:`same_method_groups`) carry a mark; with ``notes`` the sentences that
    say so follow the table after a blank line.
    """
    if not results["methods"]:
        return "(no results)"
    model = table_model(results)
    if markdown:
        lines = [
            "| " + " | ".join(model.header) + " |",
            "|" + "|".join(["---"] * len(model.header)) + "|",
        ]
        for cells, flags in zip(model.rows, model.best, strict=True):
            shown = [f"**{c}**" if b else c for c, b in zip(cells, flags, strict=True)]
            lines.append("| " + " | ".join(shown) + " |")
        if notes and model.notes:
            lines += ["", *[f"{n}  " for n in model.notes]]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in model.rows)) for i, h in enumerate(model.header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(model.header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for r in model.rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    if notes and model.notes:
        out += ["", *[_plain(n) for n in model.notes]]
    return "\n".join(out)


def _plain(text: str) -> str:
    """Markdown inline marks removed (the terminal's table)."""
    return text.replace("`", "").replace("**", "").replace("*", "")


# ---- the report's context, styles and sections ---------------------------------------------------


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


@dataclass(frozen=True)
class Section:
    """One figure of the report: a title, a PNG written into the run folder, a caption."""

    title: str
    path: Path
    caption: str = ""


@dataclass
class ReportContext:
    """What a report section sees (see :func:`register_section`).

    Attributes:
        run_dir: the run folder; plots go to ``run_dir / "plots"`` (:meth:`save`).
        results: ``results.json``.
        runs: every method's ``result.json`` per seed (``details`` holds the task's per-class,
            per-label or per-sample data).
        config: the resolved ``config.yaml`` as a mapping.
        names: the methods with results, in table order (the reference last).
        styles: each method's :class:`MethodStyle`.
    """

    run_dir: Path
    results: Mapping[str, Any]
    runs: Mapping[str, list[dict[str, Any]]]
    config: Mapping[str, Any]
    names: list[str]
    styles: dict[str, MethodStyle]

    @property
    def baseline(self) -> str | None:
        """The plain baseline among the methods (``erm`` or ``bce``), if run."""
        return next((b for b in _BASELINES if b in self.names), None)

    @property
    def reference(self) -> str | None:
        """The balanced reference, if run."""
        return _REFERENCE if _REFERENCE in self.names else None

    def save(self, fig: Any, filename: str, *, tight: bool = True) -> Path:
        """Save ``fig`` as ``plots/<filename>`` (PNG, atomically), close it, return the path.

        ``tight``: crop to the drawn content (an extra draw; not needed when the layout leaves
        the right margins, as :func:`_panels` does).
        """
        import matplotlib.pyplot as plt

        path = self.run_dir / "plots" / filename
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight" if tight else None)
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        return path


SectionFn = Callable[[ReportContext], list[Section]]

#: Extra figures of each task (the ``task`` of ``results.json``), after the common ones; a track
#: adds its own with :func:`register_section`.
REPORT_SECTIONS: dict[str, list[SectionFn]] = {}


def register_section(task: str, fn: SectionFn) -> SectionFn:
    """Add ``fn`` to the report of runs of ``task`` (once; usable as a decorator).

    ``fn(ctx)`` draws its figures with matplotlib (Agg backend), saves each with
    ``ctx.save(fig, "name.png")`` and returns a :class:`Section` per figure; the sections appear
    in ``report.md`` and ``report.html`` in the order returned. Example (an open-set track)::

        def roc_section(ctx: ReportContext) -> list[Section]:
            fig, ax = plt.subplots()
            ...  # from ctx.runs[m][i]["details"]
            return [Section("ROC of known vs unknown", ctx.save(fig, "roc.png"), "caption")]

        register_section("open-set", roc_section)
    """
    fns = REPORT_SECTIONS.setdefault(task, [])
    if fn not in fns:
        fns.append(fn)
    return fn


def _primary(results: Mapping[str, Any]) -> dict[str, Any]:
    specs = metric_specs(results)
    return (
        specs[0]
        if specs
        else {"name": "balanced_accuracy", "label": "Balanced acc.", "higher_is_better": True}
    )


def _primary_mean(results: Mapping[str, Any], m: str) -> float | None:
    v = results["methods"][m]["metrics"].get(_primary(results)["name"], {}).get("mean")
    return None if v is None else float(v)


def method_styles(results: Mapping[str, Any], names: Sequence[str]) -> dict[str, MethodStyle]:
    """Colours of the overlaid plots: the baseline black, the reference black dashed, the best
    :data:`HIGHLIGHT_BEST` methods on the primary metric in colour (one per group of same
    methods), the rest grey; up to :data:`ALL_COLOURED_MAX` methods all in colour."""
    baseline = next((b for b in _BASELINES if b in names), None)
    higher = bool(_primary(results)["higher_is_better"])
    cands = [m for m in names if m not in (baseline, _REFERENCE)]
    scored = sorted(
        cands,
        key=lambda m: (
            _primary_mean(results, m) is None,
            -(_primary_mean(results, m) or 0.0) if higher else (_primary_mean(results, m) or 0.0),
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
            if m in seen or _primary_mean(results, m) is None:
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
        elif m == _REFERENCE:
            styles[m] = MethodStyle(
                "black", "--", 1.6, 4, True, "balanced (reference)", len(names) + 1
            )
        elif m in picked:
            i = picked.index(m)
            styles[m] = MethodStyle(
                _BEST_COLOURS[i % len(_BEST_COLOURS)], "-", 1.8, 5, True, label, i
            )
        else:
            styles[m] = MethodStyle(_GREY, "-", 0.9, 1, False, label, len(names) + 2)
    return styles


def _legend(ax: Any, ctx: ReportContext, *, grey_note: str = "") -> None:
    """A legend of the highlighted methods plus one entry for the grey ones, right of ``ax``."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=s.color, ls=s.linestyle, lw=s.linewidth, label=s.label)
        for s in sorted(ctx.styles.values(), key=lambda s: s.order)
        if s.highlighted
    ]
    grey = [m for m, s in ctx.styles.items() if not s.highlighted]
    if grey:
        handles.append(
            Line2D([], [], color=_GREY, lw=0.9, label=f"{len(grey)} other methods{grey_note}")
        )
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return math.ceil(n / cols), cols


def _panels(
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
    import textwrap

    import matplotlib.pyplot as plt

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


def _has(ctx: ReportContext, key: str) -> bool:
    """Whether every run of every method has ``details[key]`` (a plot needs its details)."""
    return bool(ctx.names) and all(
        key in r.get("details", {}) for m in ctx.names for r in ctx.runs[m]
    )


def _mean_lists(lists: Sequence[Sequence[float | None]]) -> list[float]:
    n = max((len(v) for v in lists), default=0)
    out = []
    for i in range(n):
        vals = [v[i] for v in lists if i < len(v) and v[i] is not None]
        out.append(sum(vals) / len(vals) if vals else math.nan)  # type: ignore[arg-type]
    return out


def _short(name: str, width: int = 16) -> str:
    """``name`` cut in the middle to ``width`` characters (both ends tell classes apart)."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


# ---- classes head to tail -----------------------------------------------------------------------


def _counts_of(ctx: ReportContext, run: Mapping[str, Any]) -> list[int]:
    return list(run.get("group_counts") or ctx.results["class_counts"])


def _ranked(counts: Sequence[int]) -> list[int]:
    """Classes head first (most training examples), ties by index (as the shot groups)."""
    return sorted(range(len(counts)), key=lambda c: (-counts[c], c))


def _fixed_order(ctx: ReportContext) -> bool:
    """Whether rank r is the same class in every run: not so with ``data.class_order: random``,
    nor when each seed has its own classes (``details["known_classes"]``, open set)."""
    orders = {
        (tuple(_ranked(_counts_of(ctx, r))), tuple(r.get("details", {}).get("known_classes") or ()))
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
    ranked = _ranked(_counts_of(ctx, first))
    ranked_counts = [_counts_of(ctx, first)[j] for j in ranked]
    names = list(ctx.results.get("class_names") or [str(j) for j in range(c)])
    if c <= NAMED_CLASSES_MAX:
        if _fixed_order(ctx):
            ticks = [
                f"{_short(names[j])} ({n})" for j, n in zip(ranked, ranked_counts, strict=True)
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
    by_rank = _mean_lists(
        [[r["details"][key][j] for j in _ranked(_counts_of(ctx, r))] for r in ctx.runs[m]]
    )
    out = []
    for b in axis.bins:
        vals = [by_rank[i] for i in b if not math.isnan(by_rank[i])]
        out.append(100 * sum(vals) / len(vals) if vals else math.nan)
    return out


def _per_item_sections(
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
    import matplotlib.pyplot as plt

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
    ax.set_xticklabels(
        axis.ticklabels,
        rotation=60 if rotate else 0,
        ha="right" if rotate else "center",
        rotation_mode="anchor" if rotate else "default",
        fontsize=8,
    )
    ax.set_xlabel(axis.xlabel, fontsize=9)
    ax.set_ylabel(f"test {quantity} of the {kind} (%)", fontsize=9)
    ax.set_title(f"{title} (mean over seeds)", fontsize=11)
    ax.grid(True, alpha=0.3)
    grid_name = filename.replace(".png", "_grid.png")
    greys = [m for m in ctx.names if not ctx.styles[m].highlighted]
    _legend(ax, ctx, grey_note=" (one panel each below)" if greys else "")
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
    from matplotlib.ticker import FixedLocator, MaxNLocator

    panels = [m for m in ctx.names if m not in (ctx.baseline, ctx.reference)]
    refs = " and ".join(
        f"{r} ({'dashed' if r == ctx.reference else 'black'})"
        for r in (ctx.baseline, ctx.reference)
        if r is not None
    )
    fig, axes, _ = _panels(
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
    primary = _primary(ctx.results)
    for ax, m in zip(axes.flat, panels, strict=False):
        for other, style in ((ctx.baseline, "-"), (ctx.reference, "--")):
            if other is not None:
                ax.plot(xs, series[other], color="black", ls=style, lw=1.0)
        ax.plot(xs, series[m], color="tab:blue", lw=1.6, marker="o", ms=2.5)
        value = _primary_mean(ctx.results, m)
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


# ---- confusion ------------------------------------------------------------------------------


def _confusion_named(ctx: ReportContext) -> Section:
    """Row-normalised confusion matrices with the class names (ranks) on both axes."""
    from matplotlib.colors import PowerNorm

    counts = list(ctx.results["class_counts"])
    c = len(counts)
    names = list(ctx.results.get("class_names") or [str(j) for j in range(c)])
    fixed = _fixed_order(ctx)
    first = next(r for m in ctx.names for r in ctx.runs[m])
    order = _ranked(_counts_of(ctx, first))
    labels = [_short(names[j], 14) for j in order] if fixed else [f"#{r + 1}" for r in range(c)]
    text = 0.075 * max(len(x) for x in labels)  # inches of a tick label at 8 pt
    side = 2.8 if c <= 10 else 3.8
    fig, axes, cax = _panels(
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
            o, mm = _ranked(_counts_of(ctx, r)), r["details"]["confusion"]
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
    from longtail.metrics import shot_groups

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
    fig, axes, cax = _panels(
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
            names, members, rule = _groups(ctx, _counts_of(ctx, r))
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
    fig, axes, _ = _panels(
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


def _training_curves(ctx: ReportContext) -> Section:
    import matplotlib.pyplot as plt

    primary = _primary(ctx.results)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(MAX_FIGURE_WIDTH, 4.6), layout="constrained")
    drawn = False
    for m in sorted(ctx.names, key=lambda m: ctx.styles[m].zorder):
        s = ctx.styles[m]
        hist = [r.get("history", []) for r in ctx.runs[m]]
        loss = _mean_lists([[row.get("train_loss") for row in h] for h in hist])
        curve = _mean_lists([[row.get(f"test_{primary['name']}") for row in h] for h in hist])
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
    _legend(a2, ctx)
    return Section(
        "Training curves",
        ctx.save(fig, "training_curves.png"),
        "Mean over seeds; losses of different methods are on different scales (each its own loss). "
        "A second stage continues the epoch count.",
    )


def _common_sections(ctx: ReportContext) -> list[Section]:
    out: list[Section] = []
    if _has(ctx, "per_class"):
        out += _per_item_sections(
            ctx,
            "per_class",
            filename="per_class_accuracy.png",
            title="Per-class accuracy",
            quantity="accuracy",
            unit="examples"
            if ctx.config.get("data", {}).get("dataset") in ("table", "mat")
            else "images",
            kind="class",
        )
    if _has(ctx, "confusion"):
        c = len(ctx.results["class_counts"])
        out.append(_confusion_named(ctx) if c <= NAMED_CONFUSION_MAX else _confusion_groups(ctx))
    if _has(ctx, "reliability"):
        out.append(_reliability(ctx))
    return out


def _per_label_ap(ctx: ReportContext) -> list[Section]:
    """Multi-label: each label's test AP (mean over seeds), labels by training positives."""
    if not _has(ctx, "per_label_ap"):
        return []
    return _per_item_sections(
        ctx,
        "per_label_ap",
        filename="per_label_ap.png",
        title="Per-label AP",
        quantity="average precision",
        unit="positives",
        kind="label",
    )


register_section("multi-label", _per_label_ap)


def _open_set(ctx: ReportContext) -> list[Section]:
    """Open set: the score distributions and ROC curves (``engine/report_open_set.py``)."""
    from longtail.tracks.open_set.report import open_set_sections

    return [
        Section(caption.split(":")[0], path, caption)
        for caption, path in open_set_sections(ctx.run_dir, ctx.results)
    ]


register_section("open-set", _open_set)


def _m2m(ctx: ReportContext) -> list[Section]:
    """M2m: accepted translations per target class, and a grid of accepted samples."""
    import matplotlib.pyplot as plt

    found = {
        m: r[0]["details"]["m2m"]
        for m, r in ctx.runs.items()
        if r and isinstance((r[0].get("details") or {}).get("m2m"), dict)
    }
    if not found:
        return []
    c = len(ctx.results.get("class_names") or [])
    names = list(ctx.results.get("class_names") or [])
    out: list[Section] = []
    fig, axes = plt.subplots(
        1,
        len(found),
        figsize=(min(4.4 * len(found), 13.0), 3.6),
        squeeze=False,
        layout="constrained",
    )
    for ax, (m, info) in zip(axes[0], found.items(), strict=True):
        gen = [0] * c
        acc = [0] * c
        for row in info.get("per_epoch", {}).values():
            gen = [a + b for a, b in zip(gen, row["generated"], strict=False)]
            acc = [a + b for a, b in zip(acc, row["accepted"], strict=False)]
        xs = range(len(gen))
        ax.bar(xs, gen, color="#bbbbbb", label="translated")
        ax.bar(xs, acc, color="#1f77b4", label="accepted")
        for x_, g_, a_ in zip(xs, gen, acc, strict=True):
            if g_:
                ax.annotate(
                    str(a_), (x_, g_), ha="center", va="bottom", fontsize=7, color="#1f77b4"
                )
        ax.set_xticks(list(xs), [names[k] if k < len(names) else str(k) for k in xs])
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
        ax.set_xlabel("target class (head to tail)")
        ax.set_ylabel("samples (seed 0, all epochs)")
        ax.set_title(f"{m}: from epoch {int(info.get('start_epoch', 0)) + 1}", fontsize=10)
        ax.legend(fontsize=8)
    out.append(
        Section(
            "M2m translations per class",
            ctx.save(fig, "m2m_counts.png"),
            "Minority slots translated from a larger class (grey) and accepted (blue, the number "
            "above each bar: g's probability of the target reached gamma and the Bernoulli draw "
            "passed), per target class, summed over the generating epochs of seed 0.",
        )
    )
    for m, info in found.items():
        samples = info.get("samples") or {}
        images = samples.get("images") or []
        if not images or not isinstance(images[0], list) or not isinstance(images[0][0], list):
            continue  # feature vectors: no picture
        import numpy as np

        k = len(images)
        cols = min(k, 8)
        rows = (k + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.75 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i >= k:
                continue
            img = np.asarray(images[i], dtype=np.float32)
            img = img.transpose(1, 2, 0) if img.shape[0] == 3 else img[0]
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            s, t = samples["seed_class"][i], samples["target_class"][i]
            sn = names[s] if s < len(names) else str(s)
            tn = names[t] if t < len(names) else str(t)
            ax.set_title(f"{sn}\n→ {tn}", fontsize=7)
        out.append(
            Section(
                f"M2m samples ({m})",
                ctx.save(fig, f"m2m_samples_{_safe_name(m)}.png"),
                "Accepted translations of the last generating step of seed 0: each image is a "
                "sample of the seed class (top) moved by a few gradient steps until g sees the "
                "target class (bottom); f trains on it labelled with the target.",
            )
        )
    return out


def _safe_name(m: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in m)


register_section("single-label", _m2m)


# ---- the text around the table -----------------------------------------------------------------


def _profile(counts: Sequence[int], shot: str) -> str:
    """The data's own long tail (``imbalance_factor: null``): the real imbalance factor and the
    sizes of the table's many / medium / few groups."""
    from longtail.metrics import shot_groups

    if not counts or min(counts) <= 0:
        return "used as loaded"
    real = max(counts) / min(counts)
    groups = shot_groups(list(counts), mode=shot)  # type: ignore[arg-type]
    sizes = [int(groups[g].sum()) for g in ("many", "medium", "few")]
    empty = " (an empty group shows n/a)" if 0 in sizes else ""
    rule = (
        "by terciles of the classes"
        if shot == "terciles"
        else "by the usual thresholds (more than 100, 20 to 100, fewer than 20 examples)"
    )
    return (
        f"the data's own distribution, imbalance_factor null: real imbalance factor {real:.3g} = "
        f"largest / smallest training class; the table's groups {rule}: {sizes[0]} many, "
        f"{sizes[1]} medium, {sizes[2]} few classes{empty}"
    )


def _counts_text(counts: Sequence[int], names: Sequence[str] | None = None) -> str:
    """The per-class counts: all of them for up to 20 classes, a summary beyond."""
    if len(counts) <= 20:
        if names:
            return ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=False))
        return str(list(counts))
    s = sorted(counts)
    median = s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
    return (
        f"{max(counts)} to {min(counts)} per class, median {median:g} (every count is in "
        "`results.json`)"
    )


def _data_source(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> str | None:
    """The file or folder the run read: ``results.json``'s ``data_source`` (absolute), else the
    config's ``data.path`` / ``data.data_dir`` as written; ``None`` for bundled data."""
    if results.get("data_source"):
        return str(results["data_source"])
    data = cfg.get("data", {}) or {}
    source = data.get("path") or data.get("data_dir")
    return str(source) if source else None


def _data_phrase(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> str:
    """``read from `PATH` (loader `x`)``, or the bundled digits."""
    source = _data_source(results, cfg)
    dataset = results["dataset"]
    if source:
        mulan = (cfg.get("data", {}) or {}).get("mulan_name")
        extra = f", set `{mulan}`" if mulan else ""
        return f"read from `{source}` (loader `{dataset}`{extra})"
    if dataset == "digits":
        return "`digits`, the 8x8 digits bundled with scikit-learn (no file read)"
    return f"`{dataset}`"


def _title(name: str, results: Mapping[str, Any], cfg: Mapping[str, Any]) -> str:
    source = _data_source(results, cfg)
    folder = Path(source).name or source if source else ""
    where = f" from `{folder}`" if folder and folder != results["dataset"] else ""
    return f"{name}: {results['dataset']}{where}, {results['task']}"


def _validation_text(results: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """What a run with ``data.validation_fraction`` evaluated on (the test set was not read)."""
    fraction = data.get("validation_fraction", "?")
    if results.get("task") == "open-set":
        return (
            f"**evaluated on a validation split, not the test set**: {fraction} of each known "
            "class held out of the training subset, plus as many training images per unknown "
            "class (`data.validation_fraction`; where this report says test, read validation)"
        )
    unit = "each class" if results.get("task") != "multi-label" else "the training rows"
    return (
        f"**evaluated on a validation split, not the test set**: {fraction} of {unit} held out of "
        f"the training subset ({results.get('num_test', '?')} examples, "
        "`data.validation_fraction`; where this report says test, read validation)"
    )


def _intro(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    """The paragraphs above the table: the data, the model, how to read the table."""
    data = cfg.get("data", {})
    train = cfg.get("train", {})
    model = (
        f"Model `{cfg.get('model', {}).get('arch', '?')}`, {train.get('epochs', '?')} epochs, "
        f"batch {train.get('batch_size', '?')}, lr {train.get('lr', '?')} "
        f"({train.get('schedule', '?')}), weight decay {train.get('weight_decay', '?')}."
    )
    counts = results["class_counts"]
    read = _data_phrase(results, cfg)
    shown = {  # the metrics some method defines (the table drops the others)
        s["name"]
        for s in metric_specs(results)
        if any(
            m["metrics"].get(s["name"], {}).get("mean") is not None
            for m in results["methods"].values()
        )
    }
    if results.get("task") == "multi-label":
        names = results.get("class_names") or []
        hidden = float(data.get("hide_fraction", 0.0) or 0.0)
        lines = [
            f"Data: {read}; {results.get('num_train', '?')} training and "
            f"{results.get('num_test', '?')} test examples, {len(counts)} labels. Visible positive "
            f"training examples per label: {_counts_text(counts, names)}."
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
                f" Metrics {_validation_text(results, data).replace('**evaluated', '**are of', 1)}."
                if results.get("evaluated_on") == "validation"
                else ""
            )
            + " "
            + model,
            "",
            "Mean ± sample std over seeds, in percent, at the last epoch (no model selection on "
            "the test set). Best of each column in **bold**. mAP: mean over labels of the test "
            "average precision; CF1 / OF1: per-label (macro) and overall (micro) F1 at "
            "probability 0.5; Tail mAP: mAP of the third of the labels with the fewest training "
            "positives.",
        ]
        return lines
    shot = cfg.get("metrics", {}).get("shot_mode", "terciles")
    if_txt = results.get("imbalance_factor")
    factory = cfg.get("model", {}).get("factory")
    if factory:
        model = model.replace(
            f"Model `{cfg.get('model', {}).get('arch', '?')}`", f"Model `{factory}` (model.factory)"
        )
    dataset = data.get("dataset", results["dataset"])
    source = _data_source(results, cfg)
    if dataset in ("table", "mat") or (
        dataset == "image-folder" and source and not (Path(source).expanduser() / "test").is_dir()
    ):
        test_txt = (
            f"the test set is a stratified hold-out of {data.get('test_fraction', '?')} of each "
            "class (seed `subset_seed`; its rows / files are listed in `split.json`), so it "
            "follows the data's own class distribution"
        )
    elif results.get("task") == "metric-learning":
        test_txt = (
            "retrieval is evaluated on the test images of the classes not seen in training; "
            "Recall@K: a query counts if one of its K nearest neighbours (itself excluded) has "
            "its class"
        )
    elif results.get("task") == "open-set":
        test_txt = (
            "the test set is the known classes' test images plus the unknown classes' (each seed "
            "runs one split of known / unknown classes)"
        )
    elif dataset == "image-folder":
        test_txt = "the test set is the `test/` folder"
    else:
        test_txt = "the test set is balanced"
    if results.get("evaluated_on") == "validation":
        test_txt = _validation_text(results, data)
    if if_txt is None:
        profile = _profile(counts, shot)
    else:
        profile = f"imbalance factor {if_txt}, profile {data.get('profile', 'exp')}"
    unit = "examples" if dataset in ("table", "mat") else "images"
    lines = [
        f"Data: {read}. Training set: {sum(counts)} {unit} in {len(counts)} classes, class counts "
        f"{_counts_text(counts)} ({profile}); {test_txt}. " + model,
        "",
        "Mean ± sample std over seeds, in percent, at the last epoch (no model selection on the "
        "test set). Best of each column in **bold**"
        + (" (lowest for ECE)" if "ece" in shown else "")
        + "."
        + (
            " Many / medium / few: "
            + (
                "thirds of the classes by training count."
                if shot == "terciles"
                else "more than 100, 20 to 100, fewer than 20 training images."
            )
            if "many" in shown
            else ""
        ),
    ]
    if "balanced" in results["methods"]:
        lines.append(
            "`balanced (reference)`: `erm` on the same number of training images spread evenly over "
            "the classes (the upper bound); *Gap closed* is each method's share of the gap in "
            "balanced accuracy between `erm` and that bound."
        )
    return lines


# ---- the report ----------------------------------------------------------------------------------


def _load_runs(run_dir: Path, results: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, entry in results["methods"].items():
        for seed in entry["seeds"]:
            f = run_dir / name / f"seed_{seed}" / "result.json"
            if f.is_file():
                runs.setdefault(name, []).append(read_json(f))
    return runs


def _with_params(
    results: Mapping[str, Any], runs: Mapping[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """``results`` with each method's ``params`` taken from its runs where missing (older runs)."""
    out = dict(results)
    methods = {}
    for name, entry in results["methods"].items():
        entry = dict(entry)
        if "params" not in entry and runs.get(name) and "params" in runs[name][0]:
            entry["params"] = dict(runs[name][0]["params"])
        if "composition" not in entry and runs.get(name) and "composition" in runs[name][0]:
            entry["composition"] = dict(runs[name][0]["composition"])
        methods[name] = entry
    out["methods"] = methods
    return out


def _sections(ctx: ReportContext) -> list[Section]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    if not ctx.names:
        return []
    sections = _common_sections(ctx)
    for fn in REPORT_SECTIONS.get(str(ctx.results.get("task")), []):
        sections += fn(ctx)
    sections.append(_training_curves(ctx))
    return sections


def _metadata(
    run_dir: Path, results: Mapping[str, Any], cfg: Mapping[str, Any], meta: Mapping[str, Any]
) -> list[tuple[str, str]]:
    seeds = sorted({s for e in results["methods"].values() for s in e.get("seeds", [])})
    source = _data_source(results, cfg)
    rows = [
        ("config", str(cfg.get("name", run_dir.name))),
        ("task", str(results.get("task", "?"))),
        ("data read", source or _plain(_data_phrase(results, cfg))),
        ("data set (loader)", str(results["dataset"])),
        ("methods", ", ".join(results["methods"])),
        ("seeds", ", ".join(str(s) for s in seeds)),
        ("command", str(meta.get("command", "?"))),
        ("started", str(meta.get("started", "?"))),
        ("report written", time.strftime("%Y-%m-%d %H:%M:%S")),
        ("python", str(meta.get("python", "?"))),
        ("torch", str(meta.get("torch", "?"))),
        ("platform", str(meta.get("platform", "?"))),
        ("processes", str(meta.get("world_size", 1))),
        ("run folder", str(run_dir.resolve())),
    ]
    return rows


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` for a run folder.

    Every file is written atomically with the mode the umask gives a new file. Returns the path of
    ``report.md``.
    """
    from longtail.engine.report_html import render_html

    run_dir = Path(run_dir)
    results = read_json(run_dir / "results.json")
    runs = _load_runs(run_dir, results)
    results = _with_params(results, runs)
    meta: dict[str, Any] = {}
    if (run_dir / "run.json").is_file():
        meta = read_json(run_dir / "run.json")
    cfg: dict[str, Any] = {}
    config_text = ""
    if (run_dir / "config.yaml").is_file():
        import yaml

        config_text = (run_dir / "config.yaml").read_text(encoding="utf-8")
        cfg = yaml.safe_load(config_text) or {}
    names = [m for m in results["methods"] if m in runs]
    ctx = ReportContext(run_dir, results, runs, cfg, names, method_styles(results, names))
    sections = _sections(ctx)
    name = str(cfg.get("name", run_dir.name))
    title = _title(name, results, cfg)
    intro = _intro(results, cfg)
    model = table_model(results) if results["methods"] else None
    commands = [meta["command"]] if meta.get("command") else []
    commands.append(f"longtail bench {run_dir / 'config.yaml'} --out NEW_FOLDER")
    footer = (
        f"_Python {meta.get('python', '?')}, torch {meta.get('torch', '?')}, "
        f"{meta.get('world_size', 1)} process(es), started {meta.get('started', '?')}._"
        if meta
        else ""
    )

    lines = [f"# {title}", "", *intro, ""]
    lines += [format_table(results, markdown=True), ""]
    lines += ["## Reproduce", "", "```", *commands, "```", ""]
    if sections:
        lines += ["## Plots", ""]
        for s in sections:
            rel = s.path.relative_to(run_dir).as_posix()
            lines += [f"### {s.title}", ""]
            if s.caption:
                lines += [s.caption, ""]
            lines += [f"![{s.path.stem}]({rel})", ""]
    lines += ["The same report as one file with the plots embedded: `report.html`.", ""]
    if footer:
        lines += [footer, ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))

    html = render_html(
        title=title,
        paragraphs=[p for p in intro if p],
        table=None
        if model is None
        else {
            "header": model.header,
            "rows": model.rows,
            "best": model.best,
            "notes": model.notes,
        },
        commands=commands,
        figures=[(s.title, s.caption, s.path.read_bytes()) for s in sections],
        metadata=_metadata(run_dir, results, cfg, meta),
        config_text=config_text,
    )
    atomic_write_text(run_dir / "report.html", html)
    return path
