"""The ``longtail tune`` command: a method's hyper-parameters chosen on validation (docs/cli.md).

.. code-block:: text

    longtail tune [CONFIG] --method M [--trials N] [--jobs J] [--out DIR] [--resume]
                  [--storage URL] [--seed S] [--confirm K] [--tune-train] [--data-dir DIR]
                  [--epochs N]
                  [--set KEY=VALUE ...] [--no-progress]

Errors are reported by :mod:`longtail.cli` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "add_tune_command", "run_tune_command"]

COMMANDS = ("tune",)


def add_tune_command(sub: Any, common: Any, positive_int: Any) -> None:
    """Add ``tune`` to the ``longtail`` sub-parsers."""
    t = sub.add_parser(
        "tune",
        help="search a method's hyper-parameters on a validation split (Optuna); writes "
        "best_params.json and report.md",
    )
    t.add_argument("config", nargs="?", help="YAML config or bundled name (default: digits_lt)")
    t.add_argument("--method", required=True, help="the method to tune (see longtail methods)")
    t.add_argument(
        "--trials",
        type=positive_int,
        default=20,
        help="finished (complete or pruned) trials of the study (default 20; with --resume the "
        "total, the finished ones counted)",
    )
    t.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="processes running trials side by side, sharing the study (default 1)",
    )
    t.add_argument(
        "--storage",
        help="an Optuna storage URL shared by several commands or machines (e.g. "
        "postgresql://user:pass@host/db); default: study.db (SQLite) in --out",
    )
    t.add_argument(
        "--seed",
        type=int,
        help="the training seed of every trial and the sampler's seed (default: the config's "
        "first seed)",
    )
    t.add_argument(
        "--confirm",
        type=positive_int,
        metavar="K",
        help="after the trials, train the best values and the defaults with K new seeds on the "
        "validation split; keep the best values only if they beat the defaults there (default: "
        "no confirmation)",
    )
    t.add_argument(
        "--tune-train",
        action="store_true",
        help="also search train.lr and train.weight_decay",
    )
    common(t)


def run_tune_command(args: argparse.Namespace, load: Any, say: Any, command: str) -> int:
    """Run ``tune``: load the config, search, print the best values."""
    from longtail.engine.runner import (  # lazy: a fast `longtail --help`
        default_out_dir,
        latest_out_dir,
    )
    from longtail.engine.tune import TuneOptions, tune_method  # lazy: a fast `longtail --help`

    out = Path(args.out) if args.out else None
    seed, args.seed = args.seed, None  # the config keeps its seeds; tune picks one
    cfg = load(args, out)
    name = f"{cfg.name}-tune-{args.method}"
    if out is None:
        if args.resume:
            out = latest_out_dir(name)
            if out is None:
                raise FileNotFoundError(
                    f"--resume: no previous study {name!r} under runs/; pass --out"
                )
        else:
            out = default_out_dir(name)
    options = TuneOptions(
        method=args.method,
        trials=args.trials,
        jobs=args.jobs,
        seed=seed,
        storage=args.storage,
        resume=args.resume,
        tune_train=args.tune_train,
        command=command,
        confirm=args.confirm or 0,
    )
    echo = None if args.no_progress else say
    record = tune_method(cfg, out, options, echo=echo)
    shown = ", ".join(f"{k}={v}" for k, v in record["study_best_params"].items())
    print(
        f"{args.method}: {record['metric']} {record['best_value']:.4f} on validation "
        f"(trial {record['best_trial']}): {shown}"
    )
    conf = record.get("confirmation")
    if conf:
        kept = ", ".join(f"{k}={v}" for k, v in record["best_params"].items())
        print(
            f"confirmed on seeds {conf['seeds']}: kept the {conf['kept']} values ({conf['why']}): "
            f"{kept}"
        )
    print(f"wrote {out / 'best_params.json'} and {out / 'report.md'}")
    sys.stdout.flush()
    return 0
