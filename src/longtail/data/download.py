"""Download helper for the public data sets the loaders read (for users; tests never download).

Each file is fetched to a temporary file in the target directory, its SHA-256 is checked, and
only then is it renamed into place with :func:`os.replace` (atomic on POSIX and Windows), with the
mode the user's umask gives a new file. A file already present with the right checksum is not
fetched again. CIFAR tarballs are extracted after checking every member (no absolute paths, no
``..``, no links or devices). ``longtail data fetch NAME --to DIR`` is the command line's way in.
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

__all__ = ["DATASETS", "DATASET_DESCRIPTIONS", "RemoteFile", "download", "sha256sum"]

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
#: The Mulan repository on GitHub, pinned to a commit (so the bytes cannot change under a checksum).
_MULAN = (
    "https://raw.githubusercontent.com/tsoumakas/mulan/"
    "43f6389095ad71984264db4387a8074b22bc7d4a/data/multi-label/"
)


def _idx_files(base: str, sums: tuple[str, str, str, str]) -> list[RemoteFile]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return [RemoteFile(name, base + name, digest) for name, digest in zip(names, sums, strict=True)]


def _mulan_files(name: str, sums: tuple[str, str, str]) -> list[RemoteFile]:
    names = (f"{name}-train.arff", f"{name}-test.arff", f"{name}.xml")
    return [
        RemoteFile(file, f"{_MULAN}{name}/{file}", digest)
        for file, digest in zip(names, sums, strict=True)
    ]


#: name -> files. SHA-256 values: Fashion-MNIST as in ``shared/data/MANIFEST.md`` (whose md5s match
#: the official release); MNIST / KMNIST / CIFAR as used by the torchvision (Ruby port), Keras and
#: TensorFlow loaders (CIFAR md5s c58f30108f718f92721af3b95e74349a / eb9058c3a382ffc7106e4002c42a8d85
#: are the ones published on the CIFAR page); the Mulan sets (scene, yeast, enron) those of the
#: files of the Mulan repository at the pinned commit, byte-identical to ``shared/data/multilabel``.
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
    "scene": _mulan_files(
        "scene",
        (
            "b53ba93bdf412de922e3960389bcee24744fa3e872ce610511fc1d750888b64d",
            "ea38d20296b3ff7e220f477a3b802a9bcb2d768881fe6ee163efbc97ea527a42",
            "55d8b247b949ad5c52e5a73d8c6775ec6e5469ce9682465b45b333b68ee4bcc5",
        ),
    ),
    "yeast": _mulan_files(
        "yeast",
        (
            "e759dc991ff54694a4ff9c4314f3be0d6fd2b1994a4b563f57e416394c6aebbd",
            "4aaac102bff9669a765bf0b378602e5cc8c3b181048282e2f003117b496d552a",
            "c3056cc26444b5158b1588d1b73bec9c45429e10f0957ad085903423cb81f247",
        ),
    ),
    "enron": _mulan_files(
        "enron",
        (
            "2988cefc1cdf7a8004a20ef84615cc8fa1b5d7434c16687283b41454e2d9d194",
            "2f3aad54a8f54caaab4ab01246fe9dd385ba944a2633028f52747b57eac5474e",
            "ed40c92d7f613eed51714912cab10dddc4ce456262137d8fef230d44c7f4457b",
        ),
    ),
}

#: name -> one line on what :data:`DATASETS` fetches (``longtail data list``).
DATASET_DESCRIPTIONS: dict[str, str] = {
    "fashion-mnist": "Fashion-MNIST: 60,000 + 10,000 28x28 grey images of clothes, 10 classes (IDX)",
    "mnist": "MNIST: 60,000 + 10,000 28x28 grey handwritten digits, 10 classes (IDX)",
    "kmnist": "Kuzushiji-MNIST: 60,000 + 10,000 28x28 grey cursive Japanese characters (IDX)",
    "cifar10": "CIFAR-10: 50,000 + 10,000 32x32 colour images, 10 classes (python batches)",
    "cifar100": "CIFAR-100: 50,000 + 10,000 32x32 colour images, 100 classes (python batches)",
    "scene": "Scene (Mulan): 1,211 + 1,196 images as 294 features, 6 labels (multi-label ARFF)",
    "yeast": "Yeast (Mulan): 1,500 + 917 genes as 103 features, 14 labels (multi-label ARFF)",
    "enron": "Enron (Mulan): 1,123 + 579 e-mails as 1,001 word features, 53 labels (sparse ARFF)",
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


def _network(url: str, exc: OSError) -> ConnectionError:
    """A failed request or read as one line naming the URL (``HTTP Error 404: Not Found``...)."""
    reason = getattr(exc, "reason", None) or exc.strerror or str(exc) or type(exc).__name__
    return ConnectionError(f"{url}: cannot download ({reason}); nothing was written")


def _fetch(remote: RemoteFile, target: Path, urlopen: UrlOpen) -> None:
    """Stream ``remote`` to a temp file next to ``target``, verify, then ``os.replace``.

    Raises:
        ConnectionError: the request or a read failed (naming the URL); OSError: writing failed
            (e.g. a full disk; its ``filename`` is ``target``); ValueError: checksum mismatch.
    """
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{remote.filename}.", suffix=".part", dir=target.parent
    )
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            if hasattr(os, "fchmod"):  # mkstemp makes it 0o600: give it the umask's mode instead
                os.fchmod(out.fileno(), _file_mode())
            try:
                response = urlopen(remote.url)
            except OSError as exc:  # URLError, HTTPError, a timeout
                raise _network(remote.url, exc) from exc
            try:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except OSError as exc:
                        raise _network(remote.url, exc) from exc
                    if not chunk:
                        break
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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename != str(target):
            # a failed write names no file (mkstemp / replace the temporary one): name the target
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
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
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download data set ``name`` into ``directory`` and verify it.

    Args:
        name: a key of :data:`DATASETS`: ``"fashion-mnist"``, ``"mnist"``, ``"kmnist"``,
            ``"cifar10"``, ``"cifar100"``, or a Mulan set: ``"scene"``, ``"yeast"``, ``"enron"``.
        directory: target folder (created if missing); one folder per data set.
        force: fetch again even if a file with the right checksum is present (and re-extract).
        urlopen: callable ``url -> binary file-like`` used to fetch (default
            :func:`urllib.request.urlopen` with a 60 s timeout, http(s) only); tests inject a
            local one.
        log: called with one line per file (``present``, ``fetching URL``, ``verified``).

    Returns:
        The folder to pass to the loader (and as ``--data-dir``): ``directory`` for the IDX sets
        (use :func:`load_idx`) and the Mulan sets (``NAME-train.arff``, ``NAME-test.arff``,
        ``NAME.xml``: :func:`load_mulan`), ``directory / "cifar-10-batches-py"`` or
        ``directory / "cifar-100-python"`` for CIFAR (:func:`load_cifar` also reads
        ``directory``).

    Raises:
        ValueError: unknown ``name``; checksum mismatch (the partial file is removed and nothing
            replaces an existing file); unsafe archive member.
        ConnectionError: a request or read failed (the message names the URL).
        OSError: a file cannot be written (e.g. a full disk; naming it).
    """
    if name not in DATASETS:
        raise ValueError(f"name: unknown data set {name!r}; choose from {sorted(DATASETS)}")
    opener: UrlOpen = urlopen if urlopen is not None else _default_urlopen
    say = log if log is not None else (lambda line: None)
    folder = Path(directory)
    missing = [q for q in (folder, *folder.parents) if not q.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    fetched = False
    try:
        for remote in DATASETS[name]:
            target = folder / remote.filename
            if not force and target.is_file() and sha256sum(target) == remote.sha256.lower():
                say(f"{target}: present, sha256 verified")
                continue
            say(f"{target}: fetching {remote.url}")
            _fetch(remote, target, opener)
            say(f"{target}: sha256 verified")
            fetched = True
    except BaseException:
        for q in missing:  # the folders made for this call, if still empty
            try:
                q.rmdir()
            except OSError:
                break
        raise
    if name in _ARCHIVE_DIRS:
        sub = _ARCHIVE_DIRS[name]
        if force or fetched or not (folder / sub).is_dir():
            _extract(folder / DATASETS[name][0].filename, folder, sub)
            say(f"{folder / sub}: extracted")
        return folder / sub
    return folder
