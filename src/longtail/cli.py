"""The ``longtail`` command: compare long-tail methods, train one, report, list methods.

.. code-block:: text

    longtail bench [CONFIG] [--methods a,b] [--reference | --no-reference] [--seeds 0,1,2]
                   [--data-dir DIR] [--out DIR] [--resume] [--epochs N] [--set KEY=VALUE ...]
                   [--no-progress]
    longtail train CONFIG [--method M] [--seed S] [--data-dir DIR] [--out DIR] [--resume]
                   [--epochs N] [--set KEY=VALUE ...]
    longtail report RUN_DIR
    longtail fit [CONFIG] --method M --out DIR [--refit] ...   (a model bundle, cli_bundle.py)
    longtail predict BUNDLE INPUT... --out predictions.csv
    longtail export BUNDLE --format torchscript|onnx|exported-program --out FILE
    longtail methods [--task single-label|multi-label|open-set|distillation|metric-learning]
    longtail data list
    longtail data fetch NAME --to DIR [--force]
    longtail tune [CONFIG] --method M [--trials N] [--jobs J] [--storage URL] ...   (cli_tune.py)

``CONFIG`` is a YAML file or the name of a bundled config (``digits_lt``, ``fashion_mnist_lt``,
``fashion_mnist_lt_if10``); ``longtail bench`` without one runs the bundled digits benchmark. Under
``torchrun --nproc_per_node=N -m longtail train CONFIG`` the run is data-parallel. See docs/cli.md.

A user's mistake or a bad file ends the command with one line ``error: ...`` on standard error
(naming the key, file or value; printed by rank 0 only under ``torchrun``) and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import errno
import os
import shlex
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from longtail import forkserver
from longtail.cli_bundle import COMMANDS as BUNDLE_COMMANDS
from longtail.cli_bundle import add_bundle_commands, run_bundle_command
from longtail.cli_tune import add_tune_command, run_tune_command

__all__ = ["build_parser", "main"]


def _int_list(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return out


def _str_list(text: str) -> list[str]:
    out = [t.strip() for t in text.split(",") if t.strip()]
    if not out:
        raise argparse.ArgumentTypeError("expected at least one name")
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _override(text: str) -> tuple[str, Any]:
    import yaml  # optional: pyyaml (the cli extra)

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{key}: {value!r} is not a YAML value") from None
    return key, parsed


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder with the data files (overrides data.data_dir)")
    p.add_argument(
        "--data-path",
        help="data file of dataset table / mat / image-manifest (overrides data.path)",
    )
    p.add_argument(
        "--out", help="run folder (default: runs/<name>-<timestamp>; with --resume: the latest one)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out: skip finished (method, seed) pairs, resume interrupted ones",
    )
    p.add_argument("--epochs", type=_positive_int, help="override train.epochs")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=_override,
        metavar="KEY=VALUE",
        help="override a config key (dotted, e.g. data.hide_fraction=0.5; the value is read as "
        "YAML); repeatable",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``longtail``."""
    parser = argparse.ArgumentParser(
        prog="longtail",
        description="Train and compare classifiers on long-tailed data.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser(
        "bench",
        help="compare methods over seeds; writes a run folder with results.json, report.md, plots",
    )
    b.add_argument("config", nargs="?", help="YAML config or bundled name (default: digits_lt)")
    b.add_argument(
        "--methods", type=_str_list, help="comma-separated method names (default: config)"
    )
    ref = b.add_mutually_exclusive_group()
    ref.add_argument(
        "--reference",
        dest="reference",
        action="store_const",
        const=True,
        default=None,
        help="also train the balanced reference (default: as the config says, but not when "
        "--methods is given)",
    )
    ref.add_argument(
        "--no-reference",
        dest="reference",
        action="store_const",
        const=False,
        help="no balanced reference, whatever the config says",
    )
    b.add_argument(
        "--tune-trials",
        type=_positive_int,
        help="tune every method with N trials on a validation split first (longtail tune), then "
        "run the defaults and the best parameters on the test set: OUT/tuning.md",
    )
    b.add_argument(
        "--tune-confirm",
        type=_positive_int,
        metavar="K",
        help="with --tune-trials: train each study's best values and its defaults with K new seeds "
        "on the validation split; keep the best values only if they win there (guards against "
        "the optimism of the best of many noisy trials); methods are then chosen on that score",
    )
    b.add_argument("--seeds", type=_int_list, help="comma-separated seeds (default: config)")
    b.add_argument(
        "--jobs",
        type=_positive_int,
        help="worker processes for the (stage, seed) runs (default: $LONGTAIL_JOBS, else chosen "
        "from the amount of work: 1 for a small run, at most one per CPU core or GPU); 1 trains "
        "in this process",
    )
    _common(b)
    t = sub.add_parser("train", help="train one method with one seed")
    t.add_argument("config", help="YAML config or bundled name")
    t.add_argument("--method", help="method name (default: the config's first method)")
    t.add_argument("--seed", type=int, help="seed (default: the config's first seed)")
    _common(t)
    r = sub.add_parser("report", help="(re)write report.md and plots/ of a run folder")
    r.add_argument("run_dir", help="a run folder with results.json")
    m = sub.add_parser(
        "methods", help="list the methods with a one-line description and their paper"
    )
    m.add_argument(
        "--task",
        default="single-label",
        help="the task kind whose methods to list: single-label (default), multi-label, "
        "open-set, distillation, metric-learning or a plug-in's",
    )
    add_bundle_commands(sub, _common, _positive_int)
    d = sub.add_parser("data", help="list or download the public data sets the configs read")
    actions = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="the data sets `longtail data fetch` downloads")
    f = actions.add_parser(
        "fetch", help="download a data set into a folder, checking every file's sha256"
    )
    f.add_argument("name", help="a data set of `longtail data list` (e.g. fashion-mnist)")
    f.add_argument(
        "--to", required=True, metavar="DIR", help="the folder to fill (then: --data-dir DIR)"
    )
    f.add_argument(
        "--force", action="store_true", help="download again the files already there and verified"
    )
    add_tune_command(sub, _common, _positive_int)
    return parser


def _cmd_methods(task: str = "single-label") -> int:
    from longtail.engine.kinds import TASK_KINDS  # lazy: a fast `longtail --help`

    if task not in TASK_KINDS:
        raise ValueError(f"--task: must be one of {list(TASK_KINDS)}, got {task!r}")
    kind = TASK_KINDS[task]
    methods = kind.methods
    width = max(len(n) for n in methods)
    for name, m in methods.items():
        defaults = ", ".join(f"{k}={v}" for k, v in m.defaults.items())
        extra = f" [{defaults}]" if defaults else ""
        comp = m.composition()
        parts = [
            f"loss={comp['loss']}" + ("+drw" if comp["drw"] else ""),
            f"sampler={comp['sampler']}",
        ]
        parts += [
            f"{k}={comp[k]}"
            for k in ("head", "mix", "second_stage", "posthoc", "sla")
            if comp.get(k) not in (None, "linear")
        ]
        print(f"{name.ljust(width)}  {m.description}{extra} ({m.citation})")
        print(f"{' ' * width}    = {' '.join(parts)}")
    if kind.recipe_help is not None:
        print(f"\n{kind.recipe_help()}")
    else:
        print(f"\n({task} methods are presets; their hyper-parameters are set in method_params.)")
    return 0


def _load(args: argparse.Namespace, out_dir: Path | None) -> Any:
    from longtail.engine.config import load_config  # lazy: a fast `longtail --help`

    overrides: dict[str, Any] = dict(args.overrides)
    if args.data_dir is not None:
        overrides["data.data_dir"] = args.data_dir
    if args.data_path is not None:
        overrides["data.path"] = args.data_path
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.command == "bench":
        if args.methods is not None:
            overrides["methods"] = args.methods
        if args.seeds is not None:
            overrides["seeds"] = args.seeds
        # the balanced reference trains erm once more: with --methods only on request
        if args.reference is not None:
            overrides["data.balanced_reference"] = args.reference
        elif args.methods is not None and "data.balanced_reference" not in overrides:
            overrides["data.balanced_reference"] = False
    else:
        if args.method is not None:
            overrides["methods"] = [args.method]
        if args.seed is not None:
            overrides["seeds"] = [args.seed]
    config = args.config
    if (
        config is None
        and args.resume
        and out_dir is not None
        and (out_dir / "config.yaml").is_file()
    ):
        config = out_dir / "config.yaml"
    notices: list[str] = []
    cfg = load_config(config, overrides, notices=notices)
    for note in notices:
        _say(f"note: {note}")
    if args.command == "train":
        methods = cfg.methods if not isinstance(cfg.methods, str) else None
        from longtail.engine.runner import method_names  # lazy: a fast `longtail --help`

        first = (methods or method_names(cfg))[0]
        cfg = dataclasses.replace(
            cfg,
            methods=[first],
            seeds=[cfg.seeds[0]],
            data=dataclasses.replace(cfg.data, balanced_reference=False, sklearn_reference=False),
        )
    return cfg


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from longtail.engine import distributed as D  # lazy: a fast `longtail --help`
    from longtail.engine.runner import (  # lazy: a fast `longtail --help`
        default_out_dir,
        describe_command,
        latest_out_dir,
        run_benchmark,
    )

    if getattr(args, "tune_confirm", None) and not getattr(args, "tune_trials", None):
        raise ValueError("--tune-confirm: needs --tune-trials")
    out_dir = Path(args.out) if args.out else None
    cfg = _load(args, out_dir)
    device = D.resolve_device(cfg.train.device)
    D.init_distributed(device)  # main() destroys the process group, after reporting an error
    if out_dir is None:
        if args.resume:
            out_dir = latest_out_dir(cfg.name)
            if out_dir is None:
                raise FileNotFoundError(
                    f"--resume: no previous run of {cfg.name!r} under runs/; pass --out"
                )
        else:
            out_dir = default_out_dir(cfg.name)
    out_dir = Path(str(D.broadcast_object(str(out_dir))))
    jobs = _jobs(args, cfg, device, D.world_size())
    if D.is_main_process():
        from longtail.engine.runner import threads_per_job  # lazy: a fast `longtail --help`

        how = ""
        if jobs is not None and jobs > 1:
            threads = threads_per_job(jobs, cfg.train.num_threads)
            how = f", {jobs} jobs of {threads} thread{'s' if threads > 1 else ''}"
        print(f"{cfg.name}: {len(cfg.seeds)} seed(s){how}, writing {out_dir}", file=sys.stderr)
    if getattr(args, "tune_trials", None):
        from longtail.engine.tune.compare import tuned_benchmark  # lazy: a fast `longtail --help`

        tuned_benchmark(
            cfg,
            out_dir,
            args.tune_trials,
            confirm=args.tune_confirm or 0,
            jobs=jobs,
            resume=args.resume,
            command=describe_command(argv),
            progress=not args.no_progress,
            echo=_say,
        )
        return 0
    run_benchmark(
        cfg,
        out_dir,
        resume=args.resume,
        command=describe_command(argv),
        progress=not args.no_progress,
        jobs=jobs,
    )
    return 0


def _worker_preload(args: argparse.Namespace) -> list[str] | None:
    """What the workers' forkserver imports, if the command may start workers: ``bench`` without
    ``--jobs 1`` (nor ``$LONGTAIL_JOBS=1``) and without ``--tune-trials`` (whose trials run one
    study at a time), or ``tune --jobs J`` with J > 1; else ``None``."""
    if args.command == "tune":
        return forkserver.TUNE_PRELOAD if (args.jobs or 1) > 1 else None
    if args.command != "bench" or getattr(args, "tune_trials", None):
        return None
    jobs = args.jobs if args.jobs is not None else os.environ.get("LONGTAIL_JOBS", "").strip()
    return None if str(jobs) == "1" else forkserver.PRELOAD


def _jobs(args: argparse.Namespace, cfg: Any, device: Any, world_size: int) -> int | None:
    """``--jobs``, else ``$LONGTAIL_JOBS``, else ``None``: the runner chooses from the amount of
    work once the data are built (one job for a small run, at most one per core / GPU); 1 for
    ``train`` and torchrun."""
    if args.command != "bench" or world_size > 1:
        return 1
    if args.jobs is not None:
        return int(args.jobs)
    env = os.environ.get("LONGTAIL_JOBS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"LONGTAIL_JOBS: expected an integer >= 1, got {env!r}")
        return int(env)
    return None


def _say(line: str) -> None:
    """Print ``line`` on standard error, from rank 0 only (N ranks failing alike print it once)."""
    from longtail.engine.distributed import launch_rank  # lazy: a fast `longtail --help`

    if launch_rank() == 0:
        print(line, file=sys.stderr, flush=True)


def _os_error(exc: OSError) -> str:
    """``PATH: reason`` for an operating-system error (``[Errno 13] ...`` is for programmers)."""
    if exc.errno is None or not exc.strerror:
        return str(exc)  # our own message
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``longtail`` (and ``python -m longtail``); returns the exit code.

    The command itself (``argv`` None) run as a ``torchrun`` rank does not return once it left
    its process group: it ends the process through
    :func:`~longtail.engine.distributed.exit_rank` with that code, also after an unexpected error
    (exit code 1, its traceback printed first), since the interpreter's finalization can abort a
    process whose gloo threads outlive the group (see there).
    """
    left: list[bool] = []  # [True] once this command left a process group
    try:
        code = _main(argv, left)
    except SystemExit as stop:
        if left and argv is None:
            _leave_rank(stop.code if isinstance(stop.code, int) else 1, stop.code)
        raise
    except BaseException:
        if left and argv is None:  # a bug: its traceback helps
            traceback.print_exc()
            _leave_rank(1)
        raise
    if left and argv is None:
        _leave_rank(code)
    return code


def _leave_rank(code: int, message: object = None) -> NoReturn:
    """A torchrun rank of the ``longtail`` command that left its group: exit now (exit_rank)."""
    from longtail.engine.distributed import exit_rank  # lazy: a fast `longtail --help`

    if isinstance(message, str):  # sys.exit("...") prints its message, as at a normal exit
        print(message, file=sys.stderr)
    exit_rank(code)


def _main(argv: Sequence[str] | None, left: list[bool]) -> int:
    """:func:`main`'s work; appends ``True`` to ``left`` when it left a process group."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    # the `longtail` command (not a call from Python): the workers' forkserver imports torch while
    # this process does, and is stopped before the command exits (see longtail.forkserver)
    preload = _worker_preload(args) if argv is None else None
    early = preload is not None and forkserver.start_early(preload)
    from longtail.engine import distributed as D  # lazy: a fast `longtail --help`

    try:
        code = _dispatch(args, args_list)
        sys.stdout.flush()  # here, not at exit: a reader gone (`| head`) is caught below
    except BaseException as exc:
        code = _report(exc, args.command)  # re-raises a bug (its traceback helps)
        D.settle_after_error()  # under torchrun: rank 0 has printed; the others leave now
    finally:
        try:
            if D.cleanup_distributed():
                left.append(True)
        finally:
            if early:
                forkserver.stop()
    return code


def _full_disk_hint(exc: OSError, command: str) -> str:
    """What to do after a full disk (or quota): a run continues where it stopped with --resume."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return ""
    if command in ("bench", "train"):
        return (
            "; free some space, then run the same command with --resume to continue (the "
            "finished runs and the last checkpoints are kept)"
        )
    return "; free some space, then run the command again"


def _report(exc: BaseException, command: str = "") -> int:
    """Print ``exc`` as one line ``error: ...`` (rank 0 only); return the exit code."""
    from longtail.engine.checkpoint import CheckpointError  # lazy: a fast `longtail --help`
    from longtail.engine.config import ConfigError  # lazy: a fast `longtail --help`
    from longtail.engine.runner.parallel import WorkerLost  # lazy: a fast `longtail --help`
    from longtail.engine.trainer import NonFiniteLossError  # lazy: a fast `longtail --help`

    if isinstance(exc, (ConfigError, CheckpointError)):
        _say(f"error: {exc}")
        return 2
    if isinstance(exc, (FileNotFoundError, FileExistsError)):
        _say(f"error: {_os_error(exc)}")
        return 2
    if isinstance(exc, (NonFiniteLossError, WorkerLost)):
        _say(f"error: {exc}")
        return 1
    if isinstance(exc, ValueError):  # a bad value found once the data or a checkpoint is read
        _say(f"error: {exc}")
        return 2
    if isinstance(exc, KeyboardInterrupt):
        again = "run the command again" if command == "data" else "continue with --resume"
        _say(f"interrupted; {again}")
        return 130
    if isinstance(exc, BrokenPipeError):  # e.g. `longtail methods | head`: the reader left
        # what is still buffered cannot be written: point stdout at /dev/null so that the flush at
        # exit does not fail again ("Exception ignored ... BrokenPipeError")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    if isinstance(exc, OSError):  # an unwritable or full disk, a file that cannot be read
        _say(f"error: {_os_error(exc)}{_full_disk_hint(exc, command)}")
        return 2
    raise exc


def _dispatch(args: argparse.Namespace, args_list: list[str]) -> int:
    if args.command in ("bench", "train", "tune", "fit"):
        from longtail.engine.trainer import checkpoint_interval  # lazy: a fast `longtail --help`

        checkpoint_interval()  # a bad $LONGTAIL_CHECKPOINT_SECONDS: one line now, not per run
    if args.command == "methods":
        return _cmd_methods(args.task)
    if args.command in BUNDLE_COMMANDS:
        return run_bundle_command(args, _load, _say)
    if args.command == "data":
        return _cmd_data(args)
    if args.command == "tune":
        from longtail.engine.runner import describe_command  # lazy: a fast `longtail --help`

        return run_tune_command(args, _load, _say, describe_command(args_list))
    if args.command == "report":
        from longtail.engine.checkpoint import read_json  # lazy: a fast `longtail --help`
        from longtail.engine.report import (  # lazy: a fast `longtail --help`
            format_table,
            write_report,
        )

        run_dir = Path(args.run_dir)
        if not (run_dir / "results.json").is_file():
            print(f"error: {run_dir} has no results.json", file=sys.stderr)
            return 2
        path = write_report(run_dir)
        print(format_table(read_json(run_dir / "results.json"), markdown=False))
        print(f"\nwrote {path}")
        return 0
    _refuse_empty_paths(args)
    return _cmd_run(args, args_list)


def _cmd_data(args: argparse.Namespace) -> int:
    """``longtail data list`` and ``longtail data fetch NAME --to DIR`` (:func:`longtail.data.download`)."""
    from longtail.data import DATASET_DESCRIPTIONS, DATASETS, download  # lazy: a fast `--help`

    if args.data_command == "list":
        width = max(len(n) for n in DATASETS)
        for name, files in DATASETS.items():
            about = DATASET_DESCRIPTIONS.get(name, "")
            print(f"{name.ljust(width)}  {about}; {len(files)} file{'s' * (len(files) > 1)}")
        print("\nlongtail data fetch NAME --to DIR downloads one; then run with --data-dir DIR")
        return 0
    if args.name not in DATASETS:
        close = difflib.get_close_matches(args.name, list(DATASETS), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(
            f"data fetch: unknown data set {args.name!r} (longtail data list: "
            f"{', '.join(DATASETS)}){hint}"
        )
    to = Path(args.to)
    if not args.to.strip():
        raise ValueError("--to: empty; give the folder to download into")
    if to.exists() and not to.is_dir():
        raise NotADirectoryError(f"--to: {to} is a file, not a folder")
    folder = download(args.name, to, force=args.force, log=_say)
    print(f"{args.name}: verified files in {folder}; run with --data-dir {shlex.quote(str(to))}")
    return 0


def _refuse_empty_paths(args: argparse.Namespace) -> None:
    """``--out ""`` (an unset shell variable, say) is an error, not the default run folder."""
    for flag, value in (
        ("--out", args.out),
        ("--data-dir", args.data_dir),
        ("--data-path", args.data_path),
    ):
        if value is not None and not value.strip():
            raise ValueError(f"{flag}: empty ({value!r}); give a path, or leave {flag} out")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
