"""Data for long-tailed, multi-label and open-set experiments.

Loaders (each returns a :class:`LabeledTensors` ``(data, targets, class_names)``):

- :func:`load_digits`: scikit-learn's bundled 8x8 digits, the default data (no download);
- :func:`load_idx`: MNIST-format folders (MNIST, Fashion-MNIST, KMNIST), raw or gzip;
- :func:`load_cifar`, :func:`load_cifar10`, :func:`load_cifar100`: CIFAR python batches, read
  with a restricted unpickler;
- :func:`load_multilabel_arff`: multi-label ARFF (Mulan XML / MEKA ``-C``), dense or sparse;
- :func:`load_mat`: MATLAB ``.mat`` data sets.

Long-tailed subsets: :func:`make_long_tailed`, :func:`long_tailed_counts`, :func:`class_counts`.
Many-class pair sets (``K`` classes -> ``K * K`` side-by-side pair classes): :func:`make_pair_images`.
Samplers: :class:`ClassAwareSampler` and its instance-balanced, class-balanced, square-root and
progressively balanced variants. Downloads for users: :data:`DATASETS`, :func:`download`.
"""

from __future__ import annotations

from longtail.data._types import LabeledTensors
from longtail.data.arff import load_multilabel_arff, read_mulan_labels
from longtail.data.cifar import (
    RestrictedUnpickler,
    load_cifar,
    load_cifar10,
    load_cifar100,
    safe_unpickle,
)
from longtail.data.digits import load_digits
from longtail.data.download import DATASETS, RemoteFile, download, sha256sum
from longtail.data.idx import load_idx
from longtail.data.long_tailed import class_counts, long_tailed_counts, make_long_tailed
from longtail.data.mat import load_mat
from longtail.data.pairs import make_pair_images
from longtail.data.samplers import (
    ClassAwareSampler,
    ClassBalancedSampler,
    InstanceBalancedSampler,
    ProgressivelyBalancedSampler,
    SquareRootSampler,
)

__all__ = [
    "DATASETS",
    "ClassAwareSampler",
    "ClassBalancedSampler",
    "InstanceBalancedSampler",
    "LabeledTensors",
    "ProgressivelyBalancedSampler",
    "RemoteFile",
    "RestrictedUnpickler",
    "SquareRootSampler",
    "class_counts",
    "download",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_idx",
    "load_mat",
    "load_multilabel_arff",
    "long_tailed_counts",
    "make_long_tailed",
    "make_pair_images",
    "read_mulan_labels",
    "safe_unpickle",
    "sha256sum",
]
