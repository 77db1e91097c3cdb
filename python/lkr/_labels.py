"""Label helpers of :mod:`lkr.data` (kept apart so that data.py stays small)."""
from __future__ import annotations

import numpy as np

from ._validate import is_integer

__all__ = ["one_hot"]


def one_hot(labels, D):
    """One-hot targets for D-output theories: row mu has a 1 in column labels[mu].

    Parameters
    ----------
    labels : array_like of int, shape (P,)
        Class indices in 0 .. D - 1.
    D : int
        Number of classes (outputs), >= 1.

    Returns
    -------
    ndarray, shape (P, D), float64
    """
    if not is_integer(D) or D < 1:
        raise ValueError(f"D must be a positive integer (the number of classes), got {D!r}")
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be a 1-D array of integer class indices, got dtype "
                        f"{lab.dtype} and shape {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() >= D):
        raise ValueError(f"labels must lie in 0 .. {D - 1} for D = {D}, got values in "
                         f"[{lab.min()}, {lab.max()}]")
    out = np.zeros((lab.size, int(D)))
    out[np.arange(lab.size), lab] = 1.0
    return out
