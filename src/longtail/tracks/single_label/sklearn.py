"""The scikit-learn reference of single-label vector data (``data.sklearn_reference``).

A multinomial logistic regression with scikit-learn's default settings (:data:`SETTINGS`: L2
penalty, ``C=1``, lbfgs, intercept; ``max_iter`` raised from 100 to 1000 so that it converges),
fitted on the bundle's training split (the features the methods see, as float64) and scored on its
evaluation split by :class:`~longtail.tracks.single_label.task.SingleLabelTask`'s own evaluation.

Its logits are the estimator's ``decision_function``: their softmax is ``predict_proba`` (with two
classes the one decision value ``d`` becomes the logits ``(-d/2, d/2)``, whose softmax is again
``predict_proba``). A class without a training example (the estimator never saw it) gets the logit
``lowest - 100``, probability ~0.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.reference import SklearnReference, evaluate_scores
from longtail.tracks.single_label.methods import METHODS
from longtail.tracks.single_label.task import SingleLabelTask

__all__ = ["SETTINGS", "fit_logistic_regression", "sklearn_logits", "sklearn_reference"]

#: The estimator's settings: scikit-learn's defaults, with room to converge.
SETTINGS: dict[str, Any] = {"C": 1.0, "solver": "lbfgs", "max_iter": 1000, "fit_intercept": True}


def fit_logistic_regression(x: np.ndarray, y: np.ndarray) -> Any:
    """A ``LogisticRegression(**SETTINGS)`` fitted on ``x`` (float64) and class indices ``y``;
    convergence warnings are caught (the caller reads ``n_iter_``)."""
    # optional dependency: scikit-learn (the cli extra)
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(**SETTINGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: recorded from n_iter_ instead
        clf.fit(x, y)
    return clf


def sklearn_logits(clf: Any, x: np.ndarray, num_classes: int) -> torch.Tensor:
    """``(N, num_classes)`` float64 logits of ``clf`` whose softmax is its ``predict_proba``."""
    d = np.asarray(clf.decision_function(x), dtype=np.float64)
    if d.ndim == 1:  # two classes seen: one decision value for the second
        d = np.stack([-d / 2, d / 2], axis=1)
    classes = np.asarray(clf.classes_, dtype=np.int64)
    out = np.full((len(x), num_classes), float(d.min()) - 100.0 if d.size else 0.0)
    out[:, classes] = d
    return torch.from_numpy(out)


def sklearn_reference(data: DataBundle, config: Config) -> SklearnReference:
    """Fit the multinomial logistic regression on ``data``'s training split and evaluate it."""
    x = data.train_x.reshape(len(data.train_x), -1).to(torch.float64).numpy()
    y = data.train_y.numpy()
    clf = fit_logistic_regression(x, y)
    test = data.test_x.reshape(len(data.test_x), -1).to(torch.float64).numpy()
    logits = sklearn_logits(clf, test, data.num_classes)
    task = SingleLabelTask(METHODS["erm"], data, config)  # erm: no post-hoc step on the logits
    n_iter = int(np.max(clf.n_iter_))
    seen = {int(c) for c in clf.classes_}
    binary = len(clf.classes_) == 2  # scikit-learn fits one logistic model for two classes
    return SklearnReference(
        evaluation=evaluate_scores(task, data, config, logits),
        estimator="LogisticRegression, "
        + ("binary (two classes)" if binary else "multinomial (softmax over the classes)"),
        settings={**SETTINGS, "penalty": "l2", "model": "binary" if binary else "multinomial"},
        info={
            "n_iter": n_iter,
            "converged": n_iter < int(SETTINGS["max_iter"]),
            "classes_without_training_example": [
                j for j in range(data.num_classes) if j not in seen
            ],
        },
    )
