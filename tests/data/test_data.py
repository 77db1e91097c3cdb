"""lkr.data: the synthetic tasks, and the MNIST (IDX) and CIFAR-10 (pickle) loaders on tiny
files written here in those exact formats."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
from data_files import make_cifar, make_mnist, write_idx

from lkr import PatchGeometry, data
from lkr.data import DataError


# -- synthetic tasks -----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["local-teacher", "gaussian-linear"])
def test_synthetic_tasks_are_seeded(spec):
    a = data.load_task(spec, 30, 20, seed=3)
    b = data.load_task(spec, 30, 20, seed=3)
    c = data.load_task(spec, 30, 20, seed=4)
    for u, v in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(u, v)
    assert not np.allclose(a.y, c.y)
    assert a.X.shape == (30, 64) and a.X_test.shape == (20, 64)
    assert a.y.shape == (30,) and a.y_test.shape == (20,)
    assert a.info["input_shape"] == [64] and a.info["channels"] == 1


def test_gaussian_linear_is_the_linear_teacher():
    # With more samples than inputs the labels determine t; the fit must be exact and t
    # of the size N(0, I) gives (|t|^2 ~ N0).
    X, y, Xt, yt, info = data.gaussian_linear(200, 50, seed=1, input_shape=(4, 4))
    assert X.shape == (200, 4, 4)
    A = X.reshape(200, 16) / 4.0
    t, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    np.testing.assert_allclose(A @ t, y, atol=1e-10)
    np.testing.assert_allclose(Xt.reshape(50, 16) / 4.0 @ t, yt, atol=1e-10)
    assert 4 < t @ t < 40


def test_local_teacher_is_a_sum_of_patch_functions():
    # f*(x) = sum_i g_i(x_i) for non-overlapping patches: the change caused by editing one
    # patch does not depend on the other patches. An FC teacher would fail this.
    g = PatchGeometry((16,), 4)
    teacher = data._cnn_teacher(np.random.default_rng(0), g, 3)
    rng = np.random.default_rng(1)
    x, z = rng.standard_normal((2, 16))
    new = rng.standard_normal(4)
    x2, z2 = x.copy(), z.copy()
    x2[4:8] = new
    z2[4:8] = new
    z[4:8] = x[4:8]
    fx, fx2, fz, fz2 = teacher(np.stack([x, x2, z, z2]))
    assert abs(fx2 - fx) > 1e-3
    np.testing.assert_allclose(fx2 - fx, fz2 - fz, atol=1e-12)


def test_local_teacher_scale_noise_and_2d():
    t = data.local_teacher(2000, 10, seed=0, input_shape=(8, 8), filter_size=2)
    assert t.X.shape == (2000, 8, 8)
    assert 0.85 < np.std(t.y) < 1.15  # unit variance by construction (estimated scale)
    n = data.local_teacher(2000, 10, seed=0, input_shape=(8, 8), filter_size=2, noise=0.5)
    np.testing.assert_array_equal(n.X, t.X)
    np.testing.assert_allclose(np.std(n.y - t.y), 0.5, rtol=0.1)
    assert t.info["teacher"]["geometry"]["filter_size"] == [2, 2]


@pytest.mark.parametrize("bad, match", [
    (dict(spec="nope"), "unknown task"),
    (dict(spec="mnist"), "needs a local directory"),
    (dict(spec="local-teacher:x"), "takes no"),
    (dict(spec="gaussian-linear", P=0), "P must be >= 1"),
    (dict(spec="gaussian-linear", P_test=-1), "P_test must be >= 1"),
])
def test_load_task_rejects(bad, match):
    kw = dict(spec="gaussian-linear", P=5, P_test=5)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        data.load_task(kw.pop("spec"), **kw)


# -- IDX / MNIST ---------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    path = tmp_path / "a-idx3-ubyte"
    write_idx(path, arr, compress)
    out = data.read_idx(path)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == np.uint8


def test_read_idx_errors_name_the_file(tmp_path):
    missing = tmp_path / "nothere"
    with pytest.raises(DataError, match="nothere"):
        data.read_idx(missing)
    bad = tmp_path / "badmagic"
    bad.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(DataError, match="badmagic.*not an IDX"):
        data.read_idx(bad)
    short = tmp_path / "truncated"
    write_idx(short, np.zeros((4, 5), np.uint8))
    short.write_bytes(short.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated.*truncated or corrupt"):
        data.read_idx(short)
    gz = tmp_path / "broken.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 100) + b"x" * 100)[:20])
    with pytest.raises(DataError, match="broken.gz"):
        data.read_idx(gz)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_loader(tmp_path, compress):
    train_x, train_y, test_x, test_y = make_mnist(tmp_path, compress=compress)
    X, y, Xt, yt, info = data.load_task(f"mnist:{tmp_path}", 8, 6, seed=0)
    assert X.shape == (8, 28, 28) and Xt.shape == (6, 28, 28)
    assert set(np.unique(y)) <= {-1.0, 1.0} and set(np.unique(yt)) <= {-1.0, 1.0}
    # the training subset is standardised exactly; the test set with the training statistics
    np.testing.assert_allclose([X.mean(), X.std()], [0.0, 1.0], atol=1e-12)
    mean, std = info["standardisation"]["mean"], info["standardisation"]["std"]
    # every image is one of the file's class-0/1 images, mapped back through the statistics
    for img, lab in zip(X, y):
        raw = np.rint(img * std + mean)
        hits = [k for k in range(len(train_x)) if np.array_equal(train_x[k], raw)]
        assert len(hits) == 1 and train_y[hits[0]] == (0 if lab > 0 else 1)
    for img, lab in zip(Xt, yt):
        raw = np.rint(img * std + mean)
        hits = [k for k in range(len(test_x)) if np.array_equal(test_x[k], raw)]
        assert len(hits) == 1 and test_y[hits[0]] == (0 if lab > 0 else 1)
    assert info["classes"] == [[0], [1]] and info["input_shape"] == [28, 28]


def test_mnist_classes_and_downsampling(tmp_path):
    train_x, train_y, *_ = make_mnist(tmp_path, n_train=60)
    X, y, Xt, yt, info = data.load_mnist(tmp_path, 30, 3, seed=1, classes="2,4,6:3,5",
                                         downsample=4)
    assert X.shape == (30, 7, 7) and info["input_shape"] == [7, 7]
    assert info["classes"] == [[2, 4, 6], [3, 5]]
    assert (y > 0).sum() == 18 and (y < 0).sum() == 12  # all of classes 2,4,6,3,5 (6 each)
    # block averages of the raw pixels, then the global standardisation
    keep = np.flatnonzero(np.isin(train_y, [2, 3, 4, 5, 6]))
    raw = train_x[keep].astype(float).reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(X, (raw - raw.mean()) / raw.std(), atol=1e-12)
    with pytest.raises(ValueError, match="downsample factor 3 does not divide"):
        data.load_mnist(tmp_path, 5, 3, downsample=3)
    with pytest.raises(ValueError, match="only 12 of classes"):
        data.load_mnist(tmp_path, 13, 3, classes=(7, 8))  # 6 sevens and 6 eights
    with pytest.raises(ValueError, match="two non-empty groups"):
        data.load_mnist(tmp_path, 5, 3, classes="1,2,3")
    with pytest.raises(ValueError, match="both groups or twice"):
        data.load_mnist(tmp_path, 5, 3, classes="1:1")


def test_mnist_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="directory not found"):
        data.load_task(f"mnist:{tmp_path / 'nope'}", 5, 5)
    make_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist(tmp_path, 5, 5)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(7, np.uint8))  # 30 images, 7 labels
    with pytest.raises(DataError, match="30 images but .*7 labels"):
        data.load_mnist(tmp_path, 5, 5)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        data.load_mnist(tmp_path, 5, 5)


# -- CIFAR-10 ------------------------------------------------------------------------------------
def test_cifar_loader_grayscale_and_color(tmp_path):
    batches = make_cifar(tmp_path)
    X, y, Xt, yt, info = data.load_task(f"cifar10:{tmp_path}", 10, 4, seed=0, classes="0,1:2,3")
    assert X.shape == (10, 32, 32) and info["channels"] == 1 and info["grayscale"]
    np.testing.assert_allclose([X.mean(), X.std()], [0.0, 1.0], atol=1e-12)
    # every image is the luma of one batch row (R, G, B planes, row-major), standardised
    # by the training subset's statistics, and its label follows its class group
    train = np.concatenate([batches[f"data_batch_{k}"][b"data"] for k in range(1, 6)])
    labels = np.concatenate([batches[f"data_batch_{k}"][b"labels"] for k in range(1, 6)])
    rgb_all = train.reshape(-1, 3, 32, 32).astype(float)
    gray_all = 0.299 * rgb_all[:, 0] + 0.587 * rgb_all[:, 1] + 0.114 * rgb_all[:, 2]
    mean, std = info["standardisation"]["mean"], info["standardisation"]["std"]
    pick = []
    for img, lab in zip(X, y):
        hits = [k for k in range(len(train)) if np.allclose(gray_all[k], img * std + mean)]
        assert len(hits) == 1
        pick.append(hits[0])
        assert lab == (1.0 if labels[hits[0]] in (0, 1) else -1.0)
        assert labels[hits[0]] in (0, 1, 2, 3)
    assert len(set(pick)) == 10
    rgb = rgb_all[sorted(pick)]
    np.testing.assert_allclose(sorted(pick), pick)  # the loader keeps file order

    Xc, *_, infoc = data.load_cifar10(tmp_path, 10, 4, seed=0, classes="0,1:2,3",
                                      grayscale=False, downsample=2)
    assert Xc.shape == (10, 16, 16, 3) and infoc["channels"] == 3
    rgb_last = rgb.transpose(0, 2, 3, 1).reshape(10, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(Xc, (rgb_last - rgb_last.mean()) / rgb_last.std(), atol=1e-12)


def test_cifar_subdirectory_and_errors(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    make_cifar(sub)
    X, *_ = data.load_cifar10(tmp_path, 3, 3, classes=(0, 1))
    assert X.shape == (3, 32, 32)
    os.remove(sub / "data_batch_3")
    with pytest.raises(DataError, match="data_batch_3"):
        data.load_cifar10(tmp_path, 3, 3)
    (sub / "data_batch_3").write_bytes(b"\x80\x02}q\x00")  # a pickle cut short
    with pytest.raises(DataError, match="data_batch_3.*not a CIFAR-10 python batch"):
        data.load_cifar10(tmp_path, 3, 3)
    with open(sub / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataError, match=r"data_batch_3: expected data \(n, 3072\)"):
        data.load_cifar10(tmp_path, 3, 3)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_pickle_protocols(tmp_path, protocol):
    # the published files are protocol 2 (Python 2); re-saved copies may use any protocol
    make_cifar(tmp_path, protocol=protocol)
    X, y, *_ = data.load_cifar10(tmp_path, 6, 4, classes=(0, 1), grayscale=False)
    assert X.shape == (6, 32, 32, 3) and set(y) <= {-1.0, 1.0}


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_cifar_unpickler_runs_no_code(tmp_path):
    make_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh)
    with pytest.raises(DataError, match="test_batch.*refusing to load"):
        data.load_cifar10(tmp_path, 3, 3)


def test_image_task_input_shape_must_agree(tmp_path):
    make_mnist(tmp_path)
    with pytest.raises(ValueError, match="does not match the mnist images"):
        data.load_task(f"mnist:{tmp_path}", 4, 4, input_shape=(28, 20))
    t = data.load_task(f"mnist:{tmp_path}", 4, 4, input_shape=(14, 14), downsample=2)
    assert t.X.shape == (4, 14, 14)


@pytest.mark.parametrize("text, want", [
    ("0,1", ((0,), (1,))), ("3:5", ((3,), (5,))), ("0,2,4:1,3", ((0, 2, 4), (1, 3))),
    ((7, 9), ((7,), (9,))), (((1, 2), (3,)), ((1, 2), (3,))),
])
def test_parse_classes(text, want):
    assert data.parse_classes(text) == want


@pytest.mark.parametrize("bad", ["a,b", "1", "1,2,3", "0,10", "1:1", ((1,), ())])
def test_parse_classes_rejects(bad):
    with pytest.raises(ValueError):
        data.parse_classes(bad)
