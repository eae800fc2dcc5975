"""The data of a run: data formats as specs, and the in-memory tensors built from a ``data`` config.

A ``data.dataset`` value is a :class:`DataFormat` in :data:`DATA_FORMATS` (:mod:`.formats`): its
loader and what the config checks, the report and the runner need to know about it. The built-in
formats register themselves here, one module each: :mod:`.digits` (bundled with scikit-learn),
:mod:`.idx` (``fashion-mnist``, ``fashion-pairs``, ``mnist``, ``kmnist``, ``idx``), :mod:`.cifar`
(``cifar10``, ``cifar100``) and your own data (docs/cli.md, "Your own data"):
:mod:`.image_folder`, :mod:`.image_manifest`, :mod:`.table`, :mod:`.mat`. A track registers the formats only it serves
(the multi-label track: ``mulan``, ``fashion-tiles``).

:func:`build_data` (:mod:`.build`) turns a single-label format's pool into the long-tailed training
set of a run (:class:`DataBundle`, :mod:`.bundle`), standardised with the training subset's
statistics (:mod:`.standardise`; feature vectors as ``data.feature_scaling`` says). Data without
a test set of their own (``table``, ``mat``, ``image-folder`` without ``test/``) are split by :func:`stratified_split` (``data.test_fraction``,
seed ``data.subset_seed``) before the training pool is made long-tailed; the test rows (or files)
are kept in ``DataBundle.split`` and written to ``split.json`` in the run folder by
:func:`write_split` (:mod:`.splits`). The test set then follows the data's own class distribution
(it is not balanced).
"""

from __future__ import annotations

from longtail.engine.datasets.build import (
    _load_raw,
    _training_indices,
    build_data,
    class_order_permutation,
    load_pool,
    training_indices,
)
from longtail.engine.datasets.bundle import DataBundle, DataWarning
from longtail.engine.datasets.formats import (
    DATA_FORMATS,
    DataFormat,
    LoadedData,
    class_split_formats,
    register_data_format,
    resolve_source,
)
from longtail.engine.datasets.preprocessing import Preprocessing
from longtail.engine.datasets.splits import (
    hold_out_validation,
    split_record,
    stratified_split,
    validation_indices,
    write_split,
)
from longtail.engine.datasets.standardise import (
    FEATURE_SCALINGS,
    ScaledFeatures,
    choose_feature_scaling,
    scale_features,
    standardise_features,
    standardise_images,
    standardise_recorded,
)

# The built-in formats register themselves, in the order of listings (benchmark formats, then
# the user's own files: see DataFormat.own_data).
from longtail.engine.datasets.digits import DIGITS  # isort: skip
from longtail.engine.datasets.idx import FASHION_MNIST_NAMES, IDX_FORMATS  # isort: skip
from longtail.engine.datasets.cifar import CIFAR_FORMATS  # isort: skip
from longtail.engine.datasets.image_folder import IMAGE_FOLDER, IMAGE_STATS_SAMPLE  # isort: skip
from longtail.engine.datasets.image_manifest import IMAGE_MANIFEST  # isort: skip
from longtail.engine.datasets.table import TABLE, load_table_multilabel  # isort: skip
from longtail.engine.datasets.mat import MAT  # isort: skip

__all__ = [
    "CIFAR_FORMATS",
    "DATA_FORMATS",
    "DIGITS",
    "FASHION_MNIST_NAMES",
    "FEATURE_SCALINGS",
    "IDX_FORMATS",
    "IMAGE_FOLDER",
    "IMAGE_MANIFEST",
    "IMAGE_STATS_SAMPLE",
    "MAT",
    "TABLE",
    "DataBundle",
    "DataFormat",
    "DataWarning",
    "LoadedData",
    "Preprocessing",
    "ScaledFeatures",
    "_load_raw",
    "_training_indices",
    "build_data",
    "choose_feature_scaling",
    "class_order_permutation",
    "class_split_formats",
    "hold_out_validation",
    "load_pool",
    "load_table_multilabel",
    "register_data_format",
    "resolve_source",
    "scale_features",
    "split_record",
    "standardise_features",
    "standardise_images",
    "standardise_recorded",
    "stratified_split",
    "training_indices",
    "validation_indices",
    "write_split",
]
