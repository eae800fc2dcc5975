"""Helpers shared by the ``tests/test_data_*.py`` files: real-data location and file writers."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$LONGTAIL_DATA_DIR`` or ``<repo root>/../shared/data``."""
    env = os.environ.get("LONGTAIL_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def require(relative: str) -> Path:
    """Path of a file / folder under the shared data dir, or ``pytest.skip`` if it is absent."""
    path = shared_data_dir() / relative
    if not path.exists():
        pytest.skip(
            f"real data {relative!r} not found under {shared_data_dir()} "
            f"(set LONGTAIL_DATA_DIR to the shared data folder)"
        )
    return path


# ----------------------------------------------------------------------------------------- IDX
def idx_bytes(
    array: np.ndarray, *, dims: tuple[int, ...] | None = None, magic: bytes | None = None
) -> bytes:
    """Serialise a uint8 array as IDX; ``dims`` / ``magic`` override the header (to corrupt it)."""
    shape = array.shape if dims is None else dims
    head = magic if magic is not None else bytes([0, 0, 0x08, len(shape)])
    return head + struct.pack(f">{len(shape)}I", *shape) + array.astype(np.uint8).tobytes()


def write_idx_folder(
    folder: Path, images: np.ndarray, labels: np.ndarray, *, split: str = "train", gz: bool = False
) -> None:
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in (
        (f"{prefix}-images-idx3-ubyte", images),
        (f"{prefix}-labels-idx1-ubyte", labels),
    ):
        blob = idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (folder / stem).write_bytes(blob)


def write_tiny_idx(folder: Path, *, per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """10 classes of 28x28 images: a bright 7x7 block whose position is the class, plus noise.

    ``per_class`` training and ``test_per_class`` test images of each class (the training images
    drawn first from ``np.random.default_rng(seed)``), written as an IDX folder; returns ``folder``.
    """
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", test_per_class)):
        images = rng.integers(0, 60, size=(10 * n, 28, 28)).astype(np.uint8)
        labels = np.repeat(np.arange(10), n).astype(np.uint8)
        for i, k in enumerate(labels):
            r, c = divmod(int(k), 4)
            images[i, 7 * r : 7 * r + 7, 7 * c : 7 * c + 7] = 230
        write_idx_folder(folder, images, labels, split=split)
    return folder


# --------------------------------------------------------------------------------------- CIFAR
def _dump(obj: Any, path: Path, protocol: int) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_cifar10(
    folder: Path,
    n_per_batch: int = 4,
    *,
    protocol: int = 2,
    bytes_keys: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tiny CIFAR-10 folder; returns (train_data, train_labels, test_data, test_labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def key(k: str) -> Any:
        return k.encode() if bytes_keys else k

    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    _dump(
        {key("label_names"): names, key("num_cases_per_batch"): n_per_batch},
        folder / "batches.meta",
        protocol,
    )
    train_x, train_y = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, size=n_per_batch).tolist()
        _dump(
            {key("batch_label"): f"training batch {i} of 5", key("labels"): y, key("data"): x},
            folder / f"data_batch_{i}",
            protocol,
        )
        train_x.append(x)
        train_y.extend(y)
    tx = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
    ty = rng.integers(0, 10, size=n_per_batch).tolist()
    _dump(
        {key("batch_label"): "testing batch 1 of 1", key("labels"): ty, key("data"): tx},
        folder / "test_batch",
        protocol,
    )
    return np.concatenate(train_x), np.asarray(train_y), tx, np.asarray(ty)


def write_cifar100(
    folder: Path, n: int = 6, *, protocol: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"coarse{i}" for i in range(20)],
    }
    _dump(meta, folder / "meta", protocol)
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n)
        coarse = rng.integers(0, 20, size=n)
        batch = {
            "filenames": [f"img{i}.png" for i in range(n)],
            "batch_label": split,
            "fine_labels": fine.tolist(),
            "coarse_labels": coarse.tolist(),
            "data": x,
        }
        _dump(batch, folder / split, protocol)
        out[f"{split}_data"], out[f"{split}_fine"], out[f"{split}_coarse"] = x, fine, coarse
    return out


def make_tar_gz(
    path: Path, members: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None
) -> None:
    """Write a tar.gz with the given regular files (and optional raw TarInfo entries)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)


# ---------------------------------------------------------------------------------------- docs
def doc_code_blocks(relative: str) -> list[str]:
    """The ```` ```python ```` blocks of a Markdown file under the repository root."""
    import re

    text = (REPO_ROOT / relative).read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def doc_signature_problems(relative: str, module: Any, text: str | None = None) -> list[str]:
    """Compare every ``name(arg, kw=default, ...)`` the Markdown file shows in backticks with the
    real signature of ``module.name`` (names outside ``module.__all__`` are skipped).

    Returns a list of problems: a parameter the function does not have, a different default, a
    keyword-only marker ``*`` the function does not have, or a name in ``__all__`` that is not
    callable (``text`` replaces the file's content, to test the checker). Literal example calls (``f(5000, 10, 100)``) and ``...`` are skipped.
    """
    import ast
    import inspect
    import re

    if text is None:
        text = (REPO_ROOT / relative).read_text(encoding="utf-8")
    problems = []
    for match in re.finditer(r"`([A-Za-z_]\w*)\(([^`()]*(?:\([^`()]*\)[^`()]*)*)\)", text):
        name, args = match.group(1), " ".join(match.group(2).split())
        if name not in getattr(module, "__all__", ()):
            continue
        signature = inspect.signature(getattr(module, name))
        params = signature.parameters
        keyword_only = False
        for token in _split_top_level(args):
            if token in ("", "..."):
                continue
            if token == "*":
                keyword_only = True
                continue
            pname, _, default = token.partition("=")
            if not pname.isidentifier():
                break  # a literal example call, not a signature
            where = f"{relative}: {name}({args})"
            if pname not in params:
                problems.append(f"{where}: no parameter {pname!r} in {signature}")
                continue
            param = params[pname]
            if keyword_only and param.kind is not inspect.Parameter.KEYWORD_ONLY:
                problems.append(f"{where}: {pname!r} is not keyword-only in {signature}")
            if default and default != "...":
                if param.default is inspect.Parameter.empty:
                    problems.append(f"{where}: {pname!r} has no default in {signature}")
                elif ast.literal_eval(default) != param.default:
                    problems.append(f"{where}: default of {pname!r} is {param.default!r}")
    return problems


def _split_top_level(args: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in args:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    out.append(cur.strip())
    return out
