"""The results table of a run: the table model, its markdown and plain-text forms, the metric
columns that repeat another and the methods that train the same function under two names.

The table drops a metric column whose values repeat an earlier column's for every method and seed
(accuracy is balanced accuracy on a balanced test set) and marks methods that train the same
function under two names (``la-loss`` at tau 1 is ``balanced-softmax``), and methods whose runs degenerated into another
one (``results.json``'s ``degenerate``: M2m that accepted no translation is ``drs``), with a note
for each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from longtail.engine.methods import SAME_LOSS, SAME_SAMPLER, canonical_loss, canonical_sampler

__all__ = [
    "REFERENCE",
    "REFERENCES",
    "REPEAT_TOLERANCE",
    "SKLEARN",
    "TableModel",
    "format_table",
    "method_identity",
    "metric_specs",
    "plain",
    "primary_mean",
    "primary_spec",
    "repeated_columns",
    "same_method_groups",
    "table_model",
]

#: The balanced reference's name in ``results.json``.
REFERENCE = "balanced"
#: The scikit-learn reference's name in ``results.json`` (``data.sklearn_reference``).
SKLEARN = "sklearn-logreg"
#: The rows that are references, not methods: listed last, never bold, not in the figures.
REFERENCES = (SKLEARN, REFERENCE)
_SKLEARN_MARK = "†"
#: Two metric columns are the same when every value (method, seed) differs by at most this.
REPEAT_TOLERANCE = 1e-9
_MARKS = "¹²³⁴⁵⁶⁷⁸⁹"


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
    if REFERENCE not in methods or "erm" not in methods:
        return None
    specs = metric_specs(results)
    if not specs:
        return None
    key = specs[0]["name"]
    try:
        ref = methods[REFERENCE]["metrics"][key]["mean"]
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
    ``balanced-softmax``) and the sampler too (``power`` at q 1/2 is ``sqrt``). ``None`` when either is missing or the loss is hand-written (not
    comparable).
    """
    comp, params = entry.get("composition"), entry.get("params")
    if not isinstance(comp, Mapping) or not isinstance(params, Mapping):
        return None
    loss = str(comp.get("loss"))
    if loss.startswith("<"):
        return None
    canon, rest = canonical_loss(loss, params)
    sampler, rest = canonical_sampler(str(comp.get("sampler")), rest)
    return json.dumps(
        {**comp, "loss": canon, "sampler": sampler, "params": rest}, sort_keys=True, default=str
    )


def same_method_groups(results: Mapping[str, Any]) -> list[list[str]]:
    """Groups (two or more, in table order) of methods with the same :func:`method_identity`.

    The balanced reference is never grouped: it trains ``erm`` on other data.
    """
    groups: dict[str, list[str]] = {}
    for name, entry in (results.get("methods") or {}).items():
        if name == REFERENCE:
            continue
        ident = method_identity(entry)
        if ident is not None:
            groups.setdefault(ident, []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def _same_reason(results: Mapping[str, Any], group: Sequence[str]) -> str:
    why: dict[str, str] = {}
    for m in group:
        entry = results["methods"][m]
        loss = str(entry["composition"]["loss"])
        if loss in SAME_LOSS and canonical_loss(loss, entry["params"])[0] != loss:
            key, value, same = SAME_LOSS[loss]
            why[loss] = f"loss `{loss}` with {key} {value:g} is loss `{same}`"
        sampler = str(entry["composition"].get("sampler"))
        canon = canonical_sampler(sampler, entry["params"])[0]
        if canon != sampler:
            key = SAME_SAMPLER[sampler][0]
            why[sampler] = (
                f"sampler `{sampler}` with {key} {float(entry['params'][key]):g} is sampler "
                f"`{canon}`"
            )
    what = "the same loss and sampler" + (f" ({'; '.join(why.values())})" if why else "")
    return (
        f"{what}, head, stages and hyper-parameters; any difference between their rows "
        "comes from floating-point rounding in separate trainings, not from the method"
    )


def _degenerate_note(name: str, entry: Mapping[str, Any]) -> str:
    """The footnote of a method whose runs trained another method's function (``degenerate`` of
    its ``results.json`` entry: what it equals, why, in which seeds)."""
    everyone = sorted(entry.get("seeds", []))
    parts: list[str] = []
    same: list[str] = []
    for group in entry["degenerate"]:
        seeds = sorted(group.get("seeds", []))
        where = (
            "in every seed"
            if seeds == everyone
            else f"in seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} "
            f"of {len(everyone)}"
        )
        equals = group.get("equals")
        if equals:
            same.append(equals)
            parts.append(
                f"`{name}` is `{equals}` {where}: {group['why']}, so it trained what `{equals}` "
                "trains"
            )
        else:
            parts.append(
                f"`{name}` degenerated {where}: {group['why']} (no method of the task trains "
                "the same)"
            )
    text = "; ".join(parts)
    if same:
        text += (
            "; any difference from the row of "
            + ", ".join(f"`{m}`" for m in dict.fromkeys(same))
            + " comes from floating-point rounding or random draws in separate trainings, not from "
            "the method"
        )
    return text + "."


# ---- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableModel:
    """The results table before rendering: header, cells, which cells are best, notes.

    Attributes:
        header: column titles.
        rows: one list of cell texts per method (table order, the references last).
        best: per cell, whether it is the best of its column (bold in markdown and HTML).
        methods: the method (``results.json`` key) of each row.
        notes: markdown sentences under the table (dropped columns, same methods, methods that
            degenerated into another, the scikit-learn reference).
    """

    header: list[str]
    rows: list[list[str]]
    best: list[list[bool]]
    methods: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def references(self) -> list[bool]:
        """Per row, whether it is a reference (:data:`REFERENCES`), drawn apart in HTML."""
        return [m in REFERENCES for m in self.methods]


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
    # an optional metric (e.g. one that needs a validation split) absent from every method: no note
    optional = {s["name"] for s in specs if s.get("optional")}
    undefined = [m for m in undefined if m not in optional]
    labels = {s["name"]: s["label"] for s in specs}
    has_ref = REFERENCE in methods and "erm" in methods
    order = [m for m in methods if m not in REFERENCES] + [r for r in REFERENCES if r in methods]
    best: set[tuple[str, str]] = set()
    for spec in shown:
        metric = spec["name"]
        cands = {
            m: round(100 * methods[m]["metrics"][metric]["mean"], 1)
            for m in order
            if m not in REFERENCES and methods[m]["metrics"].get(metric, {}).get("mean") is not None
        }
        if cands:
            target = (max if spec["higher_is_better"] else min)(cands.values())
            best.update((m, metric) for m, v in cands.items() if v == target)
    groups = same_method_groups(results)
    degenerate = [m for m in order if methods[m].get("degenerate")]
    marked: dict[str, list[str]] = {}
    for i, g in enumerate(groups):
        for m in g:
            marked.setdefault(m, []).append(_MARKS[i % len(_MARKS)])
    for j, m in enumerate(degenerate, start=len(groups)):
        marked.setdefault(m, []).append(_MARKS[j % len(_MARKS)])
    mark = {m: " ".join(ms) for m, ms in marked.items()}
    header = ["Method", *[s["label"] for s in shown]]
    if has_ref:
        header.append("Gap closed")
    header += ["Seeds", "Train s"]
    rows, bold = [], []
    for m in order:
        entry = methods[m]
        name = {
            REFERENCE: "balanced (reference)",
            SKLEARN: f"{SKLEARN} (reference) {_SKLEARN_MARK}",
        }.get(m, m)
        cells = [f"{name} {mark[m]}" if m in mark else name]
        flags = [False]
        for spec in shown:
            st = entry["metrics"].get(spec["name"], {})
            cells.append(_fmt(st.get("mean"), st.get("std")))
            flags.append((m, spec["name"]) in best)
        if has_ref:
            gap = _gap_closed(results, m)
            cells.append("" if m == REFERENCE or gap is None else f"{100 * gap:.0f}%")
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
    for j, m in enumerate(degenerate, start=len(groups)):
        notes.append(f"{_MARKS[j % len(_MARKS)]} {_degenerate_note(m, methods[m])}")
    if SKLEARN in methods:
        notes.append(_sklearn_note(results, order, shown[0] if shown else None))
    earlier = {m: s for m, s in (results.get("earlier_runs") or {}).items() if m in methods}
    if earlier:  # an additive --resume: rows (or seeds) the last command did not ask for
        pairs = ", ".join(
            f"`{m}` (seed{'s' if len(s) > 1 else ''} {', '.join(str(x) for x in s)})"
            for m, s in earlier.items()
        )
        notes.append(
            f"From earlier runs in this run folder (with the same configuration), not asked for by "
            f"the command that wrote this table: {pairs}."
        )
    return TableModel(header, rows, bold, order, notes)


def _sklearn_note(
    results: Mapping[str, Any], order: Sequence[str], primary: Mapping[str, Any] | None
) -> str:
    """What the scikit-learn reference row is, and where the best method stands against it."""
    info = results.get("sklearn_reference") or {}
    settings = info.get("settings") or {}
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k in ("C", "solver", "max_iter"))
    scaling = info.get("feature_scaling")
    text = (
        f"{_SKLEARN_MARK} `{SKLEARN}`: a reference, not a method of this library: scikit-learn "
        f"{info.get('estimator', 'LogisticRegression')}"
        + (f", with {shown} (otherwise scikit-learn's defaults)" if shown else "")
        + ", fitted on the same training rows as the methods"
        + (
            " with the features as loaded (no scaling)"
            if scaling == "none"
            else f" with the same features (feature scaling `{scaling}`)"
            if scaling
            else ""
        )
        + " and scored by the same metric code; never bold, not in the plots."
    )
    if primary is None:
        return text
    metric, label = primary["name"], primary["label"]
    ref = results["methods"][SKLEARN]["metrics"].get(metric, {}).get("mean")
    cands = [
        (results["methods"][m]["metrics"].get(metric, {}).get("mean"), m)
        for m in order
        if m not in REFERENCES
    ]
    cands = [(v, m) for v, m in cands if v is not None]
    if ref is None or not cands:
        return text
    higher = bool(primary["higher_is_better"])
    value, best = (max if higher else min)(cands)
    diff = 100 * (value - ref)
    if round(diff, 1) == 0:
        where = "level with it"
    else:
        better = diff > 0 if higher else diff < 0
        where = f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'} it" + (
            "" if better else f" (the reference is better on {label})"
        )
    return f"{text} The best method on {label}, `{best}`, is {where}."


def format_table(results: Mapping[str, Any], *, markdown: bool = True, notes: bool = True) -> str:
    """The results table: mean ± std over seeds in percent; best of each column in bold (markdown).

    The balanced reference (if any) is listed last, is not a candidate for "best", and adds a
    column with each method's share of the ``erm`` -> reference gap in balanced accuracy. A
    metric column that repeats an earlier one (:func:`repeated_columns`) is left out, and methods
    that are the same (:func:`same_method_groups`) carry a mark; with ``notes`` the sentences that
    say so follow the table after a blank line, as do those of methods whose runs degenerated
    into another (``degenerate`` in ``results.json``).
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
        out += ["", *[plain(n) for n in model.notes]]
    return "\n".join(out)


def plain(text: str) -> str:
    """Markdown inline marks removed (the terminal's table)."""
    return text.replace("`", "").replace("**", "").replace("*", "")


def primary_spec(results: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of the primary (first) metric; balanced accuracy for a results file without any."""
    specs = metric_specs(results)
    return (
        specs[0]
        if specs
        else {"name": "balanced_accuracy", "label": "Balanced acc.", "higher_is_better": True}
    )


def primary_mean(results: Mapping[str, Any], m: str) -> float | None:
    """Method ``m``'s mean over seeds of the primary metric (``None``: undefined)."""
    v = results["methods"][m]["metrics"].get(primary_spec(results)["name"], {}).get("mean")
    return None if v is None else float(v)
