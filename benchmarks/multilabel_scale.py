"""Multi-label at scale: peak memory, per-epoch training vs evaluation time, ARFF load speed.

The ASL paper's regime is many labels (COCO 80, Open Images thousands). This benchmark writes a
seeded synthetic **sparse** Mulan set of a large held-out set's shape (``--rows`` 20,000 rows,
``--labels`` 1,000 labels, ``--features`` 500 features; ``--test-fraction`` of the rows in the test
file) and runs ``longtail bench`` on it in a subprocess, then reports:

- the child's **peak resident memory** (``/usr/bin/time``'s maximum RSS of the ``longtail bench``
  process; with ``--jobs`` > 1 also the largest sum over the process tree, sampled from ``/proc``);
- the **per-epoch training and evaluation seconds** (median over the runs' epochs, from each run
  folder's ``log.csv``: ``epoch_seconds`` and ``eval_seconds``) and the wall time;
- the **ARFF load time per cell** (``rows x attributes``, labels included) and per stored value
  (a dense row stores every attribute, a sparse row its entries) of
  :func:`longtail.data.load_mulan` on the synthetic set, on the real sparse Enron set (1,001
  features) and on dense yeast / scene (best of ``--load-repeats``), and the peak memory of a
  load alone (each in a child process under ``/usr/bin/time``).

The data: label ``j`` (1-based) is positive with probability ``0.05 * j ** -0.7`` (a long tail: about
1.2 labels per row; the rarest label has about 6 expected positives in 16,000 training rows); each
row has on average ``--words`` background features (drawn with Zipf-like frequencies) plus three of
the five features tied to each of its positive labels, each a count ``1 + Poisson(0.5)``; labels are
nominal ``{0,1}`` attributes after the features, rows are sparse ``{index value, ...}``.

Usage (about 2 minutes on one core; docs/benchmarks.md, "Multi-label at scale: 1,000 labels")::

    python benchmarks/multilabel_scale.py --epochs 3 --markdown runs/multilabel_scale.md

``--data-dir DIR`` keeps the generated files in ``DIR`` (default: a temporary folder);
``--config`` is the multi-label config run (default ``configs/multilabel_yeast.yaml``), with
``train.eval_every: 1`` so every epoch is evaluated; ``--src DIR`` measures another copy of the
sources (default: this checkout's ``src``), e.g. the code before a change.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NAME = "synthetic"


def label_probabilities(labels: int) -> np.ndarray:
    """``0.05 * j ** -0.7`` for ``j = 1 .. labels``."""
    return 0.05 * np.arange(1, labels + 1, dtype=np.float64) ** -0.7


def make_synthetic(
    folder: Path,
    *,
    rows: int,
    labels: int,
    features: int,
    test_fraction: float,
    words: float,
    seed: int,
) -> dict[str, Any]:
    """Write ``synthetic-train.arff``, ``synthetic-test.arff`` and ``synthetic.xml`` to ``folder``."""
    rng = np.random.default_rng(seed)
    y = rng.random((rows, labels)) < label_probabilities(labels)
    freq = 1.0 / np.arange(1, features + 1) ** 0.8
    freq = rng.permutation(freq / freq.sum())
    counts = np.zeros((rows, features), dtype=np.int64)
    n_words = rng.poisson(words, rows)
    for i in range(rows):  # background words
        cols = rng.choice(features, size=min(int(n_words[i]), features), replace=False, p=freq)
        counts[i, cols] += 1 + rng.poisson(0.5, cols.size)
    tied = np.stack([rng.choice(features, 5, replace=False) for _ in range(labels)])
    r_idx, l_idx = np.nonzero(y)
    for i, j in zip(r_idx.tolist(), l_idx.tolist(), strict=True):  # label-tied words
        cols = rng.choice(tied[j], 3, replace=False)
        counts[i, cols] += 1 + rng.poisson(0.5, 3)
    folder.mkdir(parents=True, exist_ok=True)
    header = [f"@relation '{NAME}'", ""]
    header += [f"@attribute f{k} numeric" for k in range(features)]
    header += [f"@attribute label{j} {{0,1}}" for j in range(labels)]
    header += ["", "@data"]
    n_test = round(rows * test_fraction)
    order = rng.permutation(rows)
    splits = {"train": np.sort(order[n_test:]), "test": np.sort(order[:n_test])}
    for split, index in splits.items():
        with open(folder / f"{NAME}-{split}.arff", "w", encoding="utf-8") as f:
            f.write("\n".join(header) + "\n")
            for i in index.tolist():
                fc = np.nonzero(counts[i])[0]
                lc = np.nonzero(y[i])[0]
                cells = [
                    f"{k} {v}" for k, v in zip(fc.tolist(), counts[i, fc].tolist(), strict=True)
                ]
                cells += [f"{features + j} 1" for j in lc.tolist()]
                f.write("{" + ",".join(cells) + "}\n")
    xml = ['<?xml version="1.0" encoding="utf-8"?>']
    xml.append('<labels xmlns="http://mulan.sourceforge.net/labels">')
    xml += [f'<label name="label{j}"></label>' for j in range(labels)]
    xml.append("</labels>")
    (folder / f"{NAME}.xml").write_text("\n".join(xml) + "\n", encoding="utf-8")
    train_pos = y[splits["train"]].sum(0)
    return {
        "rows": rows,
        "train_rows": int(splits["train"].size),
        "test_rows": n_test,
        "labels": labels,
        "features": features,
        "positive_share": float(y.mean()),
        "labels_per_row": float(y.sum(1).mean()),
        "nonzero_features_per_row": float((counts > 0).sum(1).mean()),
        "labels_under_3_train_positives": int((train_pos < 3).sum()),
        "labels_without_train_positive": int((train_pos == 0).sum()),
    }


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and its descendants (from ``/proc``)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parent[int(entry)] = int(fields[1])
            except (OSError, IndexError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm", encoding="utf-8") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


def timed_run(cmd: list[str], env: dict[str, str], sample: bool) -> dict[str, float]:
    """Run ``cmd`` under ``/usr/bin/time``: wall seconds, peak RSS (MB) of its largest process and,
    with ``sample``, the largest sampled RSS sum over its process tree (MB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%M %e", "-o", tf.name, *cmd]
        start = time.perf_counter()
        proc = subprocess.Popen(full, env=env, cwd=ROOT)
        peak_tree = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak_tree
            while not done.wait(0.25):
                peak_tree = max(peak_tree, _tree_rss(proc.pid))

        watcher = threading.Thread(target=watch, daemon=True)
        if sample:
            watcher.start()
        rc = proc.wait()
        done.set()
        if sample:
            watcher.join()
        wall = time.perf_counter() - start
        if rc != 0:
            raise SystemExit(f"command failed (exit {rc}): {' '.join(cmd)}")
        max_kb, _ = tf.read().split()[-2:]
    out = {"wall_s": wall, "peak_mb": int(max_kb) / 1024}
    if sample:
        out["peak_tree_mb"] = peak_tree / 2**20
    return out


def epoch_times(out: Path) -> dict[str, float]:
    """Median ``epoch_seconds`` and ``eval_seconds`` over every epoch of every ``log.csv``."""
    train: list[float] = []
    evals: list[float] = []
    for log in sorted(out.rglob("log.csv")):
        with open(log, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("epoch_seconds"):
                    train.append(float(row["epoch_seconds"]))
                if row.get("eval_seconds"):
                    evals.append(float(row["eval_seconds"]))
    return {
        "train_epoch_s": statistics.median(train) if train else float("nan"),
        "eval_s": statistics.median(evals) if evals else float("nan"),
        "epochs_logged": float(len(train)),
    }


#: Run by :func:`load_per_cell` in a child process: best-of-k seconds of ``load_mulan`` as JSON.
LOAD_CODE = """
import json, sys, time
from longtail.data import load_mulan
best, shape = float("inf"), None
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    train, test = load_mulan(sys.argv[1])
    best = min(best, time.perf_counter() - start)
    shape = [train.data.shape[0] + test.data.shape[0], train.data.shape[1] + train.targets.shape[1]]
    del train, test
print(json.dumps({"seconds": best, "shape": shape}), file=open(sys.argv[3], "w"))
"""


def stored_values(folder: Path) -> int:
    """The values written in the ARFF files of ``folder``: every attribute of a dense row, the
    entries of a sparse row."""
    total = 0
    for path in sorted(folder.glob("*.arff")):
        n_attr, data = 0, False
        with open(path, encoding="utf-8") as f:
            for raw in f:
                line = raw.strip()
                if not line or line.startswith("%"):
                    continue
                if not data:
                    n_attr += line.lower().startswith("@attribute")
                    data = line.lower().startswith("@data")
                elif line.startswith("{"):
                    total += line.count(",") + 1 if line[1:-1].strip() else 0
                else:
                    total += n_attr
    return total


def load_per_cell(folder: Path, repeats: int, env: dict[str, str]) -> dict[str, float]:
    """Seconds of :func:`longtail.data.load_mulan` (best of ``repeats``, in a child process), per
    matrix cell (rows x attributes, labels included) and per stored value, and the child's peak
    RSS."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        cmd = [sys.executable, "-c", LOAD_CODE, str(folder), str(repeats), out.name]
        peak = timed_run(cmd, env, sample=False)["peak_mb"]
        res = json.loads(out.read())
    cells = res["shape"][0] * res["shape"][1]
    stored = stored_values(folder)
    return {
        "seconds": res["seconds"],
        "cells": float(cells),
        "stored": float(stored),
        "ns_per_cell": 1e9 * res["seconds"] / cells,
        "ns_per_stored": 1e9 * res["seconds"] / stored,
        "peak_mb": peak,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--labels", type=int, default=1000)
    p.add_argument("--features", type=int, default=500)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--words", type=float, default=12.0, help="mean background features per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=None, help="keep the generated set here")
    p.add_argument("--real-data", type=Path, default=ROOT.parent / "shared/data/multilabel")
    p.add_argument("--config", default=str(ROOT / "configs/multilabel_yeast.yaml"))
    p.add_argument("--src", type=Path, default=ROOT / "src", help="the longtail sources measured")
    p.add_argument("--methods", default="bce,asl,cb-bce")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--set", action="append", default=[], help="extra --set KEY=VALUE for bench")
    p.add_argument("--load-repeats", type=int, default=3)
    p.add_argument("--skip-bench", action="store_true", help="only the ARFF load measurements")
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="multilabel_scale_")
    data_dir = args.data_dir or Path(tmp.name) / "data"
    start = time.perf_counter()
    info = make_synthetic(
        data_dir,
        rows=args.rows,
        labels=args.labels,
        features=args.features,
        test_fraction=args.test_fraction,
        words=args.words,
        seed=args.seed,
    )
    print(f"generated {data_dir} in {time.perf_counter() - start:.1f} s: {info}", flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(args.src), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    lines = [
        f"Synthetic set: {info['train_rows']} training + {info['test_rows']} test rows, "
        f"{info['labels']} labels, {info['features']} features; {info['labels_per_row']:.2f} "
        f"labels and {info['nonzero_features_per_row']:.1f} non-zero features per row; "
        f"{info['labels_under_3_train_positives']} labels with fewer than 3 training positives.",
        "",
    ]
    if not args.skip_bench:
        out = Path(tmp.name) / "run"
        cmd = [
            sys.executable, "-m", "longtail", "bench", args.config,
            "--data-dir", str(data_dir), "--methods", args.methods, "--seeds", "0",
            "--epochs", str(args.epochs), "--jobs", str(args.jobs), "--no-reference",
            "--out", str(out), "--no-progress", "--set", "train.eval_every=1",
        ]  # fmt: skip
        for kv in args.set:
            cmd += ["--set", kv]
        print("running:", " ".join(cmd), flush=True)
        bench = timed_run(cmd, env, sample=args.jobs > 1)
        times = epoch_times(out)
        results = out / "results.json"
        bench["results_json_kb"] = results.stat().st_size / 1024 if results.is_file() else 0.0
        print({**bench, **times}, flush=True)
        lines += [
            f"`longtail bench` ({args.methods}, {args.epochs} epochs, seed 0, --jobs {args.jobs}):",
            "",
            "| peak RSS (MB) | wall (s) | training epoch (s, median) | evaluation (s, median) "
            "| results.json (KB) |",
            "|---:|---:|---:|---:|---:|",
            f"| {bench['peak_mb']:.0f}"
            + (f" (tree {bench['peak_tree_mb']:.0f})" if "peak_tree_mb" in bench else "")
            + f" | {bench['wall_s']:.1f} | {times['train_epoch_s']:.2f} | {times['eval_s']:.2f} "
            f"| {bench['results_json_kb']:.0f} |",
            "",
        ]
    sets = {"synthetic (sparse)": data_dir}
    for name in ("enron", "yeast", "scene"):
        if (args.real_data / name).is_dir():
            sets[f"{name} ({'sparse' if name == 'enron' else 'dense'})"] = args.real_data / name
    lines += [
        "| ARFF set | rows x attributes | stored values | load (s) | ns per cell | ns per stored "
        "value | load peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, folder in sets.items():
        load = load_per_cell(folder, args.load_repeats, env)
        print(label, load, flush=True)
        lines.append(
            f"| {label} | {load['cells']:,.0f} | {load['stored']:,.0f} | {load['seconds']:.3f} "
            f"| {load['ns_per_cell']:.0f} | {load['ns_per_stored']:.0f} | {load['peak_mb']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    tmp.cleanup()


if __name__ == "__main__":
    main()
