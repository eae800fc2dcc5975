"""The scikit-learn reference of multi-label vector data (``data.sklearn_reference``).

One-vs-rest: one binary logistic regression per label with scikit-learn's default settings
(:data:`SETTINGS`: L2 penalty, ``C=1``, lbfgs, intercept; ``max_iter`` raised from 100 to 1000 so
that it converges), fitted on the bundle's training split (the features the methods see, as
float64), on the rows where the label is known (a hidden entry, ``-1``, is left out of that label's
fit, as the losses ignore it). What ``OneVsRestClassifier(LogisticRegression())`` fits, label by
label, except for the hidden entries.

The logit of label ``j`` is its estimator's ``decision_function`` (its sigmoid is
``predict_proba``), scored on the evaluation split by
:class:`~longtail.tracks.multi_label.task.MultiLabelTask`'s own evaluation. A label whose known
training entries are all negative (or all positive) has no logistic fit: its logit is the constant
``log((p + 0.5) / (n - p + 0.5))`` of its ``p`` positives among ``n`` known entries (the smoothed
training rate), listed in ``info["constant_labels"]``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.reference import SklearnReference, evaluate_scores
from longtail.tracks.multi_label.methods import MULTILABEL_METHODS
from longtail.tracks.multi_label.task import MultiLabelTask

__all__ = ["SETTINGS", "one_vs_rest_logits", "sklearn_reference"]

#: The settings of every label's estimator: scikit-learn's defaults, with room to converge.
SETTINGS: dict[str, Any] = {"C": 1.0, "solver": "lbfgs", "max_iter": 1000, "fit_intercept": True}


def one_vs_rest_logits(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(N_test, L)`` float64 logits of one logistic regression per label, and what the fits did.

    ``train_y`` is ``(N, L)`` in ``{0, 1, -1}``; ``-1`` (hidden) rows are left out of their label's
    fit. Returns the logits and ``{"n_iter": max iterations, "converged": bool,
    "constant_labels": [j...]}``.
    """
    # optional dependency: scikit-learn (the cli extra)
    from sklearn.linear_model import LogisticRegression

    num_labels = train_y.shape[1]
    out = np.empty((len(test_x), num_labels), dtype=np.float64)
    constant: list[int] = []
    n_iter = 0
    for j in range(num_labels):
        known = train_y[:, j] >= 0
        y = train_y[known, j].astype(np.int64)
        p, n = int(y.sum()), len(y)
        if p == 0 or p == n:
            out[:, j] = math.log((p + 0.5) / (n - p + 0.5))
            constant.append(j)
            continue
        clf = LogisticRegression(**SETTINGS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: recorded from n_iter_ instead
            clf.fit(train_x[known], y)
        out[:, j] = clf.decision_function(test_x)
        n_iter = max(n_iter, int(np.max(clf.n_iter_)))
    info = {
        "n_iter": n_iter,
        "converged": n_iter < int(SETTINGS["max_iter"]),
        "constant_labels": constant,
    }
    return torch.from_numpy(out), info


def sklearn_reference(data: DataBundle, config: Config) -> SklearnReference:
    """Fit one logistic regression per label on ``data``'s training split and evaluate them."""
    x = data.train_x.reshape(len(data.train_x), -1).to(torch.float64).numpy()
    test = data.test_x.reshape(len(data.test_x), -1).to(torch.float64).numpy()
    logits, info = one_vs_rest_logits(x, data.train_y.numpy(), test)
    task = MultiLabelTask(MULTILABEL_METHODS["bce"], data, config)
    return SklearnReference(
        evaluation=evaluate_scores(task, data, config, logits),
        estimator="LogisticRegression, one per label (one-vs-rest; hidden entries left out of "
        "their label's fit)",
        settings={**SETTINGS, "penalty": "l2", "model": "one-vs-rest"},
        info=info,
    )
