"""Data formats as specs: what a ``data.dataset`` value reads, serves and needs from the config.

A :class:`DataFormat` names its loader and states as data what the rest of the engine asks about
it: the labels it serves (single-label, multi-label or either), where it reads (``data.data_dir``
or ``data.path``, and which file suffixes), the ``data.*`` keys that only it reads, images or
feature vectors, whether it has a test split of its own, whether its files are IDX files. The
config checks, :func:`~longtail.engine.datasets.build_data`, the report's prose and the runner read
these fields, never a format's name, so a new format is one module calling
:func:`register_data_format` (docs/architecture.md, "Add a data format").

The built-in formats register themselves when :mod:`longtail.engine.datasets` is imported (one
module each, the IDX family and CIFAR grouped); a track registers the formats only it serves (the
multi-label track: ``mulan`` and ``fashion-tiles``): :data:`DATA_FORMATS` imports
:mod:`longtail.tracks` the first time it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from longtail.data.download import DATASETS
from longtail.engine.datasets.standardise import standardise_images
from longtail.registry import Registry

if TYPE_CHECKING:
    from longtail.data.image_folder import ImageFilesDataset
    from longtail.engine.config import Config, DataConfig
    from longtail.engine.datasets.bundle import DataBundle
    from longtail.engine.datasets.preprocessing import Preprocessing

__all__ = [
    "DATA_FORMATS",
    "DataFormat",
    "LoadedData",
    "class_split_formats",
    "register_data_format",
    "resolve_source",
]

_SOURCES = ("data_dir", "path", None)
_INPUTS = ("images", "vectors")


@dataclass
class LoadedData:
    """What a loader returns: training and test tensors, class names and the hold-out made.

    Attributes:
        train_x, train_y: single-label: the training *pool* (``int64 (N,)`` labels), made
            long-tailed and then standardised by :func:`~longtail.engine.datasets.build_data`;
            multi-label: the training set as used, standardised, float ``(N, L)`` targets.
        test_x, test_y: the test set (not subsampled).
        class_names: one name per class (or label).
        split: the record of the test hold-out of data without a test set of their own (written
            to ``split.json``), else ``None``.
        name: the bundle's name (default: the format's), e.g. the Mulan set read.
        feature_scaling: the scaling applied to feature vectors (``data.feature_scaling`` with
            ``auto`` resolved: ``standard``, ``maxabs`` or ``none``), ``None`` when not scaled so.
        train_dataset, test_dataset: lazy data (multi-label image manifests): the splits as
            datasets decoding one image at a time (standardised), ``train_x`` / ``test_x`` then
            empty ``(0, C, S, S)`` placeholders giving the input shape; ``None``: in memory.
        num_workers: ``DataLoader`` workers reading the lazy datasets.
        feature_names: the column of each feature (named tables), else ``None``.
        preprocessing: the steps from raw inputs to ``train_x`` / ``test_x`` when the loader
            scaled them itself (:class:`~longtail.engine.datasets.Preprocessing`), else ``None``.
        notes: remarks about the data for the user (:attr:`DataBundle.notes`), also warned as
            :class:`~longtail.engine.datasets.DataWarning`.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    class_names: list[str]
    split: dict[str, Any] | None = None
    name: str | None = None
    feature_scaling: str | None = None
    train_dataset: ImageFilesDataset | None = None
    test_dataset: ImageFilesDataset | None = None
    num_workers: int = 0
    feature_names: tuple[str, ...] | None = None
    preprocessing: Preprocessing | None = None
    notes: list[str] = field(default_factory=list)

    def hold_out(self, keep: Tensor, held: Tensor) -> LoadedData:
        """The training examples ``held`` as the test split, ``keep`` left for training (a
        validation split): in-memory tensors indexed, lazy datasets subset."""
        if self.train_dataset is None:
            return replace(
                self,
                train_x=self.train_x[keep].contiguous(),
                train_y=self.train_y[keep],
                test_x=self.train_x[held].contiguous(),
                test_y=self.train_y[held].contiguous(),
            )
        return replace(
            self,
            train_y=self.train_y[keep],
            test_y=self.train_y[held].contiguous(),
            train_dataset=self.train_dataset.subset(keep),
            test_dataset=self.train_dataset.subset(held),
        )

    def lazy_datasets(self, train_y: Tensor, test_y: Tensor) -> dict[str, Any]:
        """The :class:`~longtail.engine.datasets.DataBundle` arguments of lazy data whose final
        targets are ``train_y`` / ``test_y`` (e.g. with hidden labels): ``train_dataset``,
        ``eval_datasets``, ``num_workers``; ``{}`` for in-memory data."""
        if self.train_dataset is None or self.test_dataset is None:
            return {}
        return {
            "train_dataset": self.train_dataset.with_targets(train_y),
            "eval_datasets": {"test": self.test_dataset.with_targets(test_y)},
            "num_workers": self.num_workers,
        }


@dataclass(frozen=True)
class DataFormat:
    """A ``data.dataset`` value: its loader and what the config, the report and the runner need.

    Attributes:
        name: the ``data.dataset`` value.
        load: single-label loader ``(data config, source) -> LoadedData``; ``source`` is the
            checked ``data.data_dir`` folder or ``data.path`` file (:func:`resolve_source`),
            ``None`` when the format reads neither.
        load_multilabel: multi-label loader, same signature (targets ``(N, L)`` in ``{0, 1}``,
            ``-1`` unknown; inputs already standardised; images read lazily in
            :attr:`LoadedData.train_dataset` / :attr:`~LoadedData.test_dataset`).
        build: single-label, instead of :attr:`load`: ``(data config, source, balanced, seed) ->
            DataBundle`` builds the whole bundle (lazy image folders).
        source: ``"data_dir"`` (a folder, required), ``"path"`` (one file, required; then
            ``data.data_dir`` is refused) or ``None`` (bundled data).
        suffixes: with ``source="path"``: the file suffixes read (lower case), checked by the config.
        keys: the ``data.*`` keys that only formats listing them read; set (not at their default)
            with another format, the config refuses them. ``data.path`` is implied by
            ``source="path"``. A format listing ``feature_scaling`` has its single-label features
            scaled by :func:`~longtail.engine.datasets.scale_features` instead of
            :attr:`standardise` (its multi-label loader scales them itself).
        inputs: ``"images"`` or ``"vectors"`` (feature vectors: the report speaks of examples).
        standardise: ``(train_x, test_x) -> (train_x, test_x)`` applied to :attr:`load`'s tensors
            after the long-tailed subset is drawn (training statistics only).
        class_split: in memory, with a test split of its own whose classes a task can split into
            known and unknown (open set) or seen and unseen (metric learning).
        test_set: what its own test set is, in the report (``"the test set is ..."``).
        holds_out_test: it has no test set of its own and holds one out of the training data
            (``split.json``); a callable ``(data_dir) -> bool`` when that depends on the folder.
        idx_files: reads IDX files from ``data.data_dir`` (the runner checks their labels first).
        max_per_class_sizes_pool: ``data.max_per_class`` also sets the pool per class, so it is
            used without ``data.imbalance_factor``.
        own_data: reads the user's own files (image folders, tables...): listed after the
            benchmark formats.
        check: ``(config, labels) -> None``, further checks of the config (``labels``: the task's,
            ``"single"`` or ``"multi"``); raises ``ValueError("config key 'data.x': ...")``.
        doc: one line for listings.
        fetch: the public data set (a key of :data:`longtail.data.DATASETS`) whose files it reads,
            or ``(data config, data_dir) -> name or None``: a missing ``data.data_dir`` then
            suggests ``longtail data fetch NAME --to DIR``.
    """

    name: str
    load: Callable[[DataConfig, Path | None], LoadedData] | None = None
    load_multilabel: Callable[[DataConfig, Path | None], LoadedData] | None = None
    build: Callable[[DataConfig, Path | None, bool, int | None], DataBundle] | None = None
    source: str | None = "data_dir"
    suffixes: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    inputs: str = "images"
    standardise: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] = standardise_images
    class_split: bool = False
    test_set: str = "balanced"
    holds_out_test: bool | Callable[[Path], bool] = False
    idx_files: bool = False
    max_per_class_sizes_pool: bool = False
    own_data: bool = False
    check: Callable[[Config, str], None] | None = None
    doc: str = ""
    fetch: str | Callable[[DataConfig, Path], str | None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"DataFormat.name: a non-empty string, got {self.name!r}")
        if self.load is None and self.build is None and self.load_multilabel is None:
            raise ValueError(f"data format {self.name!r}: needs load, build or load_multilabel")
        if self.load is not None and self.build is not None:
            raise ValueError(f"data format {self.name!r}: give load or build, not both")
        if self.source not in _SOURCES:
            raise ValueError(f"data format {self.name!r}: source must be one of {_SOURCES}")
        if self.suffixes and self.source != "path":
            raise ValueError(f"data format {self.name!r}: suffixes need source='path'")
        if self.inputs not in _INPUTS:
            raise ValueError(f"data format {self.name!r}: inputs must be one of {_INPUTS}")

    @property
    def labels(self) -> str:
        """``"single"``, ``"multi"`` or ``"either"``: the tasks' labels its loaders serve."""
        single = self.load is not None or self.build is not None
        if single and self.load_multilabel is not None:
            return "either"
        return "single" if single else "multi"

    def serves(self, labels: str) -> bool:
        """It can load data for a task of ``labels`` (``"single"`` or ``"multi"``)."""
        return self.labels in (labels, "either")

    @property
    def used_keys(self) -> tuple[str, ...]:
        """:attr:`keys`, with ``path`` first when it reads ``data.path``."""
        implied = ("path",) if self.source == "path" and "path" not in self.keys else ()
        return implied + self.keys

    def holds_out(self, source: str | Path | None) -> bool:
        """:attr:`holds_out_test` for the ``data_dir`` / ``path`` ``source`` (``None``: unknown)."""
        if callable(self.holds_out_test):
            return bool(source) and self.holds_out_test(Path(str(source)).expanduser())
        return self.holds_out_test


class _FormatRegistry(Registry[DataFormat]):
    """Lists the benchmark formats first, then those of the user's own files, each group in
    registration order (a track's formats among the benchmarks)."""

    def __iter__(self) -> Iterator[str]:
        names = list(super().__iter__())
        return iter(sorted(names, key=lambda n: self._entries[n].own_data))


#: Every data format by ``data.dataset``: the built-in ones (registered by
#: :mod:`longtail.engine.datasets`) and those of the tracks (imported on first use).
DATA_FORMATS: Registry[DataFormat] = _FormatRegistry("data format", locations=("longtail.tracks",))


def register_data_format(fmt: DataFormat, *, overwrite: bool = False) -> DataFormat:
    """Add ``fmt`` to :data:`DATA_FORMATS` under its name (once, where it is defined)."""
    return DATA_FORMATS.register(fmt.name, fmt, overwrite=overwrite)


def class_split_formats() -> tuple[str, ...]:
    """The formats with :attr:`~DataFormat.class_split` (open set, metric learning), listed."""
    return tuple(name for name, fmt in DATA_FORMATS.items() if fmt.class_split)


def resolve_source(cfg: DataConfig, fmt: DataFormat) -> Path | None:
    """The file or folder ``fmt`` reads, checked: ``data.path`` or ``data.data_dir`` (``~``
    expanded), ``None`` for bundled data.

    Raises:
        ValueError: the key is not set (naming it); FileNotFoundError: no such file or folder
            (the message says ``--data-dir`` and, for a public data set, ``longtail data fetch``);
        NotADirectoryError / IsADirectoryError: a file given as the folder, or the reverse.
    """
    if fmt.source is None:
        return None
    if fmt.source == "path":
        if cfg.path is None:
            raise ValueError(f"data.path: required for dataset {cfg.dataset!r}")
        path = Path(cfg.path).expanduser()
        if path.is_dir():
            raise IsADirectoryError(f"data.path: {path} is a folder, not a file")
        if not path.is_file():
            raise FileNotFoundError(f"data.path: file not found: {path}")
        return path
    if cfg.data_dir is None:
        raise ValueError(f"data.data_dir: required for dataset {cfg.dataset!r}")
    directory = Path(cfg.data_dir).expanduser()
    if directory.is_file():
        raise NotADirectoryError(
            f"data.data_dir: {directory} is a file, not a folder (--data-dir names the folder "
            f"holding the {cfg.dataset} files)"
        )
    if not directory.is_dir():
        raise FileNotFoundError(
            f"data.data_dir: folder not found: {directory}; pass the data's folder with --data-dir "
            f"DIR{_fetch_hint(cfg, fmt, directory)}"
        )
    return directory


def _fetch_hint(cfg: DataConfig, fmt: DataFormat, directory: Path) -> str:
    """``", or download it: longtail data fetch NAME --to DIR ..."`` for a public data set."""
    name = fmt.fetch(cfg, directory) if callable(fmt.fetch) else fmt.fetch
    if name is None or name not in DATASETS:
        return ""
    return f", or download {name} first: longtail data fetch {name} --to DIR (then --data-dir DIR)"
