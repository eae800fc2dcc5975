"""The reports of tuning: a study's ``report.md`` / ``report.html``, and ``tuning.md`` /
``tuning.html`` of ``longtail bench --tune-trials`` (default against tuned, every method).

Each is laid out once as text, tables and figures, then written as markdown and as one
self-contained HTML file (:func:`longtail.engine.report.html.render_html`: the plots embedded),
atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longtail.engine.checkpoint import atomic_write_text
from longtail.engine.report.html import render_html
from longtail.engine.tune.confirm import mean_score

if TYPE_CHECKING:
    from longtail.engine.tune.study import TuneOptions
    from longtail.engine.tune.trials import TrialContext

__all__ = ["write_study_report", "write_tuning_report"]

Table = dict[str, Any]


def fmt(v: Any) -> str:
    """A parameter value as text (floats to 6 significant digits)."""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _md_table(table: Mapping[str, Any]) -> list[str]:
    """A :data:`Table` as markdown; best cells in bold."""
    out = [
        "| " + " | ".join(table["header"]) + " |",
        "|" + "---|" * len(table["header"]),
    ]
    for cells, best in zip(table["rows"], table["best"], strict=True):
        out.append(
            "| "
            + " | ".join(f"**{c}**" if b and c else c for c, b in zip(cells, best, strict=True))
            + " |"
        )
    return out


def _write(
    folder: Path,
    stem: str,
    *,
    title: str,
    paragraphs: Sequence[str],
    tables: Sequence[tuple[str, Table]],
    commands: Sequence[str],
    figures: Sequence[tuple[str, str]],
    metadata: Sequence[tuple[str, str]],
    config_text: str = "",
) -> Path:
    """``folder/<stem>.md`` and ``folder/<stem>.html``; ``figures``: ``(title, path relative to
    folder)``. Returns the markdown file's path."""
    md = [f"# {title}", ""]
    for p in paragraphs:
        md += [p, ""]
    if commands:
        md += ["```bash", *commands, "```", ""]
    for heading, table in tables[:1]:
        md += [f"## {heading}", "", *_md_table(table), ""]
    for name, path in figures:
        md += [f"## {name}", "", f"![{name}]({path})", ""]
    for heading, table in tables[1:]:
        md += [f"## {heading}", "", *_md_table(table), ""]
    atomic_write_text(folder / f"{stem}.md", "\n".join(md))
    pngs = [(name, "", (folder / path).read_bytes()) for name, path in figures]
    page = render_html(
        title=title,
        paragraphs=list(paragraphs),
        table=tables[0][1] if tables else None,
        results_title=tables[0][0] if tables else "Results",
        tables=list(tables[1:]),
        commands=list(commands),
        figures=pngs,
        metadata=list(metadata),
        config_text=config_text,
    )
    atomic_write_text(folder / f"{stem}.html", page)
    return folder / f"{stem}.md"


def write_study_report(
    ctx: TrialContext,
    options: TuneOptions,
    record: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    figures: Sequence[tuple[str, str]],
) -> Path:
    """A study's ``report.md`` and ``report.html`` in ``ctx.out``: the objective and budget, the
    space with the defaults and the best values, the validation scores, the optimisation history
    and parameter-effect plots, and every trial."""
    b, t = record["budget"], record["trials"]
    paragraphs = [
        f"Objective: {ctx.primary} on a validation split ({b['validation_fraction']:g} of the "
        f"training data: {b['num_validation']} held out, {b['num_train']} trained on); the test "
        "set was not read. Optuna TPE sampling (seeded), median pruning on the validation score "
        f"every {ctx.cfg.train.eval_every or 'no'} epoch(s).",
        f"Budget: {b['trials']} trials of {b['epochs']} epochs, seed {b['seed']}; "
        f"{t['complete']} finished, {t['pruned']} pruned, {t['fail']} failed (interrupted; drawn "
        "again).",
    ]
    best = f"{record['best_value']:.4f} (trial {record['best_trial']})"
    if record["default_value"] is not None:
        diff = record["best_value"] - record["default_value"]
        paragraphs.append(
            f"Validation {ctx.primary}: defaults {record['default_value']:.4f}, best {best}, "
            f"difference {diff:+.4f} (one seed: the spread between seeds is not measured here)."
        )
    else:
        paragraphs.append(
            f"Validation {ctx.primary}: best {best} (the defaults lie outside the space)."
        )
    conf = record.get("confirmation")
    if conf:
        d_txt = "" if conf["defaults"] is None else f", defaults {_scores(conf['defaults'])}"
        paragraphs.append(
            f"Confirmation on {len(conf['seeds'])} new seed(s) ({', '.join(map(str, conf['seeds']))}"
            f"; the study's validation split, or each seed's own where the data depend on the "
            f"seed): best values {_scores(conf['best'])}{d_txt}. Kept: the "
            f"**{conf['kept']}** values ({conf['why']}); `best_params` in best_params.json are "
            "those."
        )
    dflt = record["default_params"] or {}
    study_best = record.get("study_best_params", record["best_params"])
    space: Table = {
        "header": ["parameter", "space", "default", "best trial"],
        "rows": [],
        "best": [],
    }
    for d in ctx.dims:
        sp = d.space.to_json()
        where = (
            "{" + ", ".join(fmt(c) for c in sp["choices"]) + "}"
            if sp["scale"] == "choice"
            else f"[{fmt(sp['low'])}, {fmt(sp['high'])}] {sp['scale']}"
        )
        space["rows"].append(
            [
                d.name,
                where,
                fmt(dflt.get(d.name, d.param.default)),
                fmt(study_best.get(d.name)),
            ]
        )
        space["best"].append([False, False, False, True])
    trials: Table = {
        "header": ["trial", "state", ctx.primary, *(d.name for d in ctx.dims)],
        "rows": [],
        "best": [],
    }
    for r in rows:
        score = "" if r["value"] is None else f"{r['value']:.4f}"
        if r["state"] == "pruned" and r["last"] is not None:
            score = f"({r['last'][1]:.4f} at epoch {r['last'][0]})"
        cells = [str(r["number"]), r["state"], score]
        cells += [fmt(r["params"].get(d.name, "")) for d in ctx.dims]
        trials["rows"].append(cells)
        trials["best"].append([r["number"] == record["best_trial"]] * len(cells))
    config = ctx.out / "config.yaml"
    return _write(
        ctx.out,
        "report",
        title=f"Tuning {ctx.method} on validation ({ctx.cfg.name})",
        paragraphs=paragraphs,
        tables=[("Search space and best values", space), ("Trials", trials)],
        commands=[options.command] if options.command else [],
        figures=figures,
        metadata=[
            ("study", str(record["study_name"])),
            ("storage", str(record["storage"])),
            ("method", ctx.method),
            ("task", ctx.cfg.task),
        ],
        config_text=config.read_text() if config.is_file() else "",
    )


def _scores(values: Sequence[float | None]) -> str:
    """Per-seed scores and their mean: ``0.8512, 0.8490 (mean 0.8501)``; a failed run (diverged,
    no finite score) is ``failed``."""
    shown = ", ".join("failed" if v is None else f"{v:.4f}" for v in values)
    mean = mean_score(values)
    return shown + ("" if mean is None else f" (mean {mean:.4f})")


def _pct(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.1f}"


def _share(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _mean_std(mean: float | None, std: float | None) -> str:
    return _pct(mean) + ("" if std is None or mean is None else f" ± {100 * std:.1f}")


def write_tuning_report(root: Path, record: Mapping[str, Any], command: str = "") -> Path:
    """``tuning.md`` and ``tuning.html`` of ``longtail bench --tune-trials`` in ``root``: per
    method the default and tuned test metric, their paired difference, the validation scores and
    the best values."""
    b = record["budget"]
    paragraphs = [
        f"Every method tuned with the same budget: {b['trials']} trials of {b['epochs']} epochs on "
        f"a validation split ({b['validation_fraction']:g} of the training data, seed {b['seed']}); "
        "the test set was read once per run, after tuning. Test metric "
        f"`{record['metric']}`, mean ± std over seeds, in percent; *paired difference*: tuned "
        "minus default, same seed (mean ± std over seeds).",
        "Run folders: `default/` (the defaults), `tune/<method>/` (each study, with its report), "
        "`tuned/` (the best values).",
    ]
    gaps = any("gap_closed_default" in m for m in record["methods"].values())
    confirmed = [m["confirmation"] for m in record["methods"].values() if m.get("confirmation")]
    table: Table = {
        "header": [
            "Method",
            "Default (test)",
            "Tuned (test)",
            "Paired difference",
            *(["Gap closed: default -> tuned"] if gaps else []),
            "Validation: default -> best",
            *(["Confirmed: default vs best, kept"] if confirmed else []),
            "Best parameters",
        ],
        "rows": [],
        "best": [],
    }
    chosen = record.get("chosen_on_validation")
    if gaps:
        paragraphs.append(
            "*Gap closed*: (method - erm) / (balanced reference - erm) on the test means, erm and "
            "the reference of the default run."
        )
    if confirmed:
        k = len(confirmed[0]["seeds"])
        paragraphs.append(
            f"*Confirmed*: the best trial's values and the defaults trained again with {k} new "
            "seed(s) on the validation split (each seed's own where the data depend on the seed; "
            "mean validation score of each); the best values are kept "
            "only if they beat the defaults there, else the defaults are (*Best parameters* and "
            "*Tuned* are what was kept). The choice between methods uses the kept values' "
            "confirmed score: the winner of two means, far less optimistic than the best of "
            "all trials."
        )
    if chosen:
        gap = chosen.get("gap_closed_tuned")
        paragraphs.append(
            f"Chosen on validation (the tuned method with the best "
            f"{'confirmed ' if confirmed else ''}validation score): "
            f"**{chosen['method']}** ({_pct(chosen['best_validation'])} on validation), "
            f"{_pct(chosen.get('test_tuned'))} on test"
            + ("" if gap is None else f", {100 * gap:.0f}% of the gap closed")
            + "."
        )
    for name, m in record["methods"].items():
        diff, sd = m.get("paired_difference"), m.get("paired_difference_std")
        d_txt = (
            "n/a"
            if diff is None
            else f"{100 * diff:+.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}")
        )
        if m.get("tuned"):
            val = f"{_pct(m.get('default_validation'))} -> {_pct(m.get('best_validation'))}"
            conf = m.get("confirmation")
            if conf and conf.get("defaults") is not None:
                c_txt = (
                    f"{_pct(mean_score(conf['defaults']))} vs "
                    f"{_pct(mean_score(conf['best']))}: {conf['kept']}"
                )
            elif conf:
                c_txt = f"{_pct(conf['value'])}: {conf['kept']} ({conf['why']})"
            else:
                c_txt = "n/a"
            best = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in m["best_params"].items()
            )
            if m.get("kept_defaults"):
                best += " (the defaults: tuned = the default run, not trained again)"
        else:
            val, best, c_txt = "n/a", m.get("why", ""), "n/a"
        gap_txt = [f"{_share(m.get('gap_closed_default'))} -> {_share(m.get('gap_closed_tuned'))}"]
        row = [
            name,
            _mean_std(m.get("test_default"), m.get("test_default_std")),
            _mean_std(m.get("test_tuned"), m.get("test_tuned_std")),
            d_txt,
            *(gap_txt if gaps else []),
            val,
            *([c_txt] if confirmed else []),
            best,
        ]
        table["rows"].append(row)
        picked = chosen is not None and name == chosen["method"]
        table["best"].append([picked and i == 0 for i in range(len(row))])
    return _write(
        root,
        "tuning",
        title="Default against tuned parameters",
        paragraphs=paragraphs,
        tables=[("Default and tuned, per method", table)],
        commands=[command] if command else [],
        figures=[],
        metadata=[("metric", str(record["metric"])), ("seeds", str(_seeds(record)))],
    )


def _seeds(record: Mapping[str, Any]) -> str:
    seeds = {s for m in record["methods"].values() for s in m.get("seeds", [])}
    return ", ".join(str(s) for s in sorted(seeds))
