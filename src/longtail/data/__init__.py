"""Data for long-tailed, multi-label and open-set experiments.

Loaders (each returns a :class:`LabeledTensors` ``(data, targets, class_names)``):

- :func:`load_digits`: scikit-learn's bundled 8x8 digits, the default data (no download);
- :func:`load_idx`: MNIST-format folders (MNIST, Fashion-MNIST, KMNIST), raw or gzip;
- :func:`load_cifar`, :func:`load_cifar10`, :func:`load_cifar100`: CIFAR python batches, read
  with a restricted unpickler;
- :func:`load_multilabel_arff`: multi-label ARFF (Mulan XML / MEKA ``-C``), dense or sparse;
- :func:`load_mulan`: a Mulan folder (``NAME-train.arff``, ``NAME-test.arff``, ``NAME.xml``),
  returns ``(train, test)`` after checking that both splits declare the same attributes
  (:func:`mulan_set_names`: the sets a folder holds);
- :func:`load_mat`: MATLAB ``.mat`` data sets;
- :func:`load_table` (:class:`TableData`): ``.csv`` / ``.npz`` / ``.parquet`` tables of features and
  labels, :func:`read_table` for the raw columns.

Image folders (``root/<class>/*.png``) are read lazily: :class:`ImageFolderDataset` (a torch
``Dataset`` decoding one image at a time with Pillow), :func:`scan_image_folder`,
:func:`image_channel_stats`, :func:`check_image_files` (every file readable, checked without
decoding them all); so are image manifests (a CSV of image paths and labels, single- or
multi-label): :func:`read_image_manifest` and :class:`ImageFilesDataset`.

Long-tailed subsets: :func:`make_long_tailed`, :func:`long_tailed_counts`, :func:`class_counts`.
Many-class pair sets (``K`` classes -> ``K * K`` side-by-side pair classes): :func:`make_pair_images`.
Multi-label tile images (``grid x grid`` items of a single-label set, labels = classes shown):
:func:`make_tile_images`, with long-tailed class probabilities :func:`long_tailed_label_probs`.
Samplers: :class:`ClassAwareSampler` and its instance-balanced, class-balanced, square-root and
progressively balanced variants; :class:`RepeatFactorSampler` (LVIS repeat-factor sampling) for
multi-label targets. Downloads for users: :data:`DATASETS` (:data:`DATASET_DESCRIPTIONS`),
:func:`download` (the command line: ``longtail data fetch NAME --to DIR``).
"""

from __future__ import annotations

from longtail.data._types import LabeledTensors
from longtail.data.arff import (
    load_mulan,
    load_multilabel_arff,
    mulan_set_names,
    read_mulan_labels,
)
from longtail.data.cifar import (
    RestrictedUnpickler,
    load_cifar,
    load_cifar10,
    load_cifar100,
    safe_unpickle,
)
from longtail.data.digits import load_digits
from longtail.data.download import (
    DATASET_DESCRIPTIONS,
    DATASETS,
    RemoteFile,
    download,
    sha256sum,
)
from longtail.data.idx import load_idx
from longtail.data.image_folder import (
    IMAGE_EXTENSIONS,
    ImageFilesDataset,
    ImageFolderDataset,
    check_image_files,
    image_channel_stats,
    scan_image_folder,
)
from longtail.data.image_manifest import ImageManifest, read_image_manifest
from longtail.data.long_tailed import class_counts, long_tailed_counts, make_long_tailed
from longtail.data.mat import load_mat
from longtail.data.oversample import smote_oversample
from longtail.data.pairs import make_pair_images
from longtail.data.samplers import (
    ClassAwareSampler,
    ClassBalancedSampler,
    InstanceBalancedSampler,
    ProgressivelyBalancedSampler,
    RepeatFactorSampler,
    SquareRootSampler,
)
from longtail.data.table import TableData, load_table, read_table
from longtail.data.tiles import long_tailed_label_probs, make_tile_images

__all__ = [
    "DATASETS",
    "DATASET_DESCRIPTIONS",
    "IMAGE_EXTENSIONS",
    "ClassAwareSampler",
    "ClassBalancedSampler",
    "ImageFilesDataset",
    "ImageFolderDataset",
    "ImageManifest",
    "InstanceBalancedSampler",
    "LabeledTensors",
    "ProgressivelyBalancedSampler",
    "RemoteFile",
    "RepeatFactorSampler",
    "RestrictedUnpickler",
    "SquareRootSampler",
    "TableData",
    "check_image_files",
    "class_counts",
    "download",
    "image_channel_stats",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_idx",
    "load_mat",
    "load_mulan",
    "load_multilabel_arff",
    "load_table",
    "long_tailed_counts",
    "long_tailed_label_probs",
    "make_long_tailed",
    "make_pair_images",
    "make_tile_images",
    "mulan_set_names",
    "read_image_manifest",
    "read_mulan_labels",
    "read_table",
    "safe_unpickle",
    "scan_image_folder",
    "sha256sum",
    "smote_oversample",
]
