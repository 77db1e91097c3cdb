"""Classification tasks as inputs and group indices, any number of class groups.

:func:`load_groups` serves ``lkr nets-vs-linearized`` (one output per group, one-hot
targets): scikit-learn's 8 x 8 digits (:func:`lkr.data.digits_groups`), and MNIST,
Fashion-MNIST (IDX files with MNIST's names) and CIFAR-10 (python or binary batches) from
a local directory. Nothing is downloaded. Selection and standardisation as
:func:`lkr.data.load_mnist`: images drawn without replacement by the seed, one pixel mean
and standard deviation from the training images.
"""
from __future__ import annotations

import os

import numpy as np

from ._validate import count as _count
from .data import _check_dir, _check_images, _prepare_images, _read_cifar10, _read_mnist, _rng
from .datasets_sklearn import _sklearn_digits, digits_groups, parse_class_groups

__all__ = ["load_groups", "available", "GROUP_TASKS"]

#: classification tasks of :func:`load_groups`
GROUP_TASKS = ("digits", "mnist:DIR", "fashion-mnist:DIR", "cifar10:DIR")


def _groups_of(labels, groups):
    group_of = np.full(10, -1)
    for k, g in enumerate(groups):
        group_of[list(g)] = k
    return group_of[labels]


def load_groups(spec, P, P_test, seed=0, *, classes="all", downsample=1, grayscale=True):
    """A classification task as inputs and *group indices*, any number of groups.

    Parameters
    ----------
    spec : str
        ``"digits"`` (scikit-learn's 8 x 8 digits, :func:`digits_groups`), ``"mnist:DIR"``
        or ``"fashion-mnist:DIR"`` (the four IDX files of MNIST or of Fashion-MNIST, which
        uses MNIST's file names, optionally ``.gz``), ``"cifar10:DIR"`` (the python or
        the binary batches). Nothing is downloaded.
    P, P_test : int
        Training and test images, drawn without replacement by the seed (the digits have
        no official split: P + P_test disjoint images of the chosen classes).
    classes : groups of classes, one output each (:func:`parse_class_groups`: ``"0,1"``,
        ``"0,2,4:1,3,5"``, ``"3:5:8"``, ``"all"``)
    downsample : int
        Block-average factor of the images.
    grayscale : bool
        CIFAR-10: luma (one channel) or RGB (three, channels last).

    Returns
    -------
    X, g, X_test, g_test, info
        Images (P, H, W) or (P, H, W, C), standardised by one mean and standard deviation
        of the training images; g the group index 0..K-1 of each image; info as
        :class:`Task`'s, with ``groups``.
    """
    if not isinstance(spec, str):
        raise TypeError(f"task must be a string, got {spec!r}")
    name, sep, arg = spec.partition(":")
    if name == "digits" and not sep:
        return digits_groups(P, P_test, seed, classes=classes, downsample=downsample)
    if name not in ("mnist", "fashion-mnist", "cifar10"):
        raise ValueError(f"task must be a classification task ({', '.join(GROUP_TASKS)}), "
                         f"got {spec!r}")
    if not sep or not arg:
        raise ValueError(f"task {name!r} needs a local directory: '{name}:DIR' (nothing is "
                         "downloaded)")
    P, P_test = _count(P, "P"), _count(P_test, "P_test")
    downsample = _count(downsample, "downsample")
    directory = _check_dir(arg, name)
    groups = parse_class_groups(classes)
    arrays = _read_cifar10(directory) if name == "cifar10" else _read_mnist(directory)
    train_x, train_y, test_x, test_y = arrays
    _check_images(name, directory, train_x, test_x)
    rng = _rng(seed)
    flat = [c for g in groups for c in g]

    def select(images, labels, n, which):
        keep = np.flatnonzero(np.isin(labels, flat))
        if n > keep.size:
            raise ValueError(f"{name}: asked for {n} {which} images but {directory} has only "
                             f"{keep.size} of classes {groups}")
        pick = np.sort(rng.choice(keep, size=n, replace=False))
        return images[pick].astype(np.float64), _groups_of(labels[pick], groups)

    X, g = select(train_x, train_y, P, "training")
    Xt, gt = select(test_x, test_y, P_test, "test")
    X, Xt, C, mean, std = _prepare_images(name, X, Xt, grayscale, downsample)
    info = dict(task=name, directory=os.path.abspath(directory), input_shape=list(X.shape[1:3]),
                channels=int(C), layout="channels_last", P=P, P_test=P_test, seed=int(seed),
                classes=[list(g) for g in groups], groups=len(groups),
                grayscale=bool(grayscale or C == 1), downsample=int(downsample),
                standardisation=dict(mean=mean, std=std),
                description=f"{name} " + " vs ".join(str(g) for g in groups))
    return X, g, Xt, gt, info


def available(spec, classes="all") -> tuple:
    """(training, test) images of the chosen classes in a :func:`load_groups` task; for
    the digits (no split) both are the number of images of those classes."""
    name, _, arg = spec.partition(":")
    groups = parse_class_groups(classes)
    flat = [c for g in groups for c in g]
    if name == "digits":
        n = int(np.isin(_sklearn_digits()[1], flat).sum())
        return n, n
    directory = _check_dir(arg, name)
    arrays = _read_cifar10(directory) if name == "cifar10" else _read_mnist(directory)
    return int(np.isin(arrays[1], flat).sum()), int(np.isin(arrays[3], flat).sum())


