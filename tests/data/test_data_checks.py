"""Loader checks before any computation (issue 14, item 6), with tiny generated files."""
import os
import struct

import numpy as np
import pytest
from data_files import make_cifar, make_mnist, write_idx

from lkr import data
from lkr.data import DataError


def write_idx_f8(path, arr):
    """IDX with type 0x0E (big-endian float64), which may hold NaN."""
    arr = np.ascontiguousarray(arr, dtype=">f8")
    raw = bytes([0, 0, 0x0E, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    with open(path, "wb") as fh:
        fh.write(raw)


def test_test_images_of_another_size(tmp_path):
    make_mnist(tmp_path)
    small = np.zeros((30, 20, 20), dtype=np.uint8)
    write_idx(os.path.join(tmp_path, "t10k-images-idx3-ubyte"), small)
    with pytest.raises(DataError, match=r"^mnist: the test images in .* are 20 x 20 but the "
                                        r"training images are 28 x 28; both sets must have one size$"):
        data.load_task(f"mnist:{tmp_path}", 4, 4)


@pytest.mark.parametrize("which, fname", [("training", "train-images-idx3-ubyte"),
                                          ("test", "t10k-images-idx3-ubyte")])
def test_nan_pixel_says_nan(tmp_path, which, fname):
    train_x, _, test_x, _ = make_mnist(tmp_path)
    images = (train_x if which == "training" else test_x).astype(np.float64)
    images[7, 3, 5] = np.nan
    write_idx_f8(os.path.join(tmp_path, fname), images)
    with pytest.raises(DataError, match=rf"^mnist: {which} image 7 in .* has a NaN or infinite "
                                        r"pixel at \(3, 5\)$"):
        data.load_mnist(tmp_path, 4, 4)


def test_float_images_load(tmp_path):
    train_x, *_ = make_mnist(tmp_path)
    write_idx_f8(os.path.join(tmp_path, "train-images-idx3-ubyte"), train_x / 255.0)
    assert np.isfinite(data.load_mnist(tmp_path, 4, 4).X).all()


def test_single_class_training_set(tmp_path):
    make_mnist(tmp_path)
    labels = np.zeros(40, dtype=np.uint8)  # every training image is a 0
    write_idx(os.path.join(tmp_path, "train-labels-idx1-ubyte"), labels)
    with pytest.raises(ValueError, match=r"all 4 training samples are of classes \(0,\), none "
                                         r"of \(1,\): a two-class task needs both"):
        data.load_task(f"mnist:{tmp_path}", 4, 4)


def test_single_class_cifar(tmp_path):
    make_cifar(tmp_path)
    with pytest.raises(ValueError, match=r"cifar10: all 1 training samples are of classes"):
        data.load_cifar10(tmp_path, 1, 2)


@pytest.mark.parametrize("task, option, value, where", [
    ("mnist:/d", "color", True, "cifar10 task;"),
    ("local-teacher", "color", True, "cifar10 task;"),
    ("gaussian-linear", "noise", 0.1, "local-teacher task;"),
    ("mnist:/d", "teacher_channels", 8, "local-teacher task;"),
    ("cifar10:/d", "noise", 0.5, "local-teacher task;"),
    ("local-teacher", "classes", "0,1", "mnist, cifar10 and digits tasks;"),
    ("gaussian-linear", "downsample", 2, "mnist, cifar10 and digits tasks;"),
])
def test_check_task_options_refuses(task, option, value, where):
    flag = "--" + option.replace("_", "-")
    with pytest.raises(ValueError, match=rf"^{flag} \({option}=.*\) applies only to the {where} "
                                         rf"task '{task}' would ignore it$"):
        data.check_task_options(task, **{option: value})


def test_check_task_options_accepts():
    data.check_task_options("cifar10:/d", color=True, classes="3,5", downsample=2)
    data.check_task_options("digits", classes="0,1", downsample=2)
    data.check_task_options("local-teacher", noise=0.1, teacher_channels=8)
    data.check_task_options("mnist:/d", color=False, noise=None, teacher_channels=None)
    with pytest.raises(TypeError, match="unknown task option 'colour'"):
        data.check_task_options("mnist:/d", colour=True)
