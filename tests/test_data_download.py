"""Tests of longtail.data.download against local files only (a fake ``urlopen``; no network)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import make_tar_gz, require, write_cifar10
from longtail.data import DATASETS, RemoteFile, download, load_cifar, load_idx, sha256sum


class FakeWeb:
    """``urlopen`` replacement serving bytes from a dict and counting calls."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.calls: list[str] = []

    def __call__(self, url: str) -> io.BytesIO:
        self.calls.append(url)
        if url not in self.pages:
            raise OSError(f"404 {url}")
        return io.BytesIO(self.pages[url])


def test_registry_entries_are_well_formed() -> None:
    assert set(DATASETS) == {
        "fashion-mnist",
        "mnist",
        "kmnist",
        "cifar10",
        "cifar100",
        "scene",
        "yeast",
        "enron",
    }
    for name, files in DATASETS.items():
        assert files, name
        for remote in files:
            assert isinstance(remote, RemoteFile)
            assert remote.url.startswith(("https://", "http://")) and remote.url.endswith(
                remote.filename
            )
            assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0
    fashion = {r.filename: r.sha256 for r in DATASETS["fashion-mnist"]}
    assert (
        fashion["train-images-idx3-ubyte.gz"]
        == "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
    )


def test_fashion_mnist_from_local_copy(tmp_path: Path) -> None:
    source = require("fashion-mnist")
    web = FakeWeb({r.url: (source / r.filename).read_bytes() for r in DATASETS["fashion-mnist"]})
    out = download("fashion-mnist", tmp_path / "fm", urlopen=web)
    assert out == tmp_path / "fm"
    assert len(web.calls) == 4
    for remote in DATASETS["fashion-mnist"]:  # the real files match the registry checksums
        assert sha256sum(out / remote.filename) == remote.sha256
    assert sorted(p.name for p in out.iterdir()) == sorted(
        r.filename for r in DATASETS["fashion-mnist"]
    )
    assert load_idx(out, "test").data.shape == (10000, 28, 28)
    # second call: everything present and verified, nothing fetched
    download("fashion-mnist", out, urlopen=web)
    assert len(web.calls) == 4
    download("fashion-mnist", out, urlopen=web, force=True)
    assert len(web.calls) == 8


def _fake_mnist(monkeypatch: pytest.MonkeyPatch, payload: bytes) -> RemoteFile:
    remote = RemoteFile(
        "blob.bin", "https://example.invalid/blob.bin", hashlib.sha256(payload).hexdigest()
    )
    monkeypatch.setitem(DATASETS, "mnist", [remote])
    return remote


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = _fake_mnist(monkeypatch, b"the real bytes")
    web = FakeWeb({remote.url: b"tampered bytes"})
    with pytest.raises(ValueError, match=r"checksum mismatch for blob\.bin"):
        download("mnist", tmp_path, urlopen=web)
    assert list(tmp_path.iterdir()) == []


def test_mismatch_does_not_replace_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = _fake_mnist(monkeypatch, b"the real bytes")
    (tmp_path / "blob.bin").write_bytes(b"old local copy")
    with pytest.raises(ValueError, match="checksum"):
        download("mnist", tmp_path, urlopen=FakeWeb({remote.url: b"evil"}))
    assert (tmp_path / "blob.bin").read_bytes() == b"old local copy"
    assert [p.name for p in tmp_path.iterdir()] == ["blob.bin"]


def test_bad_existing_file_is_refetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = _fake_mnist(monkeypatch, b"the real bytes")
    (tmp_path / "blob.bin").write_bytes(b"corrupt")
    web = FakeWeb({remote.url: b"the real bytes"})
    download("mnist", tmp_path, urlopen=web)
    assert (tmp_path / "blob.bin").read_bytes() == b"the real bytes" and len(web.calls) == 1


def test_network_error_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mnist(monkeypatch, b"x")
    with pytest.raises(OSError, match="404"):
        download("mnist", tmp_path, urlopen=FakeWeb({}))
    assert list(tmp_path.iterdir()) == []


def _cifar_tarball(tmp_path: Path) -> tuple[bytes, np.ndarray]:
    folder = tmp_path / "build" / "cifar-10-batches-py"
    train_x, _, _, _ = write_cifar10(folder)
    members = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}
    archive = tmp_path / "build" / "c.tar.gz"
    make_tar_gz(archive, members)
    return archive.read_bytes(), train_x


def test_cifar_download_and_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob, train_x = _cifar_tarball(tmp_path)
    remote = RemoteFile(
        "cifar-10-python.tar.gz", "https://example.invalid/c.tgz", hashlib.sha256(blob).hexdigest()
    )
    monkeypatch.setitem(DATASETS, "cifar10", [remote])
    web = FakeWeb({remote.url: blob})
    target = tmp_path / "data"
    folder = download("cifar10", target, urlopen=web)
    assert folder == target / "cifar-10-batches-py"
    out = load_cifar(folder)
    np.testing.assert_array_equal(out.data.numpy().reshape(20, -1), train_x)
    assert sorted(p.name for p in target.iterdir()) == [
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
    ]
    download("cifar10", target, urlopen=web)
    assert len(web.calls) == 1


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, linkname: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_info("../evil.txt"), "unsafe path '../evil.txt'"),
        (_info("cifar-10-batches-py/../../evil.txt"), "unsafe path"),
        (_info("/tmp/evil-abs.txt"), "unsafe path '/tmp/evil-abs.txt'"),
        (
            _info("cifar-10-batches-py/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
            "not a regular file",
        ),
        (_info("cifar-10-batches-py/hard", tarfile.LNKTYPE, linkname="../x"), "not a regular file"),
        (_info("cifar-10-batches-py/dev", tarfile.CHRTYPE), "not a regular file"),
    ],
)
def test_cifar_tarball_path_traversal_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: tarfile.TarInfo, message: str
) -> None:
    archive = tmp_path / "evil.tar.gz"
    make_tar_gz(archive, {"cifar-10-batches-py/batches.meta": b"x"}, extra=[member])
    blob = archive.read_bytes()
    remote = RemoteFile(
        "cifar-10-python.tar.gz", "https://example.invalid/e.tgz", hashlib.sha256(blob).hexdigest()
    )
    monkeypatch.setitem(DATASETS, "cifar10", [remote])
    target = tmp_path / "a" / "b"
    with pytest.raises(ValueError, match=message):
        download("cifar10", target, urlopen=FakeWeb({remote.url: blob}))
    assert not (tmp_path / "a" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/evil-abs.txt").exists()
    assert [p.name for p in target.iterdir()] == [
        "cifar-10-python.tar.gz"
    ]  # no extraction leftovers


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name: unknown data set 'imagenet'"):
        download("imagenet", tmp_path, urlopen=FakeWeb({}))


def test_default_urlopen_rejects_other_schemes() -> None:
    from longtail.data.download import _default_urlopen

    with pytest.raises(ValueError, match="url"):
        _default_urlopen("file:///etc/passwd")
