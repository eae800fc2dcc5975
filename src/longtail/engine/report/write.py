"""Writing a run folder's report: ``report.md``, ``report.html`` and ``plots/*.png``.

Everything is rebuilt from the files of the run folder (``results.json``, ``config.yaml``,
``run.json`` and each ``<method>/seed_<s>/result.json``), so ``longtail report RUN_DIR`` can redo
it at any time. Every file is written atomically.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import atomic_write_text, read_json
from longtail.engine.report.html import render_html
from longtail.engine.report.plots import common_sections, training_curves
from longtail.engine.report.prose import data_phrase, data_source, intro, report_title
from longtail.engine.report.sections import ReportContext, Section, sections_of
from longtail.engine.report.style import method_styles
from longtail.engine.report.table import (
    SKLEARN,
    format_table,
    metric_specs,
    plain,
    table_model,
)

__all__ = ["load_runs", "write_report"]


def load_runs(run_dir: Path, results: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every method's ``result.json`` per seed (the seeds of ``results.json`` that have one), in
    the order of ``results["methods"]`` and of each method's ``seeds``; a method without a
    ``result.json`` is left out (as are ``results`` without ``methods``, an entry without ``seeds``)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, entry in (results.get("methods") or {}).items():
        for seed in entry.get("seeds", []):
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
    """The figures: the common ones, the task's (:func:`sections_of`), the training curves."""
    import matplotlib  # optional: matplotlib (the cli extra)

    matplotlib.use("Agg", force=True)
    if not ctx.names:
        return []
    sections = common_sections(ctx)
    for fn in sections_of(str(ctx.results.get("task"))):
        sections += fn(ctx)
    sections.append(training_curves(ctx))
    return sections


def _metadata(
    run_dir: Path, results: Mapping[str, Any], cfg: Mapping[str, Any], meta: Mapping[str, Any]
) -> list[tuple[str, str]]:
    seeds = sorted({s for e in results["methods"].values() for s in e.get("seeds", [])})
    source = data_source(results, cfg)
    rows = [
        ("config", str(cfg.get("name", run_dir.name))),
        ("task", str(results.get("task", "?"))),
        ("data read", source or plain(data_phrase(results, cfg))),
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


def best_on_validation(results: Mapping[str, Any], config: str) -> tuple[str, list[str]] | None:
    """For a run evaluated on a validation split: a sentence naming the best method by the
    primary metric (mean over seeds; the balanced and scikit-learn references are not methods
    one can fit) and the commands that train it into a model bundle and predict with it."""
    if results.get("evaluated_on") != "validation":
        return None
    specs = metric_specs(results)
    if not specs:
        return None
    primary = specs[0]
    sign = 1.0 if primary.get("higher_is_better", True) else -1.0
    scored = [
        (sign * float(v), name, float(v))
        for name, m in results.get("methods", {}).items()
        if name not in ("balanced", SKLEARN)
        and (v := m.get("metrics", {}).get(primary["name"], {}).get("mean")) is not None
    ]
    if not scored:
        return None
    _, name, value = max(scored)
    text = (
        f"Best on validation by {primary.get('label', primary['name'])}: **{name}** "
        f"({100 * value:.1f}). The test set was not read; train it on this data, choose its "
        "calibration and thresholds on validation, and predict with the bundle:"
    )
    commands = [
        f"longtail fit {config} --method {name} --out model",
        "longtail predict model INPUT --out predictions.csv",
    ]
    return text, commands


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` for a run folder.

    Every file is written atomically with the mode the umask gives a new file. Returns the path of
    ``report.md``.
    """
    run_dir = Path(run_dir)
    results = read_json(run_dir / "results.json")
    runs = load_runs(run_dir, results)
    results = _with_params(results, runs)
    meta: dict[str, Any] = {}
    if (run_dir / "run.json").is_file():
        meta = read_json(run_dir / "run.json")
    cfg: dict[str, Any] = {}
    config_text = ""
    if (run_dir / "config.yaml").is_file():
        import yaml  # optional: pyyaml (the cli extra)

        config_text = (run_dir / "config.yaml").read_text(encoding="utf-8")
        cfg = yaml.safe_load(config_text) or {}
    # the figures show the methods (and the balanced reference); the scikit-learn reference is a
    # row of the table only (it has no training curves, and it is not one of the methods)
    drawn = {m: r for m, r in runs.items() if m != SKLEARN}
    names = [m for m in results["methods"] if m in drawn]
    ctx = ReportContext(run_dir, results, drawn, cfg, names, method_styles(results, names))
    sections = _sections(ctx)
    name = str(cfg.get("name", run_dir.name))
    title = report_title(name, results, cfg)
    paragraphs = intro(results, cfg)
    model = table_model(results) if results["methods"] else None
    commands = [meta["command"]] if meta.get("command") else []
    commands.append(f"longtail bench {run_dir / 'config.yaml'} --out NEW_FOLDER")
    footer = (
        f"_Python {meta.get('python', '?')}, torch {meta.get('torch', '?')}, "
        f"{meta.get('world_size', 1)} process(es), started {meta.get('started', '?')}._"
        if meta
        else ""
    )

    best = best_on_validation(results, str(run_dir / "config.yaml"))
    lines = [f"# {title}", "", *paragraphs, ""]
    lines += [format_table(results, markdown=True), ""]
    if best is not None:
        lines += ["## Use the best method", "", best[0], "", "```", *best[1], "```", ""]
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
        paragraphs=[p for p in paragraphs if p]
        + ([best[0] + " " + " ; ".join(f"`{c}`" for c in best[1])] if best else []),
        table=None
        if model is None
        else {
            "header": model.header,
            "rows": model.rows,
            "best": model.best,
            "notes": model.notes,
            "references": model.references,
        },
        commands=commands,
        figures=[(s.title, s.caption, s.path.read_bytes()) for s in sections],
        metadata=_metadata(run_dir, results, cfg, meta),
        config_text=config_text,
    )
    atomic_write_text(run_dir / "report.html", html)
    return path
