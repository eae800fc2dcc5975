"""Confirm a study's best values on fresh seeds before trusting them (``--confirm K``).

The best of N trials is the maximum of N noisy validation scores: it is optimistic (the winner's
curse). On Fashion-MNIST-LT the best trial beat the defaults by 1.15 points on validation on
average, and the tuned runs beat the default runs by 0.02 points on test (docs/results.md). A
confirmation measures both candidates again, without that selection: the best trial's values and
the defaults (the first trial) are each trained with ``K`` new seeds (``seed + 1 .. seed + K``) on
the same training and validation split, and the best values are kept only if their mean score over
those seeds beats the defaults'. The kept values' mean is an unbiased validation score, which
``bench --tune-trials`` uses to choose a method.

The runs are ordinary run folders, ``confirm/best/`` and ``confirm/defaults/`` in the study's
folder (a rerun resumes them); their test split is the validation split, as in every trial.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longtail.engine.runner import run_benchmark
from longtail.engine.tune.trials import TrialContext, trial_config

__all__ = ["confirm_best"]


def confirm_best(
    rows: list[dict[str, Any]],
    ctx: TrialContext,
    seeds: int,
    *,
    jobs: int = 1,
    command: str = "",
    say: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any] | None:
    """Train the best trial's values and the defaults with ``seeds`` new seeds; keep the better.

    Args:
        rows: the study's trials (:func:`~longtail.engine.tune.output.trial_rows`).
        ctx: the study.
        seeds: ``K >= 1`` new seeds, ``ctx.seed + 1 .. ctx.seed + K``.
        jobs: processes for the runs (as ``bench --jobs``).

    Returns:
        ``None`` without a finished trial; else ``{"seeds", "best", "defaults", "kept", "params",
        "value", "why"}``: the per-seed scores of the best values and of the defaults (``None``
        when the best trial is the defaults, or the defaults lie outside the space), which of the
        two is kept (``"best"`` or ``"defaults"``), its values and mean score, and why in words.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--confirm: expected an integer >= 1, got {seeds!r}")
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not complete:
        return None
    pick = max if ctx.maximize else min
    best = pick(complete, key=lambda r: r["value"])
    default = next((r for r in complete if r["defaults"]), None)
    new_seeds = [ctx.seed + i for i in range(1, seeds + 1)]
    candidates = {"best": best["params"]}
    if default is not None and default["number"] != best["number"]:
        candidates["defaults"] = default["params"]
    scores: dict[str, list[float]] = {}
    for which, values in candidates.items():
        folder = ctx.out / "confirm" / which
        say(f"{ctx.study_name}: confirming the {which} values with seeds {new_seeds}: {folder}")
        scores[which] = _scores(ctx, values, new_seeds, folder, jobs, command)
    means = {k: statistics.fmean(v) for k, v in scores.items()}
    if "defaults" not in means:
        kept = "best"
        why = (
            "the best trial is the defaults"
            if default is not None
            else "the defaults lie outside the space: nothing to compare with"
        )
    else:
        wins = (
            means["best"] > means["defaults"] if ctx.maximize else means["best"] < means["defaults"]
        )
        kept = "best" if wins else "defaults"
        verdict = "better than" if wins else "not better than"
        why = (
            f"the best values scored {means['best']:.4f} on the new seeds, {verdict} the "
            f"defaults' {means['defaults']:.4f}"
        )
    return {
        "seeds": new_seeds,
        "best": scores["best"],
        "defaults": scores.get("defaults"),
        "kept": kept,
        "params": candidates[kept],
        "value": means[kept],
        "why": why,
    }


def _scores(
    ctx: TrialContext,
    values: dict[str, Any],
    seeds: list[int],
    folder: Path,
    jobs: int,
    command: str,
) -> list[float]:
    """The primary validation metric of ``values`` for each seed (a resumable run folder)."""
    cfg = dataclasses.replace(
        trial_config(ctx.cfg, ctx.method, ctx.method, values), seeds=seeds, methods=[ctx.method]
    )
    results = run_benchmark(
        cfg,
        folder,
        resume=folder.exists(),
        command=command,
        progress=False,
        echo=None,
        jobs=min(jobs, len(seeds)),
    )
    entry = results["methods"][ctx.method]
    by_seed = dict(zip(entry["seeds"], entry["metrics"][ctx.primary]["values"], strict=True))
    return [float(by_seed[s]) for s in seeds]
