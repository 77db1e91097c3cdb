"""Real data shipped with scikit-learn: the UCI handwritten digits (``--task digits``).

:func:`sklearn.datasets.load_digits` holds 1,797 grey 8 x 8 images of the digits 0..9
(pixel values 0..16) inside the scikit-learn package: nothing is downloaded. scikit-learn
is an optional dependency, ``pip install "lkr[data]"``.

Classes are chosen in groups, as for MNIST (:func:`lkr.data.parse_classes`): ``"0,1"``
(two classes), ``"0,2,4:1,3,5"`` (two groups), and here also any number of groups
(``"0:1:2"``) or ``"all"`` (ten groups, one per digit). The images of the chosen classes
are shuffled by the seed and split into P training and P_test test images (disjoint, the
data set has no official split); pixels are standardised by one mean and standard deviation
of the training subset.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ._task import Task, block_average, parse_classes
from ._validate import count as _count
from ._validate import is_integer
from ._validate import seed as _seed

__all__ = ["load_digits", "digits_groups", "parse_class_groups", "DIGITS_DEFAULT_CLASSES"]

#: default groups of :func:`load_digits` (as MNIST's default): 0 (+1) against 1 (-1)
DIGITS_DEFAULT_CLASSES = "0,1"

_MISSING = "the digits task needs scikit-learn: pip install \"lkr[data]\" (or scikit-learn)"


def parse_class_groups(classes) -> Tuple[Tuple[int, ...], ...]:
    """Groups of digit labels, two or more, each group one output/target.

    ``"all"`` gives the ten single digits; ``"a,b,c"`` single digits; ``"a,c:b,d:e"``
    groups separated by ':'; or a sequence of ints / of sequences. Two groups are exactly
    :func:`lkr.data.parse_classes`.
    """
    if isinstance(classes, str) and classes.strip().lower() == "all":
        return tuple((c,) for c in range(10))
    if isinstance(classes, str):
        text = classes.strip()
        sep = ":" if ":" in text else ","
        parts = [p for p in text.split(sep) if p.strip()]
        try:
            groups = [tuple(int(c) for c in p.split(",") if c.strip()) for p in parts]
        except ValueError:
            raise ValueError(f"classes must look like '0,1', '0,2,4:1,3,5' or 'all', got "
                             f"{classes!r}") from None
    else:
        try:
            groups = [tuple(g) if np.ndim(g) else (g,) for g in classes]
        except TypeError:
            raise TypeError(f"classes must be a string or a sequence of groups, got "
                            f"{classes!r}") from None
    if len(groups) == 2:
        return parse_classes(groups)
    if len(groups) < 2 or not all(groups):
        raise ValueError(f"classes must name at least two non-empty groups, got {classes!r}")
    flat = [c for g in groups for c in g]
    for c in flat:
        if not is_integer(c) or not 0 <= c <= 9:
            raise ValueError(f"class labels must be integers 0..9, got {c!r}")
    if len(set(flat)) != len(flat):
        raise ValueError(f"a class appears twice: {classes!r}")
    return tuple(tuple(int(c) for c in g) for g in groups)


def _sklearn_digits():
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise ImportError(_MISSING) from None
    d = _load()
    return np.asarray(d.images, dtype=np.float64), np.asarray(d.target, dtype=np.int64)


def digits_groups(P, P_test, seed=0, *, classes=DIGITS_DEFAULT_CLASSES, downsample=1):
    """The digits as inputs and *group indices* (for any number of groups).

    Parameters
    ----------
    P, P_test : int
        Disjoint training and test images, drawn by a seeded shuffle of the images of the
        chosen classes (P + P_test at most their number, about 180 per digit).
    seed : int
    classes : see :func:`parse_class_groups`
    downsample : int
        Block-average factor (1, 2 or 4 for 8 x 8 images).

    Returns
    -------
    X, g, X_test, g_test, info
        X (P, H, W) standardised; g (P,) int, the group index 0..K-1 of each image;
        info as :class:`lkr.data.Task`'s (with ``groups``).
    """
    P, P_test = _count(P, "P"), _count(P_test, "P_test")
    downsample = _count(downsample, "downsample")
    seed = _seed(seed)
    groups = parse_class_groups(DIGITS_DEFAULT_CLASSES if classes is None else classes)
    images, labels = _sklearn_digits()
    keep = np.flatnonzero(np.isin(labels, [c for g in groups for c in g]))
    if P + P_test > keep.size:
        raise ValueError(f"digits: asked for P + P_test = {P + P_test} images but classes "
                         f"{groups} have only {keep.size}")
    pick = np.random.default_rng(int(seed)).permutation(keep)
    tr, te = np.sort(pick[:P]), np.sort(pick[P:P + P_test])
    group_of = np.full(10, -1)
    for k, g in enumerate(groups):
        group_of[list(g)] = k
    X = block_average(images[tr][..., None], downsample)[..., 0]
    Xt = block_average(images[te][..., None], downsample)[..., 0]
    # one mean and scale for all pixels, from the training subset only (no test leakage)
    mean, std = float(X.mean()), float(X.std())
    if not std > 0:
        raise ValueError("digits: the training images are constant; cannot standardise")
    X, Xt = (X - mean) / std, (Xt - mean) / std
    info = dict(task="digits", source="sklearn.datasets.load_digits (UCI, 1797 images 8x8)",
                input_shape=list(X.shape[1:3]), channels=1, layout="channels_last", P=P,
                P_test=P_test, seed=int(seed), classes=[list(g) for g in groups],
                groups=len(groups), grayscale=True, downsample=downsample,
                standardisation=dict(mean=mean, std=std),
                description="digits " + " vs ".join(str(g) for g in groups))
    return X, group_of[labels[tr]], Xt, group_of[labels[te]], info


def load_digits(P, P_test, seed=0, *, classes=None, downsample=1):
    """Two groups of the digits as a :class:`lkr.data.Task` (labels +1 / -1, as MNIST).

    classes : two groups (see :func:`lkr.data.parse_classes`), default ``"0,1"``. For more
    groups use :func:`digits_groups` (scalar +-1 labels need two).
    """
    groups = parse_classes(DIGITS_DEFAULT_CLASSES if classes is None else classes)
    X, g, Xt, gt, info = digits_groups(P, P_test, seed, classes=groups, downsample=downsample)
    info["description"] = f"digits classes {groups[0]} (+1) vs {groups[1]} (-1)"
    return Task(X, np.where(g == 0, 1.0, -1.0), Xt, np.where(gt == 0, 1.0, -1.0), info)
