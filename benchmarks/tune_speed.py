"""Trials per minute of ``longtail tune`` on the bundled digits with ``--jobs 1`` and ``--jobs 2``.

Runs ``longtail tune digits_lt --method M --trials N --jobs J`` in a fresh folder for each J and
reports the wall time of the command and the trials per minute over the study's own clock (first
trial start to last trial end, from the study's records: the processes' start-up is not counted).
With ``train.eval_every=0`` nothing is pruned, so every trial trains all its epochs.

    python benchmarks/tune_speed.py --method la-loss --trials 40 --jobs 1,2 [--epochs 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _study_minutes(db: Path, name: str) -> tuple[float, int]:
    import optuna  # optional dependency: optuna (the cli extra)

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    start = min(t.datetime_start for t in done if t.datetime_start is not None)
    end = max(t.datetime_complete for t in done if t.datetime_complete is not None)
    return (end - start).total_seconds() / 60.0, len(done)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="la-loss")
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--jobs", default="1,2")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs (default 30)")
    args = p.parse_args()
    rows = []
    for jobs in [int(j) for j in args.jobs.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "study"
            cmd = [sys.executable, "-m", "longtail", "tune", "digits_lt", "--method", args.method]
            cmd += ["--trials", str(args.trials), "--jobs", str(jobs), "--out", str(out)]
            cmd += ["--no-progress"] + (["--epochs", str(args.epochs)] if args.epochs else [])
            # no validation score between epochs: nothing is pruned, every trial trains fully (the
            # pruned trials would differ between --jobs 1 and 2 and blur the throughput)
            cmd += ["--set", "train.eval_every=0"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            wall = time.perf_counter() - t0
            minutes, finished = _study_minutes(out / "study.db", f"digits_lt-{args.method}")
            rows.append((jobs, finished, wall, finished / minutes))
    base = rows[0][3]
    print("| --jobs | trials | command wall s | trials / min (study clock) | speed-up |")
    print("|---:|---:|---:|---:|---:|")
    for jobs, finished, wall, rate in rows:
        print(f"| {jobs} | {finished} | {wall:.1f} | {rate:.1f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
