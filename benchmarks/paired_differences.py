"""Paired differences between methods of one run folder, seed by seed (for open set: split by split).

For each pair ``A-B`` prints the per-seed differences of METRIC (in points), their mean and sample
std; the quoted open-set comparisons of docs/results.md come from

    python benchmarks/paired_differences.py runs/openset_full --metrics auroc,oscr \\
        --pairs mls-softmax,arpl-softmax,arpl-mls

and, with ``--first``, a tuned method against another folder's default (same seed):

    python benchmarks/paired_differences.py runs/openset_full \\
        --first runs/tune_openset_full/tuned --pairs arpl:softmax,arpl:mls
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def metric(run: Path, method: str, seed: int, name: str) -> float:
    record = json.loads((run / method / f"seed_{seed}" / "result.json").read_text())
    return float(record["metrics"][name])


def split_pair(pair: str, methods: set[str]) -> tuple[str, str]:
    """``A:B``, or ``A-B`` when exactly one split of the hyphens names two methods of the run."""
    if ":" in pair:
        a, b = pair.split(":", 1)
        candidates = [(a, b)]
    else:
        parts = pair.split("-")
        candidates = [("-".join(parts[:i]), "-".join(parts[i:])) for i in range(1, len(parts))]
    found = [(a, b) for a, b in candidates if a in methods and b in methods]
    if len(found) != 1:
        raise SystemExit(
            f"--pairs: {pair!r} does not name two methods of the run "
            f"(write A:B; methods: {', '.join(sorted(methods))})"
        )
    return found[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a run folder with results.json")
    p.add_argument("--metrics", default="auroc", help="comma-separated metric names")
    p.add_argument("--pairs", required=True, help="comma-separated A:B (or A-B) method pairs")
    p.add_argument(
        "--first",
        type=Path,
        default=None,
        help="the run folder of each pair's first method (default: RUN), e.g. a tuned/ folder",
    )
    args = p.parse_args()
    first = args.first or args.run
    results = json.loads((args.run / "results.json").read_text())
    other = json.loads((first / "results.json").read_text())
    methods = set(results["methods"]) | set(other["methods"])
    for name in args.metrics.split(","):
        for pair in args.pairs.split(","):
            a, b = split_pair(pair, methods)
            if a not in other["methods"] or b not in results["methods"]:
                raise SystemExit(f"--pairs: {a} is not in {first} or {b} not in {args.run}")
            seeds = sorted(set(other["methods"][a]["seeds"]) & set(results["methods"][b]["seeds"]))
            diffs = [
                100 * (metric(first, a, s, name) - metric(args.run, b, s, name)) for s in seeds
            ]
            sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
            shown = ", ".join(f"{d:+.1f}" for d in diffs)
            print(
                f"{name} {a} - {b}: {statistics.fmean(diffs):+.1f} ± {sd:.1f}  (seeds {seeds}: {shown})"
            )


if __name__ == "__main__":
    main()
