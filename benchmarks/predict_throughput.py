"""``longtail predict`` against a bare ``model(x)`` loop on the same inputs (issue 21).

Two inputs, each read from disk by both sides:

- a table: ``--rows`` rows (default 100,000) of the bundled digits' 64 features in a CSV file;
  the bare loop reads it with ``csv.reader`` in batches of 256 rows and calls the network;
- images: ``--images`` PNG files (default 10,000) of 28x28 Fashion-MNIST-like images; the bare
  loop decodes them with Pillow in batches of 256 and calls the network.

``longtail predict`` does the same reading plus the bundle's preprocessing, prediction rule,
calibration and the CSV output. The throughput ratio is ``bare time / predict time`` (1.0: no
overhead; the issue's target is at least 0.8), both measured in this process, alternating, best of
``--repeats``. Peak memory: ``longtail predict`` is run in a subprocess on the full input and on a
tenth of it; the maximum resident set sizes (``ru_maxrss``) are compared (constant memory: about
equal).

    python benchmarks/predict_throughput.py --out runs/predict_bench
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from longtail.engine.bundle import fit_bundle, iter_inputs, load_bundle, write_predictions
from longtail.engine.config import load_config

BATCH = 256


def _bare_csv(model: torch.nn.Module, path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        rows: list[list[float]] = []
        with torch.no_grad():
            for row in reader:
                rows.append([float(v) for v in row])
                if len(rows) == BATCH:
                    model(torch.tensor(rows))
                    rows = []
            if rows:
                model(torch.tensor(rows))
    return time.perf_counter() - t0


def _bare_images(model: torch.nn.Module, files: list[Path]) -> float:
    from PIL import Image

    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(files), BATCH):
            xs = []
            for f in files[i : i + BATCH]:
                with Image.open(f) as img:
                    xs.append(torch.from_numpy(np.array(img.convert("L"), dtype=np.uint8)))
            model(torch.stack(xs).unsqueeze(1).float() / 255.0)
    return time.perf_counter() - t0


def _ours(bundle: Path, inputs: list[str], out: Path) -> float:
    p = load_bundle(bundle)
    assert p.preprocessing is not None
    t0 = time.perf_counter()
    write_predictions(p, iter_inputs(inputs, p.preprocessing, BATCH), out)
    return time.perf_counter() - t0


def _peak_rss(bundle: Path, inputs: list[str], out: Path) -> float:
    code = (
        "from longtail.cli import main; "
        f"main(['predict', {str(bundle)!r}, *{inputs!r}, '--out', {str(out)!r}, '--no-progress']); "
        # VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across exec)
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1]) / 1024.0  # MiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/predict_bench")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    # a table bundle (the bundled digits: 64 unnamed features) and an image bundle (small CNN)
    table_bundle = out / "digits_bundle"
    if not (table_bundle / "bundle.json").is_file():
        fit_bundle(load_config("digits_lt", {"train.epochs": 2}), "la-posthoc", table_bundle)
    image_bundle = out / "image_bundle"
    idx = out / "idx"
    if not (image_bundle / "bundle.json").is_file():
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.data_fixtures import write_tiny_idx

        write_tiny_idx(idx, per_class=40, test_per_class=5)
        cfg = load_config(
            "fashion_mnist_lt",
            {"data.data_dir": str(idx), "data.imbalance_factor": 4, "train.epochs": 2},
        )
        fit_bundle(cfg, "la-posthoc", image_bundle)

    table = out / "table.csv"
    if not table.is_file():
        x = rng.uniform(0, 16, size=(args.rows, 64)).round(2)
        np.savetxt(
            table,
            x,
            delimiter=",",
            fmt="%g",
            header=",".join(f"c{j}" for j in range(64)),
            comments="",
        )
    small = out / "table_small.csv"
    if not small.is_file():
        lines = table.read_text().splitlines()[: args.rows // 10 + 1]
        small.write_text("\n".join(lines) + "\n")
    images = out / "images"
    files = sorted(images.glob("*.png")) if images.is_dir() else []
    if len(files) < args.images:
        from PIL import Image

        images.mkdir(exist_ok=True)
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 255, size=(28, 28), dtype=np.uint8)).save(
                images / f"{i:05d}.png"
            )
        files = sorted(images.glob("*.png"))
    images_small = out / "images_small"
    if not images_small.is_dir():
        images_small.mkdir()
        for f in files[: args.images // 10]:
            (images_small / f.name).write_bytes(f.read_bytes())

    for name, bundle, inputs, bare in (
        ("table", table_bundle, [str(table)], lambda m: _bare_csv(m, table)),
        ("images", image_bundle, [str(images)], lambda m: _bare_images(m, files)),
    ):
        net = load_bundle(bundle).network.eval()
        t_bare, t_ours = [], []
        for _ in range(args.repeats):
            t_bare.append(bare(net))
            t_ours.append(_ours(bundle, inputs, out / f"pred_{name}.csv"))
        n = args.rows if name == "table" else len(files)
        b, o = min(t_bare), min(t_ours)
        small_in = [str(small)] if name == "table" else [str(images_small)]
        rss_full = _peak_rss(bundle, inputs, out / f"rss_{name}.csv")
        rss_small = _peak_rss(bundle, small_in, out / f"rss_{name}_small.csv")
        print(
            f"{name}: {n} inputs; bare loop {b:.2f} s ({n / b:,.0f}/s), longtail predict {o:.2f} s "
            f"({n / o:,.0f}/s); ratio {b / o:.2f}; peak RSS {rss_small:.0f} MiB at {n // 10} "
            f"inputs, {rss_full:.0f} MiB at {n}"
        )
    print(f"(self RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
