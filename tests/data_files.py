"""Tiny MNIST (IDX) and CIFAR-10 (pickle) files in those exact formats, for the loader
tests."""
import gzip
import os
import pickle
import struct

import numpy as np


def write_idx(path, arr, compress=False):
    """IDX: 0, 0, type 0x08 (ubyte), ndim, big-endian uint32 dims, then the bytes."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(raw)


def make_mnist(directory, n_train=40, n_test=30, compress=False, seed=0):
    rng = np.random.default_rng(seed)
    train_x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    test_x = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    train_y = np.arange(n_train, dtype=np.uint8) % 10
    test_y = np.arange(n_test, dtype=np.uint8) % 10
    sfx = ".gz" if compress else ""
    for name, arr in (("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                      ("t10k-images-idx3-ubyte", test_x), ("t10k-labels-idx1-ubyte", test_y)):
        write_idx(os.path.join(directory, name + sfx), arr, compress)
    return train_x, train_y, test_x, test_y


def make_cifar(directory, n_per_batch=20, seed=0, protocol=2):
    """Five training batches and a test batch as the CIFAR-10 python version stores them:
    a pickled dict with bytes keys, b'data' (n, 3072) uint8 rows of R, G, B planes."""
    rng = np.random.default_rng(seed)
    batches = {}
    for k, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {b"batch_label": name.encode(),
             b"labels": [(i + k) % 10 for i in range(n_per_batch)],  # every class, twice
             b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
             b"filenames": [b"x.png"] * n_per_batch}
        with open(os.path.join(directory, name), "wb") as fh:
            pickle.dump(d, fh, protocol=protocol)
        batches[name] = d
    return batches


