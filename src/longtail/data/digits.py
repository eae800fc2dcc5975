"""scikit-learn's bundled 8x8 digits: the default data set of the project (no download)."""

from __future__ import annotations

import torch

from longtail.data._types import LabeledTensors

__all__ = ["load_digits"]


def load_digits() -> LabeledTensors:
    """Load scikit-learn's bundled handwritten digits (UCI optdigits test part).

    1,797 images of 8x8 pixels with 17 grey levels (0..16), 10 classes (about 180 each). No
    download: the file ships with scikit-learn, which is imported lazily.

    Returns:
        :class:`LabeledTensors` with ``data`` ``float32`` of shape ``(1797, 64)`` scaled to
        ``[0, 1]`` (pixel / 16), ``targets`` ``int64`` of shape ``(1797,)`` and class names
        ``("0", ..., "9")``.

    Raises:
        ImportError: if scikit-learn is not installed (``pip install longtail[cli]``).
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits  # optional: the cli extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digits needs scikit-learn; install it with `pip install longtail[cli]`"
        ) from exc
    bunch = _sk_load_digits()
    data = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    targets = torch.as_tensor(bunch.target, dtype=torch.int64)
    names = tuple(str(int(c)) for c in bunch.target_names)
    return LabeledTensors(data.contiguous(), targets.contiguous(), names)
