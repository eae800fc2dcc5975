"""Tables and figures of a run folder: ``report.md`` and ``plots/*.png`` (matplotlib, Agg backend).

Everything is rebuilt from the files of the run folder (``results.json``, ``config.yaml``,
``run.json`` and each ``<method>/seed_<s>/result.json``), so ``longtail report RUN_DIR`` can redo
it at any time. Plots:

- ``per_class_accuracy.png``: per-class test accuracy (mean over seeds) against the class's
  training count, log-scale x, one line per method;
- ``confusion.png``: row-normalised confusion matrix of every method (summed over seeds);
- ``reliability.png``: reliability diagram of every method (bins pooled over seeds);
- ``training_curves.png``: training loss and the test primary metric per epoch (mean over seeds);
- multi-label runs: ``per_label_ap.png``, each label's test AP against its training positives
  (log-scale x), one line per method.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import atomic_write_bytes, atomic_write_text, read_json

__all__ = ["format_table", "write_report"]

_REFERENCE = "balanced"


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


def format_table(results: Mapping[str, Any], *, markdown: bool = True) -> str:
    """The results table: mean ± std over seeds in percent; best of each column in bold (markdown).

    The balanced reference (if any) is listed last, is not a candidate for "best", and adds a
    column with each method's share of the ``erm`` -> reference gap in balanced accuracy.
    """
    methods: Mapping[str, Any] = results["methods"]
    if not methods:
        return "(no results)"
    specs = metric_specs(results)
    metric_names = [s["name"] for s in specs]
    labels = {s["name"]: s["label"] for s in specs}
    higher = {s["name"]: bool(s["higher_is_better"]) for s in specs}
    has_ref = _REFERENCE in methods and "erm" in methods
    order = [m for m in methods if m != _REFERENCE] + (
        [_REFERENCE] if _REFERENCE in methods else []
    )
    best: dict[str, str] = {}
    for metric in metric_names:
        cands = {
            m: round(100 * methods[m]["metrics"][metric]["mean"], 1)
            for m in order
            if m != _REFERENCE and methods[m]["metrics"].get(metric, {}).get("mean") is not None
        }
        if cands:
            pick = max if higher[metric] else min
            target = pick(cands.values())
            best.update({f"{m}/{metric}": "*" for m, v in cands.items() if v == target})
    header = ["Method", *[labels[m] for m in metric_names]]
    if has_ref:
        header.append("Gap closed")
    header += ["Seeds", "Train s"]
    rows = []
    for m in order:
        entry = methods[m]
        cells = [m if m != _REFERENCE else "balanced (reference)"]
        for metric in metric_names:
            st = entry["metrics"].get(metric, {})
            text = _fmt(st.get("mean"), st.get("std"))
            if markdown and f"{m}/{metric}" in best:
                text = f"**{text}**"
            cells.append(text)
        if has_ref:
            g = _gap_closed(results, m)
            cells.append("" if m == _REFERENCE or g is None else f"{100 * g:.0f}%")
        cells.append(str(len(entry["seeds"])))
        cells.append(f"{entry['train_seconds']:.1f}")
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------


def _load_runs(run_dir: Path, results: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, entry in results["methods"].items():
        for seed in entry["seeds"]:
            f = run_dir / name / f"seed_{seed}" / "result.json"
            if f.is_file():
                runs.setdefault(name, []).append(read_json(f))
    return runs


def _mean_lists(lists: Sequence[Sequence[float | None]]) -> list[float]:
    n = max((len(v) for v in lists), default=0)
    out = []
    for i in range(n):
        vals = [v[i] for v in lists if i < len(v) and v[i] is not None]
        out.append(sum(vals) / len(vals) if vals else math.nan)  # type: ignore[arg-type]
    return out


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return math.ceil(n / cols), cols


def _finish_grid(fig: Any, axes: Any, used: int, title: str, path: Path) -> str:
    """Blank the unused panels of a grid, title it, save it, close it; returns the file name."""
    import matplotlib.pyplot as plt

    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
    return path.name


def _has(runs: Mapping[str, list[dict[str, Any]]], names: Sequence[str], key: str) -> bool:
    """Whether every run of every method has ``details[key]`` (a task's plots need its details)."""
    return all(key in r.get("details", {}) for m in names for r in runs[m])


def _plots(
    run_dir: Path, results: Mapping[str, Any], runs: Mapping[str, list[dict[str, Any]]]
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plots = run_dir / "plots"
    written: list[str] = []
    names = [m for m in results["methods"] if m in runs]
    if not names:
        return written
    colors = dict(zip(names, _colors(len(names)), strict=True))
    counts = list(results["class_counts"])

    def ranked(run: Mapping[str, Any]) -> list[int]:
        """The run's classes, head first by its long-tailed counts (per seed with a random order)."""
        own = run.get("group_counts") or counts
        return sorted(range(len(own)), key=lambda c: (-own[c], c))

    if _has(runs, names, "per_label_ap"):
        written.append(_per_label_ap_plot(plt, results, runs, names, colors, plots))

    if _has(runs, names, "per_class"):
        # per-class accuracy vs training count
        fig, ax = plt.subplots(figsize=(8, 5))
        for m in names:
            # by frequency rank: with data.class_order random, rank r is another class per seed
            pcs = [[r["details"]["per_class"][c] for c in ranked(r)] for r in runs[m]]
            cts = [[(r.get("group_counts") or counts)[c] for c in ranked(r)] for r in runs[m]]
            xs = _mean_lists(cts)
            ys = [100 * v for v in _mean_lists(pcs)]
            style = "--" if m == _REFERENCE else "-"
            ax.plot(xs, ys, style, marker="o", ms=3, lw=1.2, color=colors[m], label=m)
        ax.set_xscale("log")
        ax.set_xlabel("training images of the class (log scale)")
        ax.set_ylabel("test accuracy of the class (%)")
        ax.set_title("Per-class accuracy against training count (mean over seeds)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
        _save(fig, plots / "per_class_accuracy.png")
        plt.close(fig)
        written.append("per_class_accuracy.png")

    rows, cols = _grid(len(names))
    if _has(runs, names, "confusion"):
        # confusion matrices
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
        for ax, m in zip(axes.flat, names, strict=False):
            mats = []
            for r in runs[m]:
                o, mm = ranked(r), r["details"]["confusion"]
                mats.append([[mm[i][j] for j in o] for i in o])  # head first
            c = len(mats[0])
            total = [[sum(mm[i][j] for mm in mats) for j in range(c)] for i in range(c)]
            norm = [[v / max(sum(row), 1) for v in row] for row in total]
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            ax.set_title(m, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        title = "Confusion matrices (rows: true class, head first; row-normalised)"
        written.append(_finish_grid(fig, axes, len(names), title, plots / "confusion.png"))

    if _has(runs, names, "reliability"):
        # reliability diagrams
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
        for ax, m in zip(axes.flat, names, strict=False):
            rels = [r["details"]["reliability"] for r in runs[m]]
            nb = len(rels[0]["count"])
            cnt = [sum(rr["count"][b] for rr in rels) for b in range(nb)]
            acc = [
                sum((rr["accuracy"][b] or 0.0) * rr["count"][b] for rr in rels) / cnt[b]
                if cnt[b]
                else 0.0
                for b in range(nb)
            ]
            edges = [b / nb for b in range(nb)]
            ax.bar(edges, acc, width=1 / nb, align="edge", edgecolor="k", lw=0.3, color=colors[m])
            ax.plot([0, 1], [0, 1], "k--", lw=0.8)
            ece = results["methods"][m]["metrics"].get("ece", {}).get("mean")
            ax.set_title(
                f"{m}" + (f" (ECE {100 * ece:.1f})" if ece is not None else ""), fontsize=9
            )
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.tick_params(labelsize=6)
        title = "Reliability diagrams: accuracy per confidence bin (pooled over seeds)"
        written.append(_finish_grid(fig, axes, len(names), title, plots / "reliability.png"))

    # training curves
    specs = metric_specs(results)
    primary = specs[0] if specs else {"name": "balanced_accuracy", "label": "Balanced acc."}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for m in names:
        hist = [r.get("history", []) for r in runs[m]]
        loss = _mean_lists([[row.get("train_loss") for row in h] for h in hist])
        bacc = _mean_lists([[row.get(f"test_{primary['name']}") for row in h] for h in hist])
        ep = list(range(1, len(loss) + 1))
        a1.plot(ep, loss, color=colors[m], lw=1.2, label=m)
        pts = [(e, 100 * v) for e, v in zip(ep, bacc, strict=False) if not math.isnan(v)]
        if pts:
            a2.plot(*zip(*pts, strict=True), color=colors[m], lw=1.2, marker=".", label=m)
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss (method's own loss)")
    a1.set_title("Training loss")
    a2.set_xlabel("epoch")
    a2.set_ylabel(f"test {primary['label']} (%)")
    a2.set_title(f"Test {primary['label']} (monitoring only; the table reports the last epoch)")
    a2.title.set_fontsize(9)
    for a in (a1, a2):
        a.grid(True, alpha=0.3)
    if a2.get_legend_handles_labels()[0]:  # no test curve when train.eval_every is 0
        a2.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        a1.legend(fontsize=7, ncol=2)
    _save(fig, plots / "training_curves.png")
    plt.close(fig)
    written.append("training_curves.png")
    return written


def _per_label_ap_plot(
    plt: Any,
    results: Mapping[str, Any],
    runs: Mapping[str, list[dict[str, Any]]],
    names: Sequence[str],
    colors: Mapping[str, Any],
    plots: Path,
) -> str:
    """Multi-label: each label's test AP (mean over seeds) against its training positives."""
    counts = list(results["class_counts"])
    order = sorted(range(len(counts)), key=lambda j: (counts[j], j))
    label_names = list(results.get("class_names") or [str(j) for j in range(len(counts))])
    fig, ax = plt.subplots(figsize=(8, 5))
    markers = "os^vDP*Xh<>"
    for i, m in enumerate(names):
        aps = _mean_lists([[r["details"]["per_label_ap"][j] for j in order] for r in runs[m]])
        pts = [(counts[j], 100 * v) for j, v in zip(order, aps, strict=True) if not math.isnan(v)]
        if pts:
            ax.plot(
                *zip(*pts, strict=True),
                "-",
                marker=markers[i % len(markers)],
                ms=4,
                lw=1.0,
                color=colors[m],
                label=m,
            )
    ax.set_xscale("log")
    ax.set_xlabel("positive training examples of the label (log scale)")
    ax.set_ylabel("test average precision of the label (%)")
    ax.set_title("Per-label AP against the label's training positives (mean over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    if len(counts) <= 20:
        # name the labels along the top axis, at their counts
        top = ax.secondary_xaxis("top")
        top.set_xticks([counts[j] for j in order])
        top.set_xticklabels([label_names[j] for j in order], rotation=60, fontsize=6, ha="left")
        top.minorticks_off()
    ax.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, plots / "per_label_ap.png")
    plt.close(fig)
    return "per_label_ap.png"


def _natural_tail(counts: Sequence[int]) -> str:
    """The data's own long tail (``imbalance_factor: null``): the real imbalance factor and the
    many / medium / few groups by the usual thresholds when they split the classes (classes in at
    least two groups), else by terciles of the training count."""
    from longtail.metrics import shot_groups

    if not counts or min(counts) <= 0:
        return "used as loaded"
    real = max(counts) / min(counts)
    groups = shot_groups(list(counts), mode="thresholds")
    sizes = [int(groups[g].sum()) for g in ("many", "medium", "few")]
    if sum(1 for n in sizes if n) >= 2:
        rule = "by the usual thresholds (many > 100, medium 20-100, few < 20 training images)"
    else:
        groups = shot_groups(list(counts), mode="terciles")
        sizes = [int(groups[g].sum()) for g in ("many", "medium", "few")]
        rule = (
            "by terciles of the training count (the usual thresholds > 100 / 20-100 / < 20 put "
            "every class in one group)"
        )
    return (
        f"the data's own distribution, imbalance_factor null: real imbalance factor {real:.3g} = "
        f"largest / smallest training class; {rule}: {sizes[0]} many, {sizes[1]} medium, "
        f"{sizes[2]} few classes"
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
    where = f" (read from `{data['data_dir']}`)" if data.get("data_dir") else ""
    if results.get("task") == "multi-label":
        names = results.get("class_names") or []
        pairs = ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=False)) or str(counts)
        hidden = float(data.get("hide_fraction", 0.0) or 0.0)
        lines = [
            f"Data: `{results['dataset']}`{where}; {results.get('num_train', '?')} training and "
            f"{results.get('num_test', '?')} test examples, {len(counts)} labels. Visible positive "
            f"training examples per label: {pairs}."
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
    if_txt = results["imbalance_factor"]
    factory = cfg.get("model", {}).get("factory")
    if factory:
        model = model.replace(
            f"Model `{cfg.get('model', {}).get('arch', '?')}`", f"Model `{factory}` (model.factory)"
        )
    dataset = data.get("dataset", results["dataset"])
    where = f" (read from `{data['path']}`)" if data.get("path") else where
    if dataset in ("table", "mat") or (
        dataset == "image-folder"
        and data.get("data_dir")
        and not (Path(data["data_dir"]).expanduser() / "test").is_dir()
    ):
        test_txt = (
            f"the test set is a stratified hold-out of {data.get('test_fraction', '?')} of each "
            "class (seed `subset_seed`; its rows / files are listed in `split.json`), so it "
            "follows the data's own class distribution"
        )
    elif dataset == "image-folder":
        test_txt = "the test set is the `test/` folder"
    else:
        test_txt = "the test set is balanced"
    if if_txt is None:
        profile = _natural_tail(counts)
    else:
        profile = f"imbalance factor {if_txt}, profile {data.get('profile', 'exp')}"
    unit = "examples" if dataset in ("table", "mat") else "images"
    lines = [
        f"Data: `{results['dataset']}`{where}. Training set: {sum(counts)} {unit}, class counts "
        f"{counts} ({profile}); {test_txt}. " + model,
        "",
        "Mean ± sample std over seeds, in percent, at the last epoch (no model selection on the "
        "test set). Best of each column in **bold** (lowest for ECE). Many / medium / few: "
        + (
            "thirds of the classes by training count."
            if shot == "terciles"
            else "more than 100, 20 to 100, fewer than 20 training images."
        ),
    ]
    if "balanced" in results["methods"]:
        lines.append(
            "`balanced (reference)`: `erm` on the same number of training images spread evenly over "
            "the classes (the upper bound); *Gap closed* is each method's share of the gap in "
            "balanced accuracy between `erm` and that bound."
        )
    return lines


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` and ``plots/*.png`` for a run folder; returns the report's path."""
    run_dir = Path(run_dir)
    results = read_json(run_dir / "results.json")
    runs = _load_runs(run_dir, results)
    meta: dict[str, Any] = {}
    if (run_dir / "run.json").is_file():
        meta = read_json(run_dir / "run.json")
    cfg: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        import yaml

        with open(run_dir / "config.yaml", encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh) or {}
    plots = _plots(run_dir, results, runs)
    name = cfg.get("name", run_dir.name)
    lines = [f"# {name}: {results['dataset']}, {results['task']}", ""]
    lines += _intro(results, cfg)
    lines += ["", format_table(results, markdown=True), ""]
    lines.append("## Reproduce")
    lines.append("")
    lines.append("```")
    if meta.get("command"):
        lines.append(meta["command"])
    lines.append(f"longtail bench {run_dir / 'config.yaml'} --out NEW_FOLDER")
    lines.append("```")
    lines.append("")
    if plots:
        lines.append("## Plots")
        lines.append("")
        for p in plots:
            lines.append(f"![{p[:-4]}](plots/{p})")
            lines.append("")
    if meta:
        lines.append(
            f"_Python {meta.get('python', '?')}, torch {meta.get('torch', '?')}, "
            f"{meta.get('world_size', 1)} process(es), started {meta.get('started', '?')}._"
        )
        lines.append("")
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
