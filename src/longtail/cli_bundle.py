"""The ``longtail fit``, ``predict`` and ``export`` commands (model bundles; docs/cli.md).

.. code-block:: text

    longtail fit [CONFIG] --method M --out DIR [--seed S] [--validation-fraction F] [--refit]
                 [--thresholds per-label|global] [--keep 0.95] [--run-dir DIR]
                 [--data-dir DIR] [--epochs N] [--set KEY=VALUE ...]
    longtail predict BUNDLE INPUT [INPUT ...] --out predictions.csv [--top-k 3] [--batch-size 256]
                 [--device cpu] [--no-progress]
    longtail export BUNDLE --format torchscript|onnx|exported-program --out FILE [--data-dir DIR]

Errors are reported by :mod:`longtail.cli` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_bundle_commands", "run_bundle_command"]

COMMANDS = ("fit", "predict", "export")


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < v < 1.0 and v != 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], got {v}")
    return v


def add_bundle_commands(sub: Any, common: Any, positive_int: Any) -> None:
    """Add ``fit``, ``predict`` and ``export`` to the ``longtail`` sub-parsers."""
    f = sub.add_parser(
        "fit",
        help="train one method, choose calibration and thresholds on validation, write a bundle",
    )
    f.add_argument("config", nargs="?", help="YAML config or bundled name (default: digits_lt)")
    f.add_argument("--method", required=True, help="the method to fit (e.g. the bench's best)")
    f.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    f.add_argument(
        "--validation-fraction",
        type=_share,
        help="share of the training data held out to choose calibration and thresholds "
        "(default: data.validation_fraction, else 0.2)",
    )
    f.add_argument("--refit", action="store_true", help="then retrain on all the training data")
    f.add_argument(
        "--thresholds",
        choices=("per-label", "global"),
        default="per-label",
        help="multi-label: one threshold per label (default) or one for all",
    )
    f.add_argument(
        "--keep",
        type=_share,
        default=0.95,
        help="open set: share of known validation images the rejection threshold keeps (0.95)",
    )
    f.add_argument("--run-dir", help="where the training runs go (default: OUT-run)")
    common(f)
    p = sub.add_parser("predict", help="predict files with a bundle; writes predictions.csv")
    p.add_argument("bundle", help="a bundle folder (longtail fit --out)")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files or folders, a table (.csv/.parquet/.npz) or an IDX image file",
    )
    p.add_argument("--out", required=True, help="the CSV file to write")
    p.add_argument("--top-k", type=positive_int, default=3, help="classes listed per row (3)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="inputs per batch (256)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument(
        "--label-column",
        help="a .csv column holding each row's true class (a class name or index): adds "
        "true_class and reports the accuracy",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = sub.add_parser("export", help="write a bundle as TorchScript, ONNX or torch.export")
    e.add_argument("bundle", help="a bundle folder")
    e.add_argument("--format", required=True, choices=("torchscript", "onnx", "exported-program"))
    e.add_argument("--out", required=True, help="the file to write")
    e.add_argument(
        "--data-dir",
        help="check the file on the bundle's test split read from this folder (default: the "
        "bundle config's data)",
    )


def _fit(args: argparse.Namespace, load: Any, say: Any) -> int:
    from longtail.engine.bundle import fit_bundle  # lazy: a fast `longtail --help`

    if not args.out:
        raise ValueError("--out: give the bundle folder to write (e.g. --out model)")
    out = Path(args.out)
    if (
        out.exists()
        and not (out / "bundle.json").is_file()
        and (not out.is_dir() or any(out.iterdir()))
    ):
        raise FileExistsError(f"--out: {out} exists and is not a bundle folder; not overwritten")
    args.seeds = None
    cfg = load(args, None)
    info = fit_bundle(
        cfg,
        args.method,
        out,
        seed=args.seed,
        run_dir=args.run_dir,
        validation_fraction=args.validation_fraction,
        refit=args.refit,
        thresholds=args.thresholds,
        keep=args.keep,
        echo=say,
    )
    shown = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("note",))
    print(f"wrote {out}: {shown}")
    return 0


def _predict(args: argparse.Namespace, say: Any) -> int:
    from longtail.engine.bundle import (  # lazy: a fast `longtail --help`
        iter_inputs,
        load_bundle,
        write_predictions,
    )

    predictor = load_bundle(args.bundle, device=args.device)
    predictor.batch_size = args.batch_size
    if predictor.preprocessing is None:
        raise ValueError(
            f"BUNDLE: {args.bundle} does not say how raw inputs are preprocessed; use the "
            "Python API (longtail.load) with network inputs"
        )
    batches: Any = iter_inputs(
        args.inputs, predictor.preprocessing, args.batch_size, label_column=args.label_column
    )
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm  # optional: the cli extra (tqdm)

        batches = tqdm(batches, unit="batch", desc="predict", leave=False)
    n = write_predictions(
        predictor, batches, args.out, top_k=args.top_k, note=lambda m: say(f"note: {m}")
    )
    print(f"wrote {args.out}: {n} row(s)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from longtail.engine.bundle import export_bundle, load_bundle  # lazy: a fast `longtail --help`
    from longtail.engine.bundle.files import split_inputs  # lazy: a fast `longtail --help`

    predictor = load_bundle(args.bundle)
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out: {out} is a folder; give a file name")
    if out.exists():
        raise FileExistsError(f"--out: {out} exists; not overwritten (remove it or choose another)")
    x = split_inputs(predictor, data_dir=args.data_dir)
    check = export_bundle(predictor, args.format, out, x)
    print(
        f"wrote {out}: checked on {check['checked_inputs']} test inputs, largest probability "
        f"difference {check['max_abs_diff']:.2g}, same class for {check['same_class']:.0%}"
    )
    return 0


def run_bundle_command(args: argparse.Namespace, load: Any, say: Any) -> int:
    """Run ``fit``, ``predict`` or ``export``."""
    if args.command == "fit":
        return _fit(args, load, say)
    if args.command == "predict":
        return _predict(args, say)
    return _export(args)
