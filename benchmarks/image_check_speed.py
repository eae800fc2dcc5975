"""Cost of checking an image folder before training (issue 23): header only, ``verify``, the check a
run makes (:func:`longtail.data.image_folder.image_file_problem`), and a full decode.

Writes ``--files`` images (half PNG, half JPEG quality 75, ``--size`` x ``--size`` RGB, a smooth
8x8 pattern scaled up so that they compress like photographs rather than noise) to a temporary
folder, then times, per file:

- ``header``: ``Image.open`` (the format and size are parsed, no pixel data read);
- ``verify``: ``Image.open`` + ``verify()`` (PNG: every chunk's CRC; JPEG: the markers only);
- ``check``: what a run does, ``image_file_problem`` (``verify`` for a PNG, a 1/8-scale decode for
  a JPEG, whose ``verify`` reads no pixel data);
- ``decode``: ``Image.open`` + ``load()``, the full decode.

It also reports which corrupt files each way finds (a text file named ``.png``, PNG and JPEG cut
in half, a PNG with one flipped byte). Prints the best of ``--repeats`` passes over the folder
(the files are in the page cache after the first), in milliseconds.

Usage::

    python benchmarks/image_check_speed.py [--files 3000] [--size 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from longtail.data.image_folder import image_file_problem


def _header(path: str) -> None:
    with Image.open(path) as img:
        img.size  # noqa: B018  (parsed by open)


def _verify(path: str) -> None:
    with Image.open(path) as img:
        img.verify()


def _check(path: str) -> None:
    why = image_file_problem(path)
    if why is not None:
        raise OSError(why)


def _decode(path: str) -> None:
    with Image.open(path) as img:
        img.load()


WAYS: dict[str, Callable[[str], None]] = {
    "header": _header,
    "verify": _verify,
    "check": _check,
    "decode": _decode,
}


def _write_images(folder: Path, files: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(files):
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")
        img = small.resize((size, size), Image.Resampling.BILINEAR)
        path = folder / f"{i:05d}.{'png' if i % 2 == 0 else 'jpg'}"
        img.save(path)
        paths.append(str(path))
    return paths


def _corrupt(folder: Path, png: bytes, jpg: bytes) -> dict[str, Path]:
    flipped = bytearray(png)
    flipped[len(png) // 2] ^= 0xFF
    blobs = {
        "text named .png": (b"not an image\n", ".png"),
        "PNG cut in half": (png[: len(png) // 2], ".png"),
        "JPEG cut in half": (jpg[: len(jpg) // 2], ".jpg"),
        "PNG, one byte flipped": (bytes(flipped), ".png"),
    }
    out = {}
    for i, (name, (blob, suffix)) in enumerate(blobs.items()):
        out[name] = folder / f"bad{i}{suffix}"
        out[name].write_bytes(blob)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = _write_images(folder, args.files, args.size)
        megabytes = sum(Path(p).stat().st_size for p in paths) / 1e6
        print(
            f"{args.files} images of {args.size}x{args.size} ({megabytes:.1f} MB), best of "
            f"{args.repeats} passes:"
        )
        for name, way in WAYS.items():
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                for p in paths:
                    way(p)
                best = min(best, time.perf_counter() - start)
            print(f"  {name:7s} {best * 1000:7.0f} ms  ({best / len(paths) * 1e6:5.0f} us/file)")
        bad = _corrupt(folder, Path(paths[0]).read_bytes(), Path(paths[1]).read_bytes())
        print("corrupt files found:")
        for what, path in bad.items():
            found = []
            for name, way in WAYS.items():
                try:
                    way(str(path))
                except (OSError, SyntaxError, ValueError):
                    found.append(name)
            print(f"  {what:22s} {', '.join(found) or 'none'}")


if __name__ == "__main__":
    main()
