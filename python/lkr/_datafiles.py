"""The reader of the CIFAR-10 binary version (``data_batch_1.bin`` ... ``test_batch.bin``).

Each binary file holds records of one label byte (0..9) and 3072 pixel bytes: 1024 red, 1024 green
and 1024 blue values, each a 32 x 32 image in row-major order. Used by
:func:`lkr.data.load_cifar10` when a directory has no python batches.
"""
from __future__ import annotations

import os

import numpy as np

from ._task import DataError

__all__ = ["read_cifar10_binary"]

_CIFAR_RECORD = 1 + 3072   # the binary version: a label byte, then 1024 R, G and B bytes


def _read_cifar_bin(path):
    """One batch of the CIFAR-10 binary version (``data_batch_1.bin``, ...): records of one
    label byte and 3072 pixel bytes (1024 red, green and blue values, 32 x 32 row-major)."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 binary batch {path}: {exc}") from None
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise DataError(f"{path} is not a CIFAR-10 binary batch: {raw.size} bytes is not a "
                        f"positive multiple of the record size {_CIFAR_RECORD}")
    rec = raw.reshape(-1, _CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label {int(labels.max())} is not a CIFAR-10 class (0..9)")
    return rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar10_binary(directory):
    """(train images, train labels, test images, test labels) of the CIFAR-10 binary
    version in directory (or its ``cifar-10-batches-bin`` folder); images (n, 32, 32, 3)."""
    sub = os.path.join(directory, "cifar-10-batches-bin")
    if not os.path.isfile(os.path.join(directory, "test_batch.bin")) and os.path.isdir(sub):
        directory = sub
    paths = [os.path.join(directory, f"data_batch_{k}.bin") for k in range(1, 6)]
    paths.append(os.path.join(directory, "test_batch.bin"))
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"CIFAR-10 binary batch not found: {path}")
    train = [_read_cifar_bin(p) for p in paths[:5]]
    Xt, yt = _read_cifar_bin(paths[5])
    return (np.concatenate([a for a, _ in train]), np.concatenate([b for _, b in train]), Xt, yt)
