"""The main job (`longtail bench`, bundled digits): its method and stage counts, wall time, profile.

Prints what README.md and docs/ quote about the main job, measured here:

- the number of methods it trains (the registry's single-label methods) and the distinct first
  stages they train per seed (methods sharing a stage count it once, see `stage_of`), plus the
  balanced reference and its stage;
- the wall time of the whole command (`longtail bench --out TMP --no-progress`, a fresh process
  each run), the median of RUNS runs; with `--vs SRC` the same command on another source tree
  (e.g. a `git worktree` of an older commit: `--vs /tmp/old/src`) in turn with it (A B A B ...),
  and the median of the pairwise ratios, which stays meaningful on a machine shared with other jobs;
- with `--profile`: one run with `--jobs 1` in this process, with wall-clock timers around its
  phases (imports, data, training steps, the evaluations after each epoch, the
  checkpoints, the report).

The load average of the machine is printed before and after: quote it with the times.

Usage, from the repository root (the `longtail` command of the active environment, on this
checkout's sources):

    python scripts/main_job_timing.py [--runs 3] [--jobs N] [--vs OLD_SRC] [--profile] [--no-time]
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def main_job_counts() -> dict[str, int]:
    """Methods, distinct stages per seed and seeds of the main job (the bundled digits config)."""
    sys.path.insert(0, str(SRC))
    from longtail.engine.config import load_config
    from longtail.engine.kinds import TASK_KINDS, reference_method
    from longtail.engine.methods import resolve_methods
    from longtail.engine.runner.benchmark import data_problem, method_names
    from longtail.engine.runner.stages import stage_of

    cfg = load_config(None)  # the bundled digits_lt: what `longtail bench` runs
    table = resolve_methods(cfg.recipes, cfg.task)
    data = TASK_KINDS[cfg.task].build_data(cfg, "long-tailed", None)
    # `methods: all` runs every method of the task that the data can run (not SLA on vectors)
    names = [n for n in method_names(cfg) if data_problem(table[n], data) is None]
    stages = {
        stage_of(
            cfg, table[n], table[n].resolve_params(cfg.method_params.get(n, {})), "long-tailed"
        ).key
        for n in names
    }
    out = {"methods": len(names), "stages": len(stages), "seeds": len(cfg.seeds)}
    if cfg.data.balanced_reference:
        ref = reference_method(cfg.task)
        out["reference_stages"] = 1
        out["stages_with_reference"] = len(stages) + 1
        assert stage_of(cfg, ref, ref.resolve_params({}), "balanced").key not in stages
    return out


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux / macOS
        return "n/a"


def _one_run(src: Path, jobs: int | None) -> float:
    out = Path(tempfile.mkdtemp(prefix="lt_main_job_")) / "run"
    cmd = ["longtail", "bench", "--out", str(out), "--no-progress"]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    env = dict(os.environ, PYTHONPATH=str(src))
    env.pop("LONGTAIL_JOBS", None)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out.parent, ignore_errors=True)
    return seconds


def profile() -> dict[str, tuple[float, int]]:
    """One `longtail bench --jobs 1` in this (fresh) process with timers around its phases."""
    times: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    t_start = time.perf_counter()
    sys.path.insert(0, str(SRC))
    import longtail.engine.runner.benchmark as benchmark
    import longtail.engine.runner.runs as runs
    import longtail.engine.trainer as trainer
    from longtail.cli import main as cli_main

    times["imports"] = time.perf_counter() - t_start

    def wrap(owner: Any, name: str, key: str) -> None:
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[key] += time.perf_counter() - t
                calls[key] += 1

        setattr(owner, name, timed)

    wrap(runs.Runs, "data", "data build")
    wrap(trainer.Trainer, "fit", "training (all)")
    wrap(trainer.Trainer, "evaluate", "evaluations")
    wrap(trainer, "snapshot_checkpoint", "checkpoints")
    wrap(benchmark, "write_report", "report (plots, report.md/html)")
    out = Path(tempfile.mkdtemp(prefix="lt_main_job_")) / "run"
    t0 = time.perf_counter()
    cli_main(["bench", "--jobs", "1", "--out", str(out), "--no-progress"])
    times["command (after imports)"] = time.perf_counter() - t0
    times["whole process"] = time.perf_counter() - t_start
    shutil.rmtree(out.parent, ignore_errors=True)
    return {k: (v, calls[k]) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs (each command)")
    ap.add_argument("--jobs", type=int, help="pass --jobs N (default: the command's own default)")
    ap.add_argument("--vs", type=Path, help="another src/ folder, timed in turn with this one")
    ap.add_argument("--profile", action="store_true", help="also one profiled --jobs 1 run")
    ap.add_argument("--no-time", action="store_true", help="only the counts (and --profile)")
    ap.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.profile_child:  # the profiled run, in a process that imported nothing yet
        for key, (seconds, n) in profile().items():
            print(f"  {key:34s} {seconds:7.2f} s" + (f"  ({n} calls)" if n else ""))
        return 0
    counts = main_job_counts()
    print(
        f"main job: {counts['methods']} methods + the balanced reference, "
        f"{counts['stages']} distinct stages per seed (+1 for the reference: "
        f"{counts.get('stages_with_reference', counts['stages'])}), {counts['seeds']} seeds"
    )
    print(f"load average before: {_load()}  ({os.cpu_count()} cores)")
    if not args.no_time:
        a: list[float] = []
        b: list[float] = []
        for _ in range(args.runs):
            a.append(_one_run(SRC, args.jobs))
            if args.vs is not None:
                b.append(_one_run(args.vs.resolve(), args.jobs))
        jobs = "default --jobs" if args.jobs is None else f"--jobs {args.jobs}"
        print(
            f"wall, this checkout, {jobs}: median {statistics.median(a):.1f} s "
            f"(runs: {', '.join(f'{x:.1f}' for x in a)})"
        )
        if b:
            ratios = [x / y for x, y in zip(a, b, strict=True)]
            print(
                f"wall, {args.vs}, {jobs}: median {statistics.median(b):.1f} s "
                f"(runs: {', '.join(f'{x:.1f}' for x in b)})"
            )
            print(f"ratio this / other, pairwise: median {statistics.median(ratios):.2f}")
    if args.profile:
        print("profile of one run, --jobs 1, in one process (wall seconds, calls):", flush=True)
        env = dict(os.environ)
        env.pop("LONGTAIL_JOBS", None)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--profile-child"]
        subprocess.run(cmd, env=env, check=True, stderr=subprocess.DEVNULL)
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
