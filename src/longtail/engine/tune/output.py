"""What a study leaves in its folder: ``best_params.json``, ``trials.csv``, ``report.md`` and
``report.html`` (:mod:`longtail.engine.tune.report`), ``plots/``.

``best_params.json``: the method, the objective (the task's primary metric on the validation split),
the values to use (``best_params``: the best trial's, or what a confirmation kept), the best
trial's values and score (``study_best_params``, ``best_value``), the confirmation's scores
(``confirmation``, ``null`` without one), the defaults' score (the first trial, when the defaults
lie in the space), the trials by state, the budget (trials, epochs, validation share, seed) and the
space.
The report shows the optimisation history (every finished trial's score, the pruned ones at their
last validation score, the best so far) and each parameter's effect (score against value, log axes
for log-scale parameters, the defaults and the best marked).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longtail.engine.checkpoint import atomic_write_json
from longtail.engine.datasets import DataBundle
from longtail.engine.tune.report import fmt as _fmt
from longtail.engine.tune.report import write_study_report
from longtail.engine.tune.trials import TrialContext, redact

if TYPE_CHECKING:
    from longtail.engine.tune.study import TuneOptions

__all__ = ["trial_rows", "write_outputs"]


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial as plain values: number, state, score, parameters, last reported epoch."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        last = None
        if t.intermediate_values:
            step = max(t.intermediate_values)
            last = (int(step), float(t.intermediate_values[step]))
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": None if t.value is None else float(t.value),
                "params": dict(t.params),
                "last": last,
                "defaults": bool(t.user_attrs.get("defaults")),
                "seconds": t.user_attrs.get("seconds"),
                "note": t.user_attrs.get("diverged", ""),
            }
        )
    return rows


def write_outputs(
    study: Any,
    ctx: TrialContext,
    options: TuneOptions,
    data: DataBundle,
    confirmation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the study's files in ``ctx.out``; return the ``best_params.json`` record.

    With a ``confirmation`` (:func:`~longtail.engine.tune.confirm.confirm_best`), ``best_params``
    are the values it kept (the defaults when the best trial's did not beat them on the new
    seeds); ``best_trial`` / ``best_value`` stay the study's best trial, and ``confirmation``
    holds the scores.

    Raises:
        ValueError: no trial finished with a score (all pruned, diverged or failed).
    """
    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "complete"]
    if not complete:
        raise ValueError(
            f"--trials: no trial of {ctx.method} finished with a score (see {ctx.out / 'trials.csv'})"
        )
    _write_csv(ctx.out / "trials.csv", rows, ctx)
    pick = max if ctx.maximize else min
    best = pick(complete, key=lambda r: r["value"])
    default = next((r for r in complete if r["defaults"]), None)
    counts = {s: sum(1 for r in rows if r["state"] == s) for s in ("complete", "pruned", "fail")}
    record: dict[str, Any] = {
        "method": ctx.method,
        "task": ctx.cfg.task,
        "metric": ctx.primary,
        "higher_is_better": ctx.maximize,
        "evaluated_on": "validation",
        "best_params": confirmation["params"] if confirmation else best["params"],
        "best_value": best["value"],
        "best_trial": best["number"],
        "study_best_params": best["params"],
        "confirmation": confirmation,
        "default_params": default["params"] if default else None,
        "default_value": default["value"] if default else None,
        "trials": {"finished": counts["complete"] + counts["pruned"], **counts},
        "budget": {
            "trials": options.trials,
            "epochs": ctx.cfg.train.epochs,
            "validation_fraction": ctx.cfg.data.validation_fraction,
            "num_train": len(data.train_y),
            "num_validation": len(data.test_y),
            "seed": ctx.seed,
        },
        "space": {d.name: d.space.to_json() for d in ctx.dims},
        "study_name": ctx.study_name,
        "storage": redact(ctx.storage),
    }
    atomic_write_json(ctx.out / "best_params.json", record)
    figures = _plots(rows, ctx, best, default)
    write_study_report(ctx, options, record, rows, figures)
    return record


def _write_csv(path: Path, rows: list[dict[str, Any]], ctx: TrialContext) -> None:
    names = [d.name for d in ctx.dims]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "state", ctx.primary, "last_epoch", "seconds", *names, "note"])
        for r in rows:
            last = r["last"][0] if r["last"] else ""
            w.writerow(
                [
                    r["number"],
                    r["state"],
                    "" if r["value"] is None else r["value"],
                    last,
                    r["seconds"] if r["seconds"] is not None else "",
                    *(r["params"].get(n, "") for n in names),
                    "defaults" if r["defaults"] else r["note"],
                ]
            )


def _score(r: dict[str, Any]) -> float | None:
    """A trial's score in the plots: its final one, or (pruned) its last validation score."""
    if r["value"] is not None:
        return float(r["value"])
    return None if r["last"] is None else r["last"][1]


def _plots(
    rows: list[dict[str, Any]],
    ctx: TrialContext,
    best: dict[str, Any],
    default: dict[str, Any] | None,
) -> list[tuple[str, str]]:
    """``plots/history.png`` and ``plots/params.png``: ``(title, relative path)`` each."""
    import matplotlib  # optional dependency: matplotlib (the cli extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional dependency: matplotlib (the cli extra)
    from matplotlib import ticker  # optional dependency: matplotlib (the cli extra)

    plots = ctx.out / "plots"
    plots.mkdir(exist_ok=True)
    label = f"{ctx.primary} (validation)"
    done = [r for r in rows if r["state"] == "complete"]
    pruned = [r for r in rows if r["state"] == "pruned" and _score(r) is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(
        [r["number"] for r in done],
        [r["value"] for r in done],
        color="tab:blue",
        label="finished trial",
        zorder=3,
    )
    if pruned:
        ax.scatter(
            [r["number"] for r in pruned],
            [_score(r) or 0.0 for r in pruned],
            color="tab:gray",
            marker="x",
            label="pruned (last validation score)",
            zorder=3,
        )
    xs, ys, cur = [], [], None
    pick = max if ctx.maximize else min
    for r in sorted(done, key=lambda r: r["number"]):
        cur = r["value"] if cur is None else pick(cur, r["value"])
        xs.append(r["number"])
        ys.append(cur)
    ax.step(xs, ys, where="post", color="tab:orange", label="best so far")
    if default is not None:
        ax.axhline(default["value"], color="tab:green", linestyle="--", label="defaults")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # trials are whole numbers
    ax.set_ylabel(label)
    ax.set_title(f"{ctx.method}: optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(plots / "history.png", dpi=120)
    plt.close(fig)

    n = len(ctx.dims)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    scored = [r for r in [*done, *pruned] if r["params"]]
    for i, d in enumerate(ctx.dims):
        ax = axes[i // cols][i % cols]
        pts = [(r["params"][d.name], _score(r), r) for r in scored if d.name in r["params"]]
        pos = {c: j for j, c in enumerate(d.space.choices)}
        if d.space.scale == "choice":
            ax.set_xticks(range(len(pos)))
            ax.set_xticklabels([_fmt(c) for c in pos], rotation=30, fontsize="small")
            ax.set_xlim(-0.5, len(pos) - 0.5)
        elif d.space.scale == "log":
            ax.set_xscale("log")
            plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
            ax.xaxis.set_major_formatter(plain)
            if float(d.space.high or 1) / float(d.space.low or 1) < 100:
                # under two decades: labels at 1, 2 and 5 of each decade (every minor tick's
                # label would overlap its neighbours)
                ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())

        def place(v: Any, pos: dict[Any, int] = pos) -> float:
            return float(pos.get(v, -1)) if pos else float(v)

        for state, style in (
            ("complete", {"color": "tab:blue", "label": "finished trial"}),
            ("pruned", {"color": "tab:gray", "marker": "x", "label": "pruned"}),
        ):
            xy = [(place(v), float(s)) for v, s, r in pts if r["state"] == state and s is not None]
            if xy:
                ax.scatter([x for x, _ in xy], [y for _, y in xy], s=18, **style)
        if d.name in best["params"]:
            ax.scatter(
                [place(best["params"][d.name])],
                [best["value"]],
                color="tab:orange",
                marker="*",
                s=140,
                label="best",
                zorder=4,
            )
        if default is not None and d.name in default["params"]:
            ax.axvline(
                place(default["params"][d.name]), color="tab:green", ls="--", label="default"
            )
        ax.set_xlabel(f"{d.name} ({d.space.scale})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(loc="best", fontsize="x-small")
    for j in range(n, nrows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"{ctx.method}: each parameter's effect on the validation score")
    fig.tight_layout()
    fig.savefig(plots / "params.png", dpi=120)
    plt.close(fig)
    return [
        ("Optimisation history", "plots/history.png"),
        ("Parameter effects", "plots/params.png"),
    ]
