"""Real data shipped with scikit-learn: the UCI handwritten digits (``--task digits``).

:func:`sklearn.datasets.load_digits` holds 1,797 grey 8 x 8 images of the digits 0..9
(pixel values 0..16) inside the scikit-learn package: nothing is downloaded. scikit-learn
is an optional dependency: ``pip install scikit-learn`` (or ``pip install ".[data]"`` in
lkr's source folder).

Classes are chosen in groups, as for MNIST (:func:`lkr.data.parse_classes`): ``"0,1"``
(two classes), ``"0,2,4:1,3,5"`` (two groups), and here also any number of groups
(``"0:1:2"``) or ``"all"`` (ten groups, one per digit). Two groups give labels +1 / -1;
more give one-hot targets (P, K) (:func:`load_digits`). The images of the chosen classes
are shuffled by the seed and split into P training and P_test test images (disjoint, the
data set has no official split); pixels are standardised by one mean and standard deviation
of the training subset. Sizes left out (None) default to what the classes hold
(:func:`digits_sizes`); sizes that ask for more images than there are are refused with the
largest valid ones.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ._extras import install_hint
from ._labels import one_hot
from ._task import Task, block_average, parse_classes
from ._validate import count as _count
from ._validate import is_integer
from ._validate import seed as _seed

__all__ = ["load_digits", "digits_groups", "digits_sizes", "parse_class_groups",
           "DIGITS_DEFAULT_CLASSES", "DIGITS_DEFAULT_SIZES"]

#: default groups of :func:`load_digits` (as MNIST's default): 0 (+1) against 1 (-1)
DIGITS_DEFAULT_CLASSES = "0,1"

#: (P, P_test) when the classes hold enough images (:func:`digits_sizes`)
DIGITS_DEFAULT_SIZES = (400, 1000)

_MISSING = f"the digits task needs scikit-learn: {install_hint('data')}"


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
        if sep == ":" and len(parts) != len(text.split(sep)):
            raise ValueError(f"classes has an empty group (between two ':' or at an end), got "
                             f"{classes!r}")
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


def _available(groups):
    """The number of images of the chosen groups (labels from scikit-learn's copy)."""
    labels = _sklearn_digits()[1]
    return int(np.isin(labels, [c for g in groups for c in g]).sum())


def digits_sizes(classes=DIGITS_DEFAULT_CLASSES, P=None, P_test=None):
    """Training and test sizes for the digits of ``classes``: the sizes given, the missing
    ones filled in, all checked against the n images of the classes (about 180 a digit).

    Defaults: P = min(400, n // 2) and P_test = min(1000, n - P) (given P), or
    P = min(400, n - P_test) (given P_test). ``"0,1"`` (360 images): 180 and 180; ``"all"``
    (1797) and even against odd: 400 and 1000.

    Raises
    ------
    ValueError
        When P + P_test > n, with the largest valid sizes: the user's ratio scaled to n, and
        the user's P with the rest as test images (where P < n).
    """
    groups = parse_class_groups(DIGITS_DEFAULT_CLASSES if classes is None else classes)
    n = _available(groups)
    what = f"classes {_describe(groups)} have {n} images"
    P = None if P is None else _count(P, "P")
    P_test = None if P_test is None else _count(P_test, "P_test")
    half = f"P = {n // 2}, P_test = {n - n // 2}"
    # more images only come from more classes: not offered when every digit is in already
    more = "" if n >= _available(tuple((c,) for c in range(10))) else \
        ", or more classes (e.g. 'all')"
    if P is not None and P_test is None:
        if P >= n:
            raise ValueError(f"digits: P = {P} leaves no test image: {what}; use P <= {n - 1} "
                             f"(e.g. {half}){more}")
        P_test = min(DIGITS_DEFAULT_SIZES[1], n - P)
    elif P is None and P_test is not None:
        if P_test >= n:
            raise ValueError(f"digits: P_test = {P_test} leaves no training image: {what}; use "
                             f"P_test <= {n - 1} (e.g. {half}){more}")
        P = min(DIGITS_DEFAULT_SIZES[0], n - P_test)
    elif P is None:
        P = min(DIGITS_DEFAULT_SIZES[0], n // 2)
        P_test = min(DIGITS_DEFAULT_SIZES[1], n - P)
    if P + P_test > n:
        Pr = min(n - 1, max(1, (n * P) // (P + P_test)))
        tips = [f"P = {Pr}, P_test = {n - Pr} (your ratio)"]
        if P < n and n - P != n - Pr:
            tips.append(f"P = {P}, P_test = {n - P}")
        raise ValueError(f"digits: P + P_test = {P + P_test} images but {what}; the largest "
                         f"valid sizes: {' or '.join(tips)}{more.replace(',', ';', 1)}")
    return int(P), int(P_test)


def _describe(groups):
    return " vs ".join(",".join(map(str, g)) for g in groups)


def digits_groups(P, P_test, seed=0, *, classes=DIGITS_DEFAULT_CLASSES, downsample=1):
    """The digits as inputs and *group indices* (for any number of groups).

    Parameters
    ----------
    P, P_test : int or None
        Disjoint training and test images, drawn by a seeded shuffle of the images of the
        chosen classes (P + P_test at most their number, about 180 per digit); None: the
        default of :func:`digits_sizes`.
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
    P = None if P is None else _count(P, "P")
    P_test = None if P_test is None else _count(P_test, "P_test")
    downsample = _count(downsample, "downsample")
    seed = _seed(seed)
    groups = parse_class_groups(DIGITS_DEFAULT_CLASSES if classes is None else classes)
    P, P_test = digits_sizes(groups, P, P_test)
    images, labels = _sklearn_digits()
    keep = np.flatnonzero(np.isin(labels, [c for g in groups for c in g]))
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


def load_digits(P=None, P_test=None, seed=0, *, classes=None, downsample=1):
    """The digits as a :class:`lkr.data.Task`.

    Parameters
    ----------
    P, P_test : int or None
        As :func:`digits_groups` (None: sizes that fit the classes, :func:`digits_sizes`).
    seed, downsample : as :func:`digits_groups`.
    classes : str or sequence, optional
        Groups (see :func:`parse_class_groups`), default ``"0,1"``. Two groups give labels
        +1 (the first) / -1, as MNIST; more groups (``"all"``: the ten digits) give one-hot
        targets y of shape (P, K), 0 / 1 with the 1 in the column of the image's group, for
        the theories with K outputs.

    Examples
    --------
    >>> from lkr.data import load_digits
    >>> X, y, Xt, yt, info = load_digits(classes="all")   # 400 + 1000 images, y (400, 10)
    """
    groups = parse_class_groups(DIGITS_DEFAULT_CLASSES if classes is None else classes)
    X, g, Xt, gt, info = digits_groups(P, P_test, seed, classes=groups, downsample=downsample)
    if len(groups) == 2:
        info["description"] = f"digits classes {groups[0]} (+1) vs {groups[1]} (-1)"
        info["targets"] = "+-1"
        return Task(X, np.where(g == 0, 1.0, -1.0), Xt, np.where(gt == 0, 1.0, -1.0), info)
    K = len(groups)
    names = ":".join(",".join(map(str, g)) for g in groups)
    info["description"] = f"digits, {K} classes {names} (one-hot)"
    info["targets"] = "one-hot"
    return Task(X, one_hot(g, K), Xt, one_hot(gt, K), info)
