"""Accuracy where the targets are classes (docs/theory.md section 5): which target codings
count as classes, and the accuracy and confusion counts of a posterior mean.

Only these codings are read as classes; any other target (regression values, a per-column
centred one-hot, soft labels) gives no accuracy, never a guess:

=====================  =============================================  ======================
coding                 targets                                        predicted class
=====================  =============================================  ======================
``"one-hot"``          (n, D), D >= 2, entries 0 / 1, one 1 per row   argmax of the mean row
``"+-1 one-hot"``      (n, D), D >= 2, entries -1 / +1, one +1 a row  argmax of the mean row
``"centred one-hot"``  (n, D), D >= 2, entries -1/D / 1 - 1/D, one    argmax of the mean row
                       1 - 1/D per row (one-hot minus 1/D)
``"+-1"``              (n,) or (n, 1), entries -1 / +1                +1 where mean > 0
=====================  =============================================  ======================

Exact comparisons (targets are labels, not measurements): 0.999 is not 1. The classes of
``"+-1"`` are ordered (+1, -1), as lkr's loaders put the first class group at +1; a D-output
coding's classes are its columns.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["class_coding", "class_scores"]

_CODINGS = {(0.0, 1.0): "one-hot", (-1.0, 1.0): "+-1 one-hot"}


def class_coding(Y) -> Optional[str]:
    """The class coding of targets ``Y`` (see the module table), or None when ``Y`` is not
    one of them (then there is no accuracy)."""
    Y = np.asarray(Y)
    if Y.size == 0 or not np.issubdtype(Y.dtype, np.number):
        return None
    if Y.ndim == 2 and Y.shape[1] == 1:
        Y = Y[:, 0]
    if Y.ndim == 1:
        return "+-1" if np.all((Y == 1) | (Y == -1)) else None
    if Y.ndim != 2:
        return None
    D = Y.shape[1]
    for (lo, hi), name in list(_CODINGS.items()) + [((-1.0 / D, 1.0 - 1.0 / D),
                                                    "centred one-hot")]:
        high = Y == hi
        if np.all(high | (Y == lo)) and np.all(high.sum(axis=1) == 1):
            return name
    return None


def class_scores(mean, Y) -> Optional[dict]:
    """``{"accuracy", "confusion", "class_coding"}`` of a posterior mean against class
    targets, or None when ``Y`` is not class-coded.

    ``confusion[k, l]`` counts the test points of class k predicted as l (an int array of
    shape (K, K), K = D, or 2 for ``"+-1"``); ``accuracy`` is its trace over the number of
    points.
    """
    coding = class_coding(Y)
    if coding is None:
        return None
    Y = np.asarray(Y)
    mean = np.asarray(mean, dtype=np.float64)
    if coding == "+-1":
        true = (Y.reshape(-1) < 0).astype(int)        # class 0: +1, class 1: -1
        pred = (mean.reshape(-1) <= 0).astype(int)
        K = 2
    else:
        true = np.argmax(Y, axis=1)
        pred = np.argmax(mean.reshape(Y.shape), axis=1)
        K = Y.shape[1]
    confusion = np.zeros((K, K), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    return {"accuracy": float(np.trace(confusion)) / len(true), "confusion": confusion,
            "class_coding": coding}
