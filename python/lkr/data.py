"""Seeded tasks for the experiments: synthetic teachers and local MNIST / CIFAR-10 files.

Every task returns a :class:`Task` ``(X, y, X_test, y_test, info)`` with scalar labels, inputs
shaped ``(P, *input_shape)`` for one channel or ``(P, *input_shape, C)`` (channels last), and
an ``info`` dict that records every setting (JSON-friendly) together with ``input_shape``,
``channels`` and ``layout`` for building a :class:`lkr.PatchGeometry`.

Tasks (see :func:`load_task`)

``gaussian-linear``
    x ~ N(0, I_N0), y = t . x / sqrt(N0) with a random teacher t ~ N(0, I_N0): a linear
    task with no local structure.
``local-teacher``
    x ~ N(0, I_N0) and a one-hidden-layer CNN teacher with a few channels,
    f*(x) = (C* Np)^{-1/2} sum_{a, i} v_ai erf(w_a . x_i / sqrt(M)), on the same patches as
    the student, scaled so that the labels have unit variance: the labels depend on the
    input only through local (patch-wise) features.
``mnist:DIR``
    the IDX files of MNIST in DIR (``train-images-idx3-ubyte`` etc., optionally ``.gz``).
``cifar10:DIR``
    the CIFAR-10 python batches in DIR (``data_batch_1`` ... ``data_batch_5``,
    ``test_batch``), or in ``DIR/cifar-10-batches-py``; or the binary version
    (``data_batch_1.bin`` ..., ``test_batch.bin``, or in ``DIR/cifar-10-batches-bin``).
``digits``
    scikit-learn's UCI 8 x 8 digits (the ``data`` extra, :mod:`lkr.datasets_sklearn`).

Nothing is ever downloaded. For the image tasks, two groups of classes are selected (labels
+1 for the first, -1 for the second), images are optionally converted to grayscale and
block-averaged, and all pixels are standardised by one global mean and standard deviation
computed on the training subset only.
"""
from __future__ import annotations

import gzip
import math
import os
import pickle
import struct

import numpy as np

from . import _memory
from ._datafiles import read_cifar10_binary
from ._labels import one_hot
from ._task import DataError, Task, parse_classes
from ._task import block_average as _block_average
from ._task_options import TASK_OPTIONS, check_task_options  # noqa: F401 (re-exported)
from ._validate import count as _count
from ._validate import seed as _seed

# the UCI digits through scikit-learn (the optional extra `data`), a module of its own
from .datasets_sklearn import digits_groups, digits_sizes, load_digits, parse_class_groups

__all__ = ["Task", "load_task", "gaussian_linear", "local_teacher", "load_mnist", "load_cifar10",
           "read_idx", "parse_classes", "TASKS", "DataError", "check_task_options", "one_hot",
           "load_digits", "digits_groups", "digits_sizes", "parse_class_groups"]

#: task names accepted by :func:`load_task` (``mnist`` and ``cifar10`` take ``:DIR``)
TASKS = ("local-teacher", "gaussian-linear", "mnist:DIR", "cifar10:DIR", "digits")


# -- validation helpers -------------------------------------------------------------------


def _shape(input_shape):
    shape = (input_shape,) if np.ndim(input_shape) == 0 else tuple(input_shape)
    if len(shape) not in (1, 2):
        raise ValueError(f"input_shape must be (N0,) or (H, W), got {input_shape!r}")
    return tuple(_count(s, "input_shape") for s in shape)


def _prepare_images(name, X, Xt, grayscale, downsample):
    """Channels last, optional luma, block averaging, then one mean and one scale for all
    pixels from the training images only (no test leakage); one channel squeezed.
    Returns (X, Xt, channels, mean, std)."""
    if X.ndim == 3:
        X, Xt = X[..., None], Xt[..., None]
    if grayscale and X.shape[-1] == 3:
        lum = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma
        X, Xt = (X @ lum)[..., None], (Xt @ lum)[..., None]
    X, Xt = _block_average(X, downsample), _block_average(Xt, downsample)
    mean, std = float(X.mean()), float(X.std())
    if not std > 0:
        raise ValueError(f"{name}: the training images are constant; cannot standardise")
    X, Xt = (X - mean) / std, (Xt - mean) / std
    C = X.shape[-1]
    if C == 1:
        X, Xt = X[..., 0], Xt[..., 0]
    return X, Xt, C, mean, std


def _rng(seed):
    return np.random.default_rng(_seed(seed))


def _check_task_memory(name, P, P_test, bytes_of):
    """Refuse a task that would not fit the memory budget before drawing it (lkr._memory)."""
    _memory.check(bytes_of(P + P_test), f"the {name} task with P + P_test = {P + P_test} "
                  "samples", "use fewer samples",
                  size=("P + P_test", P + P_test, bytes_of))


# -- synthetic tasks ----------------------------------------------------------------------
def gaussian_linear(P, P_test, seed=0, *, input_shape=(64,)):
    """Gaussian inputs and a linear teacher, y = t . x / sqrt(N0).

    Parameters
    ----------
    P, P_test : int
        Training and test set sizes.
    seed : int
        Seeds the teacher and both sets (one stream, so the task is fixed by the seed).
    input_shape : tuple of int
        ``(N0,)`` or ``(H, W)``; one channel.

    Returns
    -------
    Task
    """
    P, P_test = _count(P, "P"), _count(P_test, "P_test")
    shape = _shape(input_shape)
    N0 = math.prod(shape)
    _check_task_memory("gaussian-linear", P, P_test, lambda n: _memory.task_bytes(n, N0))
    rng = _rng(seed)
    teacher = rng.standard_normal(N0)
    X = rng.standard_normal((P,) + shape)
    X_test = rng.standard_normal((P_test,) + shape)
    y = X.reshape(P, N0) @ teacher / math.sqrt(N0)
    y_test = X_test.reshape(P_test, N0) @ teacher / math.sqrt(N0)
    info = dict(task="gaussian-linear", input_shape=list(shape), channels=1,
                layout="channels_last", P=P, P_test=P_test, seed=int(seed),
                description="x ~ N(0, I), y = t.x / sqrt(N0), t ~ N(0, I)")
    return Task(X, y, X_test, y_test, info)


def _cnn_teacher(rng, geometry, channels):
    """The unscaled teacher f*(Z) of :func:`local_teacher`, drawing its weights from rng."""
    from scipy.special import erf

    M, Np = geometry.patch_size, geometry.num_patches
    W = rng.standard_normal((channels, M))
    V = rng.standard_normal((channels, Np))

    def teacher(Z):
        H = geometry.patches(Z) @ W.T / math.sqrt(M)  # (n, Np, C*)
        return np.einsum("nia,ai->n", erf(H), V) / math.sqrt(channels * Np)

    return teacher


def local_teacher(P, P_test, seed=0, *, input_shape=(64,), filter_size=4, stride=None,
                  boundary="periodic", teacher_channels=4, noise=0.0):
    """Gaussian inputs labelled by a one-hidden-layer erf CNN teacher.

    ``f*(x) = (C* Np)^{-1/2} sum_{a,i} v_ai erf(w_a . x_i / sqrt(M))`` with C* channels
    (filters ``w_a ~ N(0, I_M)`` shared over the patches x_i, readout ``v_ai ~ N(0, 1)``),
    the CNN convention of docs/theory.md. The labels are ``f*(x) / s + noise * N(0, 1)``
    where s, the teacher's output standard deviation, is estimated on 4096 extra inputs
    from the same seed, so that the noise-free labels have unit variance whatever the
    geometry.

    Parameters
    ----------
    P, P_test : int
    seed : int
    input_shape : tuple of int
        ``(N0,)`` or ``(H, W)``; one channel.
    filter_size, stride, boundary
        The teacher's patches (a :class:`lkr.PatchGeometry`); use the student's to give
        the CNN student the teacher's locality.
    teacher_channels : int
        C*, the teacher's hidden channels (a few: the target is a sum of a few local
        features, not a kernel-like function).
    noise : float
        Standard deviation of Gaussian label noise (added to train and test labels).

    Returns
    -------
    Task
        ``info["teacher"]`` records the teacher's geometry and size.
    """
    from .geometry import PatchGeometry

    P, P_test = _count(P, "P"), _count(P_test, "P_test")
    teacher_channels = _count(teacher_channels, "teacher_channels")
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    shape = _shape(input_shape)
    g = PatchGeometry(shape, filter_size, stride, boundary=boundary)
    M, Np = g.patch_size, g.num_patches
    _check_task_memory("local-teacher", P, P_test, lambda n: _memory.task_bytes(
        n, math.prod(shape), Np, M, teacher_channels))
    rng = _rng(seed)
    teacher = _cnn_teacher(rng, g, teacher_channels)
    scale = float(np.std(teacher(rng.standard_normal((4096,) + shape))))
    X = rng.standard_normal((P,) + shape)
    X_test = rng.standard_normal((P_test,) + shape)
    y = teacher(X) / scale
    y_test = teacher(X_test) / scale
    if noise > 0:
        y = y + noise * rng.standard_normal(P)
        y_test = y_test + noise * rng.standard_normal(P_test)
    info = dict(task="local-teacher", input_shape=list(shape), channels=1,
                layout="channels_last", P=P, P_test=P_test, seed=int(seed),
                teacher=dict(geometry=g.to_dict(), channels=teacher_channels,
                             activation="erf", output_scale=scale, noise=noise),
                description=f"x ~ N(0, I), y = erf CNN teacher with {teacher_channels} "
                            f"channels on {Np} patches of {M}, unit label variance")
    return Task(X, y, X_test, y_test, info)


# -- file readers -------------------------------------------------------------------------
def _open_maybe_gz(path):
    with open(path, "rb") as fh:
        head = fh.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code (0x08 = unsigned byte, ...), the number of
    dimensions, then each dimension as a big-endian 32-bit integer; the data follow.

    Raises
    ------
    DataError
        When the file is missing or its header or size does not fit the format; the
        message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"IDX file not found: {path}")
    try:
        with _open_maybe_gz(path) as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions, {len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = math.prod(dims) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != need:
        raise DataError(f"{path}: IDX header promises shape {dims} ({need} bytes of data) but "
                        f"the file holds {len(body)} bytes; the file is truncated or corrupt")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _find(directory, names, what):
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    raise DataError(f"{what} not found in {directory}: expected {names[0]}[.gz]"
                    + (f" (or {', '.join(names[1:])})" if len(names) > 1 else ""))


_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _read_mnist(directory):
    """(train images, train labels, test images, test labels), images (n, H, W) uint8."""
    out = []
    for key, names in _MNIST_FILES.items():
        path = _find(directory, names, f"MNIST {key.replace('_', ' ')} file")
        arr = read_idx(path)
        want = 3 if key.endswith("images") else 1
        if arr.ndim != want:
            raise DataError(f"{path}: expected a {want}-dimensional IDX array, got shape {arr.shape}")
        out.append((path, arr))
    for (pi, img), (pl, lab) in (out[0:2], out[2:4]):
        if img.shape[0] != lab.shape[0]:
            raise DataError(f"{pi} holds {img.shape[0]} images but {pl} holds {lab.shape[0]} labels")
    return [a for _, a in out]


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and NumPy arrays: a data file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.numeric", "_frombuffer"),
                # protocol 2 stores bytes as _codecs.encode(text, "latin1"): harmless
                ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _read_cifar_batch(path):
    try:
        with open(path, "rb") as fh:
            d = _ArrayUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OSError) as exc:
        raise DataError(f"{path} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path} is not a CIFAR-10 python batch (holds a {type(d).__name__}, not a dict)")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 python batch (no 'data' or 'labels' entry)")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DataError(f"{path}: expected data (n, 3072) and n labels, got data {data.shape} "
                        f"and labels {labels.shape}")
    # rows are 1024 red, 1024 green, 1024 blue values, each a 32 x 32 image in row-major order
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _read_cifar10(directory):
    """The python batches (``data_batch_1`` ...) or, when there are none, the binary
    version (``data_batch_1.bin`` ...), each also in its archive's folder."""
    sub = os.path.join(directory, "cifar-10-batches-py")
    if not os.path.isfile(os.path.join(directory, "test_batch")) and os.path.isdir(sub):
        directory = sub
    if not os.path.isfile(os.path.join(directory, "test_batch")) and (
            os.path.isfile(os.path.join(directory, "test_batch.bin"))
            or os.path.isdir(os.path.join(directory, "cifar-10-batches-bin"))):
        return read_cifar10_binary(directory)
    train = []
    for k in range(1, 6):
        path = os.path.join(directory, f"data_batch_{k}")
        if not os.path.isfile(path):
            raise DataError(f"CIFAR-10 training batch not found: {path}")
        train.append(_read_cifar_batch(path))
    path = os.path.join(directory, "test_batch")
    if not os.path.isfile(path):
        raise DataError(f"CIFAR-10 test batch not found: {path}")
    Xt, yt = _read_cifar_batch(path)
    return (np.concatenate([a for a, _ in train]), np.concatenate([b for _, b in train]), Xt, yt)


# -- image preprocessing --------------------------------------------------------------------
def _first_nonfinite(images):
    """(image, pixel index) of the first NaN or inf in an (n, ...) array, or None."""
    if images.dtype.kind != "f":
        return None
    bad = ~np.isfinite(images)
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return first[0], first[1:]


def _check_images(name, directory, train_x, test_x):
    """Refuse, before any computation, test images of another size than the training
    images and NaN or infinite pixels (which would otherwise surface much later, as
    'X and Y differ in input size' or 'the training images are constant')."""
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{name}: the test images in {directory} are {_dims(test_x)} but the "
                        f"training images are {_dims(train_x)}; both sets must have one size")
    for which, images in (("training", train_x), ("test", test_x)):
        bad = _first_nonfinite(images)
        if bad is not None:
            raise DataError(f"{name}: {which} image {bad[0]} in {directory} has a NaN or "
                            f"infinite pixel at {bad[1]}")


def _dims(images):
    return " x ".join(str(d) for d in images.shape[1:])


def _image_task(name, directory, arrays, P, P_test, seed, classes, grayscale, downsample,
                default_classes):
    train_x, train_y, test_x, test_y = arrays
    pos, neg = parse_classes(default_classes if classes is None else classes)
    _check_images(name, directory, train_x, test_x)
    rng = _rng(seed)

    def select(images, labels, n, which):
        keep = np.flatnonzero(np.isin(labels, pos + neg))
        if n > keep.size:
            raise ValueError(f"{name}: asked for {n} {which} samples but {directory} has only "
                             f"{keep.size} of classes {pos} vs {neg}")
        pick = np.sort(rng.choice(keep, size=n, replace=False))
        y = np.where(np.isin(labels[pick], pos), 1.0, -1.0)
        return images[pick].astype(np.float64), y

    X, y = select(train_x, train_y, P, "training")
    Xt, yt = select(test_x, test_y, P_test, "test")
    if y.size and np.all(y == y[0]):
        group, other = (pos, neg) if y[0] > 0 else (neg, pos)
        raise ValueError(f"{name}: all {P} training samples are of classes {group}, none of "
                         f"{other}: a two-class task needs both (raise P, or check that "
                         f"{directory} has labels {other})")
    X, Xt, C, mean, std = _prepare_images(name, X, Xt, grayscale, downsample)
    info = dict(task=name, directory=os.path.abspath(directory), input_shape=list(X.shape[1:3]),
                channels=int(C), layout="channels_last", P=P, P_test=P_test, seed=int(seed),
                classes=[list(pos), list(neg)], grayscale=bool(grayscale or C == 1),
                downsample=int(downsample), standardisation=dict(mean=mean, std=std),
                description=f"{name} classes {pos} (+1) vs {neg} (-1)")
    return Task(X, y, Xt, yt, info)


def _check_dir(directory, name):
    directory = os.fspath(directory)
    if not directory:
        raise ValueError(f"{name} needs a directory: '{name}:DIR'")
    if not os.path.isdir(directory):
        raise DataError(f"{name} directory not found: {directory}")
    return directory


def load_mnist(directory, P, P_test, seed=0, *, classes=None, downsample=1):
    """Two-class MNIST from the IDX files in a local directory.

    Parameters
    ----------
    directory : str or path
        Holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``).
    P, P_test : int
        Samples drawn (seeded, without replacement) from the training and test files.
    seed : int
    classes : see :func:`parse_classes`, default ``(0, 1)``
    downsample : int
        Block-average factor (1, 2, 4, 7 or 14 for 28 x 28 images).

    Returns
    -------
    Task
        Inputs (P, H, W), labels +-1, standardised by the training subset's pixel mean and
        standard deviation.
    """
    directory = _check_dir(directory, "mnist")
    downsample = _count(downsample, "downsample")
    return _image_task("mnist", directory, _read_mnist(directory), _count(P, "P"),
                       _count(P_test, "P_test"), seed, classes, True, downsample, (0, 1))


def load_cifar10(directory, P, P_test, seed=0, *, classes=None, grayscale=True, downsample=1):
    """Two-class CIFAR-10 from the python batches in a local directory.

    Parameters
    ----------
    directory : str or path
        Holds ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (or a
        ``cifar-10-batches-py`` folder with them). Only NumPy arrays are unpickled.
    P, P_test : int
    seed : int
    classes : see :func:`parse_classes`, default ``(3, 5)`` (cat vs dog)
    grayscale : bool
        Convert to luma (one channel); otherwise keep RGB as three channels (channels last).
    downsample : int
        Block-average factor (1, 2, 4, 8 or 16 for 32 x 32 images).

    Returns
    -------
    Task
        Inputs (P, H, W) or (P, H, W, 3), labels +-1, globally standardised.
    """
    directory = _check_dir(directory, "cifar10")
    downsample = _count(downsample, "downsample")
    return _image_task("cifar10", directory, _read_cifar10(directory), _count(P, "P"),
                       _count(P_test, "P_test"), seed, classes, bool(grayscale), downsample, (3, 5))


def load_task(spec, P, P_test, seed=0, *, input_shape=None, filter_size=4, stride=None,
              boundary="periodic", classes=None, grayscale=True, downsample=1,
              teacher_channels=4, noise=0.0) -> Task:
    """Build a task by name.

    Parameters
    ----------
    spec : str
        ``"local-teacher"``, ``"gaussian-linear"``, ``"mnist:DIR"``, ``"cifar10:DIR"`` or
        ``"digits"``.
    P, P_test : int
        Training and test set sizes.
    seed : int
    input_shape : tuple of int, optional
        For the synthetic tasks: ``(N0,)`` or ``(H, W)`` (default ``(64,)``). For the image
        tasks it is fixed by the files and ``downsample``; if given, it must agree.
    filter_size, stride, boundary
        The local teacher's patches (normally the student's geometry).
    classes, grayscale, downsample
        Image tasks only: see :func:`load_mnist` and :func:`load_cifar10`.
    teacher_channels, noise
        Local teacher only: see :func:`local_teacher`.

    Returns
    -------
    Task
        ``(X, y, X_test, y_test, info)``.

    Raises
    ------
    ValueError
        For an unknown task or bad sizes; :class:`DataError` (a ValueError) for missing or
        corrupt files.
    """
    if not isinstance(spec, str):
        raise TypeError(f"task must be a string, got {spec!r}")
    name, sep, arg = spec.partition(":")
    if name in ("local-teacher", "gaussian-linear"):
        if sep:
            raise ValueError(f"task {name!r} takes no ':' argument, got {spec!r}")
        shape = (64,) if input_shape is None else input_shape
        if name == "gaussian-linear":
            return gaussian_linear(P, P_test, seed, input_shape=shape)
        return local_teacher(P, P_test, seed, input_shape=shape, filter_size=filter_size,
                             stride=stride, boundary=boundary, teacher_channels=teacher_channels,
                             noise=noise)
    if name in ("mnist", "cifar10") or (name == "digits" and not sep):
        if name == "digits":  # scikit-learn's UCI digits (lkr.datasets_sklearn)
            task = load_digits(P, P_test, seed, classes=classes, downsample=downsample)
        elif not sep or not arg:
            raise ValueError(f"task {name!r} needs a local directory: '{name}:DIR' (nothing is "
                             "downloaded)")
        elif name == "mnist":
            task = load_mnist(arg, P, P_test, seed, classes=classes, downsample=downsample)
        else:
            task = load_cifar10(arg, P, P_test, seed, classes=classes, grayscale=grayscale,
                                downsample=downsample)
        if input_shape is not None and tuple(_shape(input_shape)) != tuple(task.info["input_shape"]):
            raise ValueError(f"input_shape {tuple(input_shape)} does not match the {name} images "
                             f"after downsampling: {tuple(task.info['input_shape'])}")
        return task
    raise ValueError(f"unknown task {spec!r}; choose one of {', '.join(TASKS)}")
