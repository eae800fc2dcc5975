"""Confirm a study's best values on fresh seeds before trusting them (``--confirm K``).

The best of N trials is the maximum of N noisy validation scores: it is optimistic (the winner's
curse). On Fashion-MNIST-LT the best trial beat the defaults by 1.00 points on validation on
average, and the tuned runs beat the default runs by 0.04 points on test (docs/results.md). A
confirmation measures both candidates again, without that selection: the best trial's values and
the defaults (the first trial) are each trained with ``K`` new seeds (``seed + 1 .. seed + K``) on
the same training and validation split, and the best values are kept only if their mean score over
those seeds beats the defaults'. The kept values' mean is far less optimistic than the best trial's
score (it is the winner of two means, not of N single scores); ``bench --tune-trials`` uses it to
choose a method.

The runs are ordinary run folders, ``confirm/trial-NNNN/`` in the study's folder, one per trial
confirmed (a rerun resumes them; a study resumed with a larger budget whose best trial changed
confirms the new one in its own folder); their test split is the validation split, as in every
trial. The data are those the study was given (``tune_method(data=...)``), else built from the
configuration as ``bench`` builds them: where they depend on the seed (the open-set splits,
``data.class_order: random``) each new seed has its own data, the same for both candidates, so the
comparison stays paired. Processes sharing a study
through ``--storage`` each confirm what they see as the best when their trials end.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from longtail.engine.datasets import DataBundle
from longtail.engine.runner import run_benchmark
from longtail.engine.trainer import NonFiniteLossError
from longtail.engine.tune.trials import TrialContext, trial_config

__all__ = ["confirm_best", "mean_score"]


def confirm_best(
    rows: list[dict[str, Any]],
    ctx: TrialContext,
    seeds: int,
    *,
    jobs: int = 1,
    command: str = "",
    say: Callable[[str], None] = lambda _m: None,
    data: DataBundle | None = None,
) -> dict[str, Any] | None:
    """Train the best trial's values and the defaults with ``seeds`` new seeds; keep the better.

    Args:
        rows: the study's trials (:func:`~longtail.engine.tune.output.trial_rows`).
        ctx: the study.
        seeds: ``K >= 1`` new seeds, ``ctx.seed + 1 .. ctx.seed + K``.
        jobs: processes for the runs (as ``bench --jobs``).
        data: the data the study was given (every new seed trains on them); ``None``: built
            from ``ctx.cfg``.

    Returns:
        ``None`` without a finished trial; else ``{"seeds", "best", "defaults", "best_trial",
        "defaults_trial", "kept", "params", "value", "why"}``: the per-seed scores of the best
        values and of the defaults (``None`` for a run that diverged or has no finite score; the
        defaults' list is ``None`` when they are the best trial or did not finish), the trials
        they come from, which of the two is kept (``"best"`` or ``"defaults"``), its values and
        mean score (``None`` when its runs failed), and why in words.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--confirm: expected an integer >= 1, got {seeds!r}")
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not complete:
        return None
    pick = max if ctx.maximize else min
    best = pick(complete, key=lambda r: r["value"])
    # the finished defaults trial (a defaults trial killed mid-run fails and is queued again),
    # else the first that did not fail (pruned: it did not finish)
    defaults = [r for r in rows if r["defaults"]]
    default_row = next((r for r in defaults if r["state"] == "complete"), None) or next(
        (r for r in defaults if r["state"] != "fail"), None
    )
    new_seeds = [ctx.seed + i for i in range(1, seeds + 1)]
    candidates = {"best": best}
    if (
        default_row is not None
        and default_row["state"] == "complete"
        and default_row["number"] != best["number"]
    ):
        candidates["defaults"] = default_row
    scores: dict[str, list[float | None]] = {}
    for which, row in candidates.items():
        # a folder per trial: a study resumed with a larger budget may find another best
        folder = ctx.out / "confirm" / f"trial-{int(row['number']):04d}"
        say(
            f"{ctx.study_name}: confirming the {which} values (trial {row['number']}) with seeds "
            f"{new_seeds}: {folder}"
        )
        scores[which] = _scores(ctx, row["params"], new_seeds, folder, jobs, command, data)
    means = {k: mean_score(v) for k, v in scores.items()}
    if "defaults" not in scores:
        kept = "best"
        if default_row is None:
            why = "the defaults lie outside the space: nothing to compare with"
        elif default_row["number"] == best["number"]:
            why = "the best trial is the defaults"
        else:
            why = f"the defaults trial did not finish ({default_row['state']}): nothing to compare"
    else:
        b, d = means["best"], means["defaults"]
        if b is None or d is None:
            wins = d is None and b is not None
            failed = " and ".join(k for k in ("best", "defaults") if means[k] is None)
            why = f"the {failed} values' runs failed (diverged or no finite score)"
        else:
            wins = b > d if ctx.maximize else b < d
            verdict = "better than" if wins else "not better than"
            why = (
                f"the best values scored {b:.4f} on the new seeds, {verdict} the defaults' {d:.4f}"
            )
        kept = "best" if wins else "defaults"
    return {
        "seeds": new_seeds,
        "best": scores["best"],
        "defaults": scores.get("defaults"),
        "best_trial": best["number"],
        "defaults_trial": None if default_row is None else default_row["number"],
        "kept": kept,
        "params": candidates[kept]["params"],
        "value": means[kept],
        "why": why,
    }


def mean_score(values: Sequence[float | None] | None) -> float | None:
    """The mean of a candidate's per-seed scores; ``None`` when there are none or a run failed
    (a failed candidate loses)."""
    if not values:
        return None
    if any(v is None for v in values):
        return None
    return statistics.fmean(v for v in values if v is not None)


def _scores(
    ctx: TrialContext,
    values: dict[str, Any],
    seeds: list[int],
    folder: Path,
    jobs: int,
    command: str,
    data: DataBundle | None,
) -> list[float | None]:
    """The primary validation metric of ``values`` for each seed (a resumable run folder);
    ``None`` for every seed when a run diverged, and for a seed without a finite score."""
    cfg = dataclasses.replace(
        trial_config(ctx.cfg, ctx.method, ctx.method, values), seeds=seeds, methods=[ctx.method]
    )
    try:
        results = run_benchmark(
            cfg,
            folder,
            resume=folder.exists(),
            command=command,
            progress=False,
            echo=None,
            jobs=min(jobs, len(seeds)),
            data=data,
        )
    except NonFiniteLossError:
        return [None] * len(seeds)
    entry = results["methods"][ctx.method]
    by_seed = dict(zip(entry["seeds"], entry["metrics"][ctx.primary]["values"], strict=True))
    out: list[float | None] = []
    for s in seeds:
        v = by_seed.get(s)
        out.append(float(v) if v is not None and math.isfinite(float(v)) else None)
    return out
