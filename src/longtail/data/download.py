"""Download helper for the public data sets the loaders read (for users; tests never download).

Each file is fetched to a temporary file in the target directory, its SHA-256 is checked, and
only then is it renamed into place with :func:`os.replace` (atomic on POSIX and Windows), with the
mode the user's umask gives a new file. A file already present with the right checksum is not
fetched again. CIFAR tarballs are extracted after checking every member (no absolute paths, no
``..``, no links or devices).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

__all__ = ["DATASETS", "RemoteFile", "download", "sha256sum"]

_CHUNK = 1 << 20


class RemoteFile(NamedTuple):
    """One downloadable file: local ``filename``, source ``url`` and published ``sha256``."""

    filename: str
    url: str
    sha256: str


_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_KMNIST = "https://codh.rois.ac.jp/kmnist/dataset/kmnist/"
_KRIZ = "https://www.cs.toronto.edu/~kriz/"


def _idx_files(base: str, sums: tuple[str, str, str, str]) -> list[RemoteFile]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return [RemoteFile(name, base + name, digest) for name, digest in zip(names, sums, strict=True)]


#: name -> files. SHA-256 values: Fashion-MNIST as in ``shared/data/MANIFEST.md`` (whose md5s match
#: the official release); MNIST / KMNIST / CIFAR as used by the torchvision (Ruby port), Keras and
#: TensorFlow loaders (CIFAR md5s c58f30108f718f92721af3b95e74349a / eb9058c3a382ffc7106e4002c42a8d85
#: are the ones published on the CIFAR page).
DATASETS: dict[str, list[RemoteFile]] = {
    "fashion-mnist": _idx_files(
        _FASHION,
        (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    ),
    "mnist": _idx_files(
        _MNIST,
        (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    ),
    "kmnist": _idx_files(
        _KMNIST,
        (
            "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
        ),
    ),
    "cifar10": [
        RemoteFile(
            "cifar-10-python.tar.gz",
            _KRIZ + "cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        )
    ],
    "cifar100": [
        RemoteFile(
            "cifar-100-python.tar.gz",
            _KRIZ + "cifar-100-python.tar.gz",
            "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        )
    ],
}

#: folder each tarball extracts to (inside the target directory).
_ARCHIVE_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

UrlOpen = Callable[[str], IO[bytes]]


def sha256sum(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _default_urlopen(url: str) -> IO[bytes]:
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"url: only http(s) URLs are fetched, got {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": "longtail-data/0.1"})
    response: IO[bytes] = urllib.request.urlopen(request, timeout=60)
    return response


def _file_mode() -> int:
    """``0o666 & ~umask``: the mode of a new file for this user (read without changing the umask
    where Linux's ``/proc/self/status`` shows it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # only readable by setting it: put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _fetch(remote: RemoteFile, target: Path, urlopen: UrlOpen) -> None:
    """Stream ``remote`` to a temp file next to ``target``, verify, then ``os.replace``."""
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{remote.filename}.", suffix=".part", dir=target.parent
    )
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            if hasattr(os, "fchmod"):  # mkstemp makes it 0o600: give it the umask's mode instead
                os.fchmod(out.fileno(), _file_mode())
            response = urlopen(remote.url)
            try:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            finally:
                close = getattr(response, "close", None)
                if callable(close):
                    close()
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != remote.sha256.lower():
            raise ValueError(
                f"checksum mismatch for {remote.filename} from {remote.url}: expected sha256 "
                f"{remote.sha256}, got {got}; nothing was written"
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for member in members:
        name = member.name
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise ValueError(f"{archive}: refusing archive member with unsafe path {name!r}")
        if not (member.isfile() or member.isdir()):
            raise ValueError(
                f"{archive}: refusing archive member {name!r} that is not a regular file "
                f"or directory (links and devices are not extracted)"
            )


def _extract(archive: Path, directory: Path, folder: str) -> None:
    """Safely extract ``archive`` and move its ``folder`` into ``directory`` atomically."""
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=directory) as tmp:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            _check_members(archive, members)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.10.12
                tar.extractall(tmp, members=members)  # members checked above
        source = Path(tmp) / folder
        if not source.is_dir():
            raise ValueError(f"{archive}: archive has no {folder!r} folder")
        destination = directory / folder
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(source, destination)


def download(
    name: str,
    directory: str | os.PathLike[str],
    *,
    force: bool = False,
    urlopen: UrlOpen | None = None,
) -> Path:
    """Download data set ``name`` into ``directory`` and verify it.

    Args:
        name: a key of :data:`DATASETS`: ``"fashion-mnist"``, ``"mnist"``, ``"kmnist"``,
            ``"cifar10"``, ``"cifar100"``.
        directory: target folder (created if missing).
        force: fetch again even if a file with the right checksum is present (and re-extract).
        urlopen: callable ``url -> binary file-like`` used to fetch (default
            :func:`urllib.request.urlopen` with a 60 s timeout, http(s) only); tests inject a
            local one.

    Returns:
        The folder to pass to the loader: ``directory`` for the IDX sets (use :func:`load_idx`),
        ``directory / "cifar-10-batches-py"`` or ``directory / "cifar-100-python"`` for CIFAR.

    Raises:
        ValueError: unknown ``name``; checksum mismatch (the partial file is removed and nothing
            replaces an existing file); unsafe archive member.
    """
    if name not in DATASETS:
        raise ValueError(f"name: unknown data set {name!r}; choose from {sorted(DATASETS)}")
    opener: UrlOpen = urlopen if urlopen is not None else _default_urlopen
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    fetched = False
    for remote in DATASETS[name]:
        target = folder / remote.filename
        if not force and target.is_file() and sha256sum(target) == remote.sha256.lower():
            continue
        _fetch(remote, target, opener)
        fetched = True
    if name in _ARCHIVE_DIRS:
        sub = _ARCHIVE_DIRS[name]
        if force or fetched or not (folder / sub).is_dir():
            _extract(folder / DATASETS[name][0].filename, folder, sub)
        return folder / sub
    return folder
