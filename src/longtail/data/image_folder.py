"""Image folders (``root/<class>/*.png``), read lazily through a torch ``Dataset``.

Layout: one sub-folder per class directly under ``root``; the class names are the folder names in
sorted order (class ``c`` is the ``c``-th name). Images are found recursively inside a class folder;
files and folders whose name starts with ``.`` (hidden) are skipped, and so is every file whose
extension is not one of :data:`IMAGE_EXTENSIONS` (case-insensitive). Scanning looks at the names
only; an image is decoded (with Pillow) when it is read, and a file Pillow cannot read raises
:class:`UnreadableImageError` (a ``ValueError``) naming it, also from a ``DataLoader`` worker.

:class:`ImageFilesDataset` (any list of image files with their targets, single- or multi-label;
:class:`ImageFolderDataset` is the one of a folder, the image manifests of
:mod:`longtail.data.image_manifest` the one of a CSV file) holds file paths and labels, never
decoded pixels, so a set larger than memory can be trained on through a
``torch.utils.data.DataLoader`` (with workers). Every image
is converted to ``channels`` (1: grey ``"L"``, 3: ``"RGB"``) and resized to ``image_size`` x
``image_size`` (bilinear, aspect ratio not kept), then scaled to ``[0, 1]``; with ``mean`` / ``std``
set (see :func:`image_channel_stats`) it is standardised per channel.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFilesDataset",
    "ImageFolderDataset",
    "UnreadableImageError",
    "check_image_files",
    "image_channel_stats",
    "image_file_problem",
    "scan_image_folder",
]

#: File extensions read as images (compared in lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class UnreadableImageError(ValueError):
    """An image file Pillow cannot read; the message names the file.

    Raised in a ``DataLoader`` worker, it reaches the main process with the same one-line message
    (torch re-raises a worker's exception as ``type(message_with_traceback)``; the traceback is
    dropped here).
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def scan_image_folder(
    root: str | os.PathLike[str], class_names: Sequence[str] | None = None
) -> tuple[list[tuple[str, int]], list[str]]:
    """The image files of ``root/<class>/...`` and the class names.

    Args:
        root: a folder with one sub-folder per class.
        class_names: the classes to map the folders to (e.g. those of the training folder when
            scanning a test folder); every class folder of ``root`` must be one of them, and a
            name without a folder is allowed (a class without images here). ``None``: the sorted
            folder names.

    Returns:
        ``(samples, class_names)``: ``samples`` lists ``(path, class index)`` sorted by class, then
        by the path relative to the class folder.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class folder, a class folder without any image file, or a folder that is not
            one of ``class_names``; the message names the folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: image folder not found")
    folders = sorted(p.name for p in base.iterdir() if p.is_dir() and _visible(p.name))
    if not folders:
        raise ValueError(
            f"{base}: no class folders (expected {base}/<class>/*.png, *.jpg or *.jpeg)"
        )
    names = list(folders) if class_names is None else [str(n) for n in class_names]
    index = {n: i for i, n in enumerate(names)}
    samples: list[tuple[str, int]] = []
    for folder in folders:
        if folder not in index:
            raise ValueError(
                f"{base / folder}: class folder {folder!r} is not one of the training classes "
                f"({', '.join(names)})"
            )
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base / folder):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            for f in filenames:
                if _visible(f) and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(os.path.join(dirpath, f))
        if not found:
            raise ValueError(
                f"{base / folder}: class folder without images "
                f"({', '.join(IMAGE_EXTENSIONS)}; hidden files are skipped)"
            )
        samples += [(p, index[folder]) for p in sorted(found)]
    return samples, names


def _read_image(path: str, image_size: int, channels: int) -> Tensor:
    """Decode, convert and resize one image: ``float32 (channels, size, size)`` in ``[0, 1]``."""
    from PIL import Image  # optional: the cli extra (pillow)

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
            array = np.array(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError and truncated files are OSErrors
        raise UnreadableImageError(f"{path}: cannot read the image ({exc})") from exc
    x = torch.from_numpy(array)
    x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
    return x.float().div_(255.0)


def image_file_problem(path: str) -> str | None:
    """Why Pillow cannot read the image ``path`` (``None``: it can), found without decoding it all.

    Every file: its header is parsed (``Image.open``); then a PNG (or any format but JPEG) is
    verified (``Image.verify``: every chunk's CRC, so a truncated or damaged file fails, without
    inflating the pixels), and a JPEG, whose ``verify`` reads no pixel data, is decoded at 1/8 scale
    (``Image.draft``), which reads all of its compressed data. At most about 0.1 ms a file, 6 to 10
    times cheaper than a full decode of 224x224 images (``benchmarks/image_check_speed.py``).
    """
    from PIL import Image  # optional: the cli extra (pillow)

    try:
        with Image.open(path) as img:
            if img.format in ("JPEG", "MPO"):
                img.draft(img.mode, (1, 1))
                img.load()
            else:
                img.verify()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError and truncated files are OSErrors; a bad PNG CRC a SyntaxError
        return str(exc).strip() or type(exc).__name__
    return None


def check_image_files(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Check that Pillow can read every image of ``paths`` (see :func:`image_file_problem`), so that
    a damaged file stops a run before training rather than when it is first read (a test image:
    after training).

    Raises:
        UnreadableImageError: naming the first unreadable file and its reason, and how many others
            there are.
    """
    bad = [(str(p), why) for p in paths if (why := image_file_problem(str(p))) is not None]
    if not bad:
        return
    path, why = bad[0]
    more = ""
    if len(bad) > 1:
        more = (
            f"; {len(bad) - 1} more of the {len(paths)} image files cannot be read either "
            f"(next: {bad[1][0]})"
        )
    raise UnreadableImageError(f"{path}: cannot read the image ({why}){more}")


_D = TypeVar("_D", bound="ImageFilesDataset")


class ImageFilesDataset(Dataset[tuple[Tensor, Any]]):
    """Image files and their targets, decoded one image at a time (see the module docstring).

    The lazy dataset of image folders (:class:`ImageFolderDataset`) and image manifests
    (:func:`longtail.data.read_image_manifest`).

    Args:
        paths: one image file per example.
        targets: ``int64 (N,)`` class indices (single-label) or ``float32 (N, L)`` label
            indicators in ``{0, 1}``, ``-1`` unknown (multi-label).
        image_size: side of the square every image is resized to.
        channels: 1 (grey) or 3 (RGB).
        class_names: one name per class or label.
        root: the folder :meth:`relative_paths` is relative to by default (default: the
            current folder).
        mean, std: per-channel standardisation ``(x - mean) / std`` (``channels`` values each);
            ``None``: images stay in ``[0, 1]``.

    ``dataset[i]`` is ``(image, target)``: ``float32 (channels, image_size, image_size)`` and an
    ``int`` (single-label) or a ``float32 (L,)`` row (multi-label). Nothing is decoded when the
    dataset is built.

    Raises:
        ValueError: ``image_size < 1``, ``channels`` not 1 or 3, targets that are not one per
            path, a bad ``mean`` / ``std``, or Pillow missing.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        targets: Tensor | Sequence[int],
        image_size: int,
        channels: int = 3,
        class_names: Sequence[str] = (),
        *,
        root: str | os.PathLike[str] | None = None,
        mean: Sequence[float] | Tensor | None = None,
        std: Sequence[float] | Tensor | None = None,
    ):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size: expected an int >= 1, got {image_size!r}")
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ValueError(f"channels: expected 1 or 3, got {channels!r}")
        try:
            import PIL  # noqa: F401  (optional: the cli extra)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ValueError(
                "images are decoded with Pillow; install it with `pip install "
                "'longtail[cli]'` (or `pip install pillow`)"
            ) from exc
        self.root = Path("." if root is None else root)
        self.image_size = image_size
        self.channels = channels
        self.class_names = [str(n) for n in class_names]
        self.paths = [str(p) for p in paths]
        self.targets = self._checked(torch.as_tensor(targets))
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        if mean is not None or std is not None:
            self.set_normalization(mean, std)

    def _checked(self, targets: Tensor) -> Tensor:
        if targets.ndim not in (1, 2) or len(targets) != len(self.paths):
            raise ValueError(
                f"targets: expected (N,) or (N, L) with N = {len(self.paths)} paths, got shape "
                f"{tuple(targets.shape)}"
            )
        return targets.long() if targets.ndim == 1 else targets.float()

    def set_normalization(
        self, mean: Sequence[float] | Tensor | None, std: Sequence[float] | Tensor | None
    ) -> None:
        """Standardise every image with ``(x - mean) / std`` per channel (both ``None``: off)."""
        if mean is None and std is None:
            self.mean = self.std = None
            return
        if mean is None or std is None:
            raise ValueError("mean and std: give both or neither")
        m = torch.as_tensor(mean, dtype=torch.float32).flatten()
        s = torch.as_tensor(std, dtype=torch.float32).flatten()
        if m.numel() != self.channels or s.numel() != self.channels:
            raise ValueError(
                f"mean / std: expected {self.channels} values each, got {m.numel()} and {s.numel()}"
            )
        if not bool(torch.isfinite(m).all()) or not bool((s > 0).all()):
            raise ValueError(
                f"mean / std: must be finite with std > 0, got {m.tolist()} / {s.tolist()}"
            )
        self.mean, self.std = m.view(-1, 1, 1), s.view(-1, 1, 1)

    def subset(self: _D, indices: Sequence[int] | Tensor) -> _D:
        """A dataset of the examples ``indices`` (same size, channels, classes and standardisation)."""
        out = copy.copy(self)
        idx = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
        out.paths = [self.paths[i] for i in idx]
        out.targets = self.targets[torch.as_tensor(idx, dtype=torch.long)]
        return out

    def with_targets(self: _D, targets: Tensor) -> _D:
        """The same images with other targets, one per image (e.g. with hidden labels)."""
        out = copy.copy(self)
        out.targets = self._checked(torch.as_tensor(targets))
        return out

    def relative_paths(self, start: str | os.PathLike[str] | None = None) -> list[str]:
        """The files relative to ``start`` (default: ``root``), with ``/`` separators."""
        base = Path(self.root if start is None else start)
        return [Path(os.path.relpath(p, base)).as_posix() for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Tensor:
        """Image ``index`` decoded, converted and resized, in ``[0, 1]`` (not standardised)."""
        return _read_image(self.paths[index], self.image_size, self.channels)

    def __getitem__(self, index: int) -> tuple[Tensor, Any]:
        x = self.load(index)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        y = self.targets[index]
        return x, (int(y) if y.ndim == 0 else y)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, {len(self)} images, "
            f"{len(self.class_names)} classes, image_size={self.image_size}, "
            f"channels={self.channels})"
        )


class ImageFolderDataset(ImageFilesDataset):
    """A folder of class sub-folders, decoded one image at a time (see the module docstring).

    Args:
        root: ``root/<class>/*.{png,jpg,jpeg}``.
        image_size: side of the square every image is resized to.
        channels: 1 (grey) or 3 (RGB).
        class_names: map the folders to these classes (see :func:`scan_image_folder`).
        mean, std: per-channel standardisation ``(x - mean) / std`` (``channels`` values each);
            ``None``: images stay in ``[0, 1]``.

    Attributes:
        samples: ``(path, class index)`` per example.
        targets: ``int64 (N,)`` class indices.
        class_names: one name per class.

    ``dataset[i]`` is ``(image, label)``: ``float32 (channels, image_size, image_size)`` and an
    ``int``. Nothing is decoded when the dataset is built.

    Raises:
        ValueError: ``image_size < 1``, ``channels`` not 1 or 3, a bad ``mean`` / ``std``, or a
            problem found by :func:`scan_image_folder`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int,
        channels: int = 3,
        class_names: Sequence[str] | None = None,
        *,
        mean: Sequence[float] | Tensor | None = None,
        std: Sequence[float] | Tensor | None = None,
    ):
        samples, names = scan_image_folder(root, class_names)
        super().__init__(
            [p for p, _ in samples],
            [t for _, t in samples],
            image_size,
            channels,
            names,
            root=root,
            mean=mean,
            std=std,
        )

    @property
    def samples(self) -> list[tuple[str, int]]:
        """``(path, class index)`` per example."""
        return list(zip(self.paths, self.targets.tolist(), strict=True))


class _Unnormalised(Dataset[Tensor]):
    def __init__(self, dataset: ImageFilesDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        return self.dataset.load(index)


def image_channel_stats(
    dataset: ImageFilesDataset,
    *,
    max_images: int | None = 2000,
    seed: int = 0,
    num_workers: int = 0,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of the images (in ``[0, 1]``, before standardising).

    Computed over every pixel of ``max_images`` images drawn without replacement with
    ``torch.randperm`` seeded by ``seed`` (all images when there are fewer, or with ``max_images``
    ``None``), read through a ``DataLoader`` with ``num_workers`` workers. The std is the population
    std of the pixels, at least ``1e-6``.

    Returns:
        ``(mean, std)``, ``float32`` tensors of ``dataset.channels`` values.

    Raises:
        ValueError: an empty dataset, or an unreadable image (the message names the file).
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("image_channel_stats: the dataset is empty")
    if max_images is not None and max_images < n:
        g = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(n, generator=g)[:max_images].sort().values
    else:
        chosen = torch.arange(n)
    batches = [c.tolist() for c in chosen.split(batch_size)]
    loader = torch.utils.data.DataLoader(
        _Unnormalised(dataset), batch_sampler=batches, num_workers=num_workers
    )
    total = torch.zeros(dataset.channels, dtype=torch.float64)
    squares = torch.zeros(dataset.channels, dtype=torch.float64)
    count = 0
    for x in loader:
        x = x.double()
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    var = (squares / count - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().clamp_min(1e-6).float()
