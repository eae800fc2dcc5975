"""``longtail data list`` / ``longtail data fetch NAME --to DIR`` (issue 23, point 6), offline: the
downloads are served from local files (the shared data, or small files written here) through a
replacement of the helper's ``urlopen``; the checksums are the registry's."""

from __future__ import annotations

import errno
import gzip
import hashlib
import importlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import REPO_ROOT, idx_bytes, make_tar_gz, require, write_cifar10
from longtail.cli import main
from longtail.data import DATASET_DESCRIPTIONS, DATASETS, RemoteFile, sha256sum
from longtail.engine.config import load_config
from longtail.engine.datasets import DataWarning, load_pool
from longtail.tracks.multi_label.task import build_multilabel_data

MULAN = ("scene", "yeast", "enron")


class LocalWeb:
    """``urlopen`` serving bytes by URL (a missing URL is a 404), counting the requests."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.calls: list[str] = []

    def __call__(self, url: str) -> io.BytesIO:
        self.calls.append(url)
        if url not in self.pages:
            raise OSError(f"HTTP Error 404: Not Found ({url})")
        return io.BytesIO(self.pages[url])


def _serve(monkeypatch: pytest.MonkeyPatch, pages: dict[str, bytes]) -> LocalWeb:
    web = LocalWeb(pages)
    # the module (longtail.data.download is the function of that name)
    monkeypatch.setattr(importlib.import_module("longtail.data.download"), "_default_urlopen", web)
    return web


def _shared(name: str, folder: str) -> dict[str, bytes]:
    """The registry's URLs of ``name`` served from the shared data's copy in ``folder``."""
    source = require(folder)
    return {r.url: (source / r.filename).read_bytes() for r in DATASETS[name]}


def _one_error(err: str, *needles: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_every_data_set_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(DATASET_DESCRIPTIONS) == set(DATASETS)
    assert {"fashion-mnist", "mnist", "kmnist", "cifar10", "cifar100", *MULAN} <= set(DATASETS)
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS:
        assert any(line.startswith(f"{name} ") for line in out.splitlines()), (name, out)
    assert "longtail data fetch NAME --to DIR" in out


@pytest.mark.parametrize("name", MULAN)
def test_mulan_sets_fetch_into_the_layout_the_configs_read(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    web = _serve(monkeypatch, _shared(name, f"multilabel/{name}"))
    to = tmp_path / "data" / name
    assert main(["data", "fetch", name, "--to", str(to)]) == 0
    captured = capsys.readouterr()
    assert f"run with --data-dir {to}" in captured.out
    assert sorted(p.name for p in to.iterdir()) == sorted(
        [f"{name}-train.arff", f"{name}-test.arff", f"{name}.xml"]
    )
    for remote in DATASETS[name]:  # the registry's checksums are those of the real files
        assert sha256sum(to / remote.filename) == remote.sha256
        assert remote.url.startswith("https://raw.githubusercontent.com/tsoumakas/mulan/")
    # the folder is what a Mulan config's data.data_dir names (configs/multilabel_*.yaml)
    config = "multilabel_scene.yaml" if name == "scene" else "multilabel_yeast.yaml"
    cfg = load_config(REPO_ROOT / "configs" / config, {"data.data_dir": str(to)})
    with warnings.catch_warnings():  # enron: a label without a training positive (a note)
        warnings.simplefilter("ignore", DataWarning)
        bundle = build_multilabel_data(cfg.data)
    assert bundle.name == name and len(bundle.train_y) > 500
    # fetched again: every file is present and verified, nothing is downloaded
    assert main(["data", "fetch", name, "--to", str(to)]) == 0
    assert len(web.calls) == 3
    assert "present, sha256 verified" in capsys.readouterr().err


def test_new_user_flow_fashion_mnist(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bundled config outside this repository's layout: the error says what to run; it runs."""
    monkeypatch.chdir(tmp_path)  # ../shared/data/fashion-mnist does not exist from here
    assert main(["bench", "fashion_mnist_lt", "--out", "run", "--no-progress"]) == 2
    _one_error(
        capsys.readouterr().err,
        "data.data_dir: folder not found: ../shared/data/fashion-mnist",
        "--data-dir DIR",
        "longtail data fetch fashion-mnist --to DIR",
    )
    _serve(monkeypatch, _shared("fashion-mnist", "fashion-mnist"))
    assert main(["data", "fetch", "fashion-mnist", "--to", "fm"]) == 0
    assert "run with --data-dir fm" in capsys.readouterr().out
    cfg = load_config("fashion_mnist_lt", {"data.data_dir": "fm"})
    pool = load_pool(cfg.data)
    assert pool.train_x.shape == (60000, 28, 28) and pool.test_x.shape == (10000, 28, 28)


def _tiny_idx() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    blobs = {}
    for prefix, n in (("train", 40), ("t10k", 20)):
        labels = np.repeat(np.arange(10), n // 10)
        images = rng.integers(0, 256, size=(n, 28, 28))
        blobs[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images))
        blobs[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels))
    return blobs


def _fake_registry(monkeypatch: pytest.MonkeyPatch, name: str, blobs: dict[str, bytes]) -> None:
    """``name``'s registry entry for ``blobs`` (their own checksums), at invented URLs."""
    files = [
        RemoteFile(f, f"https://example.invalid/{name}/{f}", hashlib.sha256(b).hexdigest())
        for f, b in blobs.items()
    ]
    monkeypatch.setitem(DATASETS, name, files)
    _serve(monkeypatch, {r.url: blobs[r.filename] for r in files})


@pytest.mark.parametrize("name", ["mnist", "kmnist", "cifar10"])
def test_idx_and_cifar_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Small stand-ins under the real file names: the folder is what the format's data_dir reads."""
    if name == "cifar10":
        batches = tmp_path / "build" / "cifar-10-batches-py"
        write_cifar10(batches)
        archive = tmp_path / "build" / "c.tar.gz"
        members = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in batches.iterdir()}
        make_tar_gz(archive, members)
        blobs = {"cifar-10-python.tar.gz": archive.read_bytes()}
    else:
        blobs = _tiny_idx()
    assert set(blobs) == {r.filename for r in DATASETS[name]}  # the real names
    _fake_registry(monkeypatch, name, blobs)
    to = tmp_path / name
    assert main(["data", "fetch", name, "--to", str(to)]) == 0
    cfg = load_config(None, {"data.dataset": name, "data.data_dir": str(to)})
    pool = load_pool(cfg.data)
    assert len(pool.train_y) == (20 if name == "cifar10" else 40)


def test_checksum_mismatch_is_an_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = _shared("scene", "multilabel/scene")
    first = DATASETS["scene"][0]
    pages[first.url] = pages[first.url][:-1] + b"?"  # one byte changed on the way
    _serve(monkeypatch, pages)
    to = tmp_path / "new" / "scene"
    assert main(["data", "fetch", "scene", "--to", str(to)]) == 2
    _one_error(
        capsys.readouterr().err,
        f"checksum mismatch for {first.filename} from {first.url}",
        first.sha256,
        "nothing was written",
    )
    assert not (tmp_path / "new").exists()  # the folders made for it are gone again


def test_unknown_name_missing_file_and_full_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["data", "fetch", "fashion_mnist", "--to", str(tmp_path / "x")]) == 2
    _one_error(capsys.readouterr().err, "unknown data set 'fashion_mnist'", "fashion-mnist?")
    web = _serve(monkeypatch, {})  # nothing served: a 404
    assert main(["data", "fetch", "yeast", "--to", str(tmp_path / "y")]) == 2
    _one_error(capsys.readouterr().err, web.calls[0], "cannot download", "404")
    assert not (tmp_path / "y").exists()
    _serve(monkeypatch, _shared("yeast", "multilabel/yeast"))

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert main(["data", "fetch", "yeast", "--to", str(tmp_path / "y")]) == 2
    _one_error(
        capsys.readouterr().err,
        f"{tmp_path / 'y' / 'yeast-train.arff'}: No space left on device",
        "run the command again",
    )
