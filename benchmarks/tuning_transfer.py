"""Does a validation gain carry over to the test set? Per tuned method of a ``bench --tune-trials``
folder: the validation gain of the best trial over the default trial, and the paired test
difference (tuned minus default, same seed), with their mean and the Spearman rank correlation.

    python benchmarks/tuning_transfer.py runs/tune_fmnist_lt [--without weight-balancing]
    python benchmarks/tuning_transfer.py runs/tune_fmnist_lt_confirm --unconfirmed runs/tune_fmnist_lt

With a folder confirmed by ``--tune-confirm``, also the confirmed gain (the best values' mean minus
the defaults' on the new seeds) and which values were kept; with ``--unconfirmed``, the same study
run without confirmation, whose test difference is the best trial's values'.

The best of N noisy validation scores is optimistic (the winner's curse): where the validation
split is small, most of a method's validation gain does not reappear on test.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from longtail.engine.tune.confirm import mean_score


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(v: list[float]) -> np.ndarray:
        x = np.asarray(v, dtype=float)
        order = x.argsort(kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for value in np.unique(x):  # ties share their mean rank
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def _confirmed_gain(m: dict) -> float | None:
    """Mean of the best values minus mean of the defaults on the confirmation's new seeds."""
    c = m.get("confirmation") or {}
    best, defaults = mean_score(c.get("best")), mean_score(c.get("defaults"))
    return None if best is None or defaults is None else 100 * (best - defaults)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a folder written by longtail bench --tune-trials")
    p.add_argument("--without", default="", help="comma-separated methods to leave out")
    p.add_argument(
        "--unconfirmed",
        type=Path,
        help="with a run confirmed by --tune-confirm: the same study run without confirmation, "
        "whose tuned runs used the best trial's values (their test difference is compared)",
    )
    args = p.parse_args()
    record = json.loads((args.run / "tuning.json").read_text())
    other = (
        json.loads((args.unconfirmed / "tuning.json").read_text())["methods"]
        if args.unconfirmed
        else {}
    )
    left_out = {m for m in args.without.split(",") if m}
    rows = []
    for name, m in record["methods"].items():
        if not m.get("tuned") or name in left_out or m.get("paired_difference") is None:
            continue
        gain = 100 * (m["best_validation"] - m["default_validation"])
        best_diff = other.get(name, {}).get("paired_difference")
        rows.append(
            (
                name,
                gain,
                _confirmed_gain(m),
                (m.get("confirmation") or {}).get("kept", ""),
                100 * m["paired_difference"],
                None if best_diff is None else 100 * best_diff,
            )
        )
    if len(rows) < 2:
        raise SystemExit(f"{args.run}: fewer than two tuned methods with test results")
    confirmed = any(r[2] is not None for r in rows)
    head = f"{'method':<20} {'validation gain':>16}"
    if confirmed:
        head += f" {'confirmed gain':>15} {'kept':>9}"
    head += f" {'test difference':>16}"
    if other:
        head += f" {'test diff., best':>17}"
    print(head)
    for name, gain, cgain, kept, diff, bdiff in sorted(rows, key=lambda r: -r[1]):
        line = f"{name:<20} {gain:>+16.1f}"
        if confirmed:
            line += f" {'n/a' if cgain is None else f'{cgain:+.1f}':>15} {kept:>9}"
        line += f" {diff:>+16.1f}"
        if other:
            line += f" {'n/a' if bdiff is None else f'{bdiff:+.1f}':>17}"
        print(line)
    gains, diffs = [r[1] for r in rows], [r[4] for r in rows]
    print(
        f"mean over {len(rows)} methods: validation gain {statistics.fmean(gains):+.2f}, "
        f"test difference {statistics.fmean(diffs):+.2f}; Spearman {spearman(gains, diffs):.2f}"
    )
    paired = [r for r in rows if r[5] is not None]
    if paired:
        print(
            f"over the {len(paired)} methods of both folders: test difference of the kept values "
            f"{statistics.fmean(r[4] for r in paired):+.2f}, of the best trial's values "
            f"{statistics.fmean(r[5] for r in paired):+.2f}"
        )
    both = [r for r in paired if r[2] is not None]
    if len(both) >= 2:
        best = [r[5] for r in both]
        print(
            f"over the {len(both)} methods confirmed against their defaults, the best values' test "
            f"difference against the study's validation gain: Spearman "
            f"{spearman([r[1] for r in both], best):.2f}, against the confirmed gain: Spearman "
            f"{spearman([r[2] for r in both], best):.2f}"
        )


if __name__ == "__main__":
    main()
