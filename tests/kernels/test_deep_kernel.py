"""DeepGeometry and the deep-CNN kernel (docs/deep-cnn.md section 4) against a plain NumPy
recursion: windows built by hand per axis, gather matrices S_t, all position pairs of every
layer; and the CUDA kernels in the host emulator against the C++ engine."""
import math

import numpy as np
import pytest
from deep_reference import (
    canonical,
    deep_geometries,
    gather_matrices,
    given_form,
    ref_for,
    rel,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from testing import RTOL

import lkr
from lkr import backend
from lkr.deep_geometry import DeepGeometry

ACTS = ["erf", "relu", "linear"]


# -- geometry ------------------------------------------------------------------------------
def test_deep_geometry_sizes():
    dg = DeepGeometry((28, 28), [5, 3], 2, padding=["same", "valid"])
    assert dg.depth == 2 and dg.output_shapes == ((14, 14), (6, 6)) and dg.num_patches == 36
    assert dg.layers[0].patch_size == 25 and dg.layers[1].input_shape == (14, 14)
    assert dg.num_positions == (196, 36)
    dg = DeepGeometry((28, 28), [(5, 5), (3, 3)], [(2, 2), (2, 2)], padding="same", channels=3)
    assert dg.output_shapes == ((14, 14), (7, 7)) and dg.patch_size == 75
    dg1 = DeepGeometry((16,), 4, 4, padding="periodic")
    assert dg1.depth == 1 and dg1.layers[0] == lkr.PatchGeometry((16,), 4, 4)
    assert DeepGeometry(**dg.to_dict()) == dg and hash(DeepGeometry(**dg.to_dict())) == hash(dg)
    assert dg.layer(1, channels=8).patch_size == 72


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(8,), filter_sizes=[3, 9], strides=1), r"layer 2 of 2 .*larger than"),
    (dict(input_shape=(8,), filter_sizes=[3, 3], strides=[1, 0]), "stride must be positive"),
    (dict(input_shape=(8,), filter_sizes=[3, 3], strides=[1, 1, 1]), "strides has 3 entries"),
    (dict(input_shape=(8,), filter_sizes=[], strides=1), "must not be empty"),
    (dict(input_shape=(8,), filter_sizes=[3, 3], padding="zeros"), "padding must be one of"),
    (dict(input_shape=(8,), filter_sizes=[3], layout="NCHW"), "layout must be one of"),
    (dict(input_shape=(4,), filter_sizes=[2, 2], strides=[4, 1]), r"layer 2 .*larger than"),
])
def test_deep_geometry_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeepGeometry(**kwargs)


def test_reference_gathers_agree_with_geometry_tables():
    """The test's hand-built windows and lkr's tables describe the same layers."""
    dg = DeepGeometry((9, 7), [3, (2, 3), 2], [2, 1, (1, 2)], ["same", "circular", "valid"])
    grid = dg.output_shapes[0]
    for (idx, k), g in zip(dg.gather_tables(), dg.layers[1:]):
        S, out = gather_matrices(grid, g.filter_size, g.stride, g.boundary)
        assert out == g.grid_shape and S.shape[0] == k
        n_in = math.prod(grid)
        for t in range(k):
            want = np.where(S[t].any(axis=1), S[t].argmax(axis=1), n_in)
            np.testing.assert_array_equal(idx[:, t], want)
        grid = out


# -- the kernel against the reference ------------------------------------------------------
@given(deep_geometries(), st.sampled_from(ACTS), st.sampled_from([np.float64, np.float32]),
       st.booleans(), st.integers(0, 2**31 - 1))
@settings(max_examples=25)
def test_deep_kernels_match_reference(dg, act, dtype, with_y, seed):
    rng = np.random.default_rng(seed)
    lams = tuple(rng.uniform(0.5, 2.0, dg.depth + 1))
    Xc = canonical(rng, dg, 3, dtype)
    Yc = canonical(rng, dg, 2, dtype) if with_y else None
    X = given_form(Xc, dg)
    Y = None if Yc is None else given_form(Yc, dg)
    tol = 10 * RTOL[np.dtype(dtype)]
    want = ref_for(dg, Xc, Yc, act, lams)
    K = lkr.local_kernel(X, Y, geometry=dg, activation=act, lambdas=lams)
    assert K.dtype == dtype and K.shape == want.shape
    assert rel(K, want) < tol
    d = dg.num_patches
    A = rng.standard_normal((d, d))
    Q = (A + A.T) / 2
    KR = lkr.renormalized_kernel(X, Y, Q=Q.astype(dtype), geometry=dg, activation=act, lambdas=lams)
    want_R = np.einsum("ij,abij->ab", Q, want) / (lams[-1] * d)
    assert rel(KR, want_R) < tol
    W = rng.standard_normal(want.shape[:2]).astype(dtype)
    G = lkr.local_kernel_adjoint(X, W, Y=Y, geometry=dg, activation=act, lambdas=lams)
    assert rel(G, np.einsum("ab,abij->ij", W.astype(np.float64), want)) < tol
    if Y is None:
        Ws = (W + W.T) / 2  # the symmetric path: each unordered pair once
        Gs = lkr.local_kernel_adjoint(X, Ws, geometry=dg, activation=act, lambdas=lams)
        assert rel(Gs, np.einsum("ab,abij->ij", Ws.astype(np.float64), want)) < tol
        Kd = lkr.renormalized_kernel_diag(X, Q=Q.astype(dtype), geometry=dg, activation=act,
                                          lambdas=lams)
        assert rel(Kd, np.diag(want_R)) < tol


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("pads", [("valid", "valid"), ("same", "same"), ("circular", "periodic")])
def test_deep_2d_strides_1_and_2(act, pads):
    rng = np.random.default_rng(1)
    dg = DeepGeometry((8, 7), [3, 2], [2, 1], list(pads), channels=2)
    Xc = canonical(rng, dg, 4)
    lams = (0.8, 1.3, 1.1)
    K = lkr.local_kernel(Xc, geometry=dg, activation=act, lambdas=lams)
    assert rel(K, ref_for(dg, Xc, None, act, lams)) < 1e-12


# -- one layer -----------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("padding", ["valid", "periodic", "same", "circular"])
def test_one_layer_equals_todays_kernels(act, padding):
    rng = np.random.default_rng(2)
    dg = DeepGeometry((9, 8), [(3, 2)], [(2, 2)], padding, channels=2)
    g = dg.layers[0]
    X = rng.standard_normal((5, 9, 8, 2))
    Q = np.eye(g.num_patches) + 0.1
    W = rng.standard_normal((5, 5))
    kw = dict(activation=act)
    np.testing.assert_array_equal(lkr.local_kernel(X, geometry=dg, lambdas=(0.7, 2.0), **kw),
                                  lkr.local_kernel(X, geometry=g, lambda0=0.7, **kw))
    np.testing.assert_array_equal(
        lkr.renormalized_kernel(X, Q=Q, geometry=dg, lambdas=(0.7, 2.0), **kw),
        lkr.renormalized_kernel(X, Q=Q, geometry=g, lambda0=0.7, lambda1=2.0, **kw))
    np.testing.assert_array_equal(
        lkr.renormalized_kernel_diag(X, Q=Q, geometry=dg, lambdas=(0.7, 2.0), **kw),
        lkr.renormalized_kernel_diag(X, Q=Q, geometry=g, lambda0=0.7, lambda1=2.0, **kw))
    np.testing.assert_array_equal(
        lkr.local_kernel_adjoint(X, W, geometry=dg, lambdas=(0.7, 2.0), **kw),
        lkr.local_kernel_adjoint(X, W, geometry=g, lambda0=0.7, **kw))
    # the deep engine itself, with no layer above the first, is today's kernel too
    core = backend.core()
    PX = np.ascontiguousarray(g.patches(X))
    np.testing.assert_allclose(core.deep_local_kernel(PX, None, [], [], act, 0.7, 0),
                               lkr.local_kernel(X, geometry=g, lambda0=0.7, **kw),
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(core.deep_renormalized_kernel(PX, None, Q, [], [], act, 0.7, 2.0, 0),
                               lkr.renormalized_kernel(X, Q=Q, geometry=g, lambda0=0.7,
                                                       lambda1=2.0, **kw), rtol=1e-13, atol=1e-15)


# -- invariants ----------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
def test_symmetry_psd_and_adjoint_identity(act):
    rng = np.random.default_rng(4)
    dg = DeepGeometry((10, 10), [3, 3], [2, 1], ["same", "circular"])
    X = rng.standard_normal((12, 10, 10))
    d = dg.num_patches
    A = rng.standard_normal((d, d))
    Q = A @ A.T / d + 0.1 * np.eye(d)
    lams = (1.0, 0.9, 1.4)
    KR = lkr.renormalized_kernel(X, Q=Q, geometry=dg, activation=act, lambdas=lams)
    np.testing.assert_array_equal(KR, KR.T)
    assert np.linalg.eigvalsh(KR).min() > -1e-12 * np.abs(KR).max()
    W = rng.standard_normal((12, 12))
    W = W + W.T
    G = lkr.local_kernel_adjoint(X, W, geometry=dg, activation=act, lambdas=lams)
    lhs = np.sum(W * KR)
    rhs = np.sum(Q * G) / (lams[-1] * d)
    assert abs(lhs - rhs) < 1e-12 * max(1.0, abs(lhs))
    K = lkr.local_kernel(X, geometry=dg, activation=act, lambdas=lams)
    np.testing.assert_array_equal(K, K.transpose(1, 0, 3, 2))


def test_results_do_not_depend_on_threads():
    rng = np.random.default_rng(5)
    dg = DeepGeometry((12,), [3, 2], [1, 2], "same")
    X = rng.standard_normal((40, 12))
    W = rng.standard_normal((40, 40))
    a = lkr.local_kernel_adjoint(X, W, geometry=dg, nthreads=1)
    b = lkr.local_kernel_adjoint(X, W, geometry=dg, nthreads=2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("act", ACTS)
def test_zero_variance_windows_give_the_limit(act):
    """Windows over zeros (and padding) have zero variance at every layer: the maps return
    0 there, never NaN."""
    dg = DeepGeometry((6, 6), [3, 3], [1, 2], "same")
    X = np.zeros((3, 6, 6))
    X[0, 0, 0] = 1.0
    K = lkr.local_kernel(X, geometry=dg, activation=act)
    assert np.isfinite(K).all()
    assert np.all(K[1:] == 0) and np.all(K[:, 1:] == 0)
    assert rel(K, ref_for(dg, X[..., None], None, act, (1.0, 1.0, 1.0))) < 1e-12


def test_memory_budget_and_bad_arguments():
    dg = DeepGeometry((8,), [3, 2], [1, 1], "same")
    X = np.ones((4, 8))
    with pytest.raises(MemoryError, match=r"\(4, 4, 8, 8\)"):
        lkr.local_kernel(X, geometry=dg, max_bytes=100)
    with pytest.raises(ValueError, match="lambdas must hold 3 values"):
        lkr.renormalized_kernel(X, Q=np.eye(8), geometry=dg, lambdas=(1.0, 1.0))
    with pytest.raises(ValueError, match="not both"):
        lkr.renormalized_kernel(X, Q=np.eye(8), geometry=dg, lambdas=(1, 1, 1), lambda1=2.0)
    with pytest.raises(ValueError, match=r"lambdas\[1\] must be positive"):
        lkr.local_kernel(X, geometry=dg, lambdas=(1, -1, 1))
    with pytest.raises(ValueError, match=r"Q must have shape \(8, 8\)"):
        lkr.renormalized_kernel(X, Q=np.eye(7), geometry=dg)
    with pytest.raises(ValueError, match="X has shape"):
        lkr.renormalized_kernel(np.ones((4, 9)), Q=np.eye(8), geometry=dg)
    with pytest.raises(ValueError, match="non-finite"):
        lkr.local_kernel(np.full((2, 8), np.nan), geometry=dg)


# -- the CUDA kernels, in the host emulator of tests/cuda_emulator.py ---------------------------
# the fixtures: an lkr._cuda Engine over the emulator (2 "SMs": 16 blocks, so that the
# larger cases below walk several pairs per block), and NaN-filled outputs


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [
    ((7,), [3, 2], [1, 2], ["same", "valid"], 1, 7, None),
    ((6, 5), [(3, 2), 2, 1], [2, 1, 1], ["circular", "same", "valid"], 2, 6, 4),
    ((9,), [4, 3], [2, 1], ["periodic", "same"], 1, 3, 2),
    ((5, 5), [3], [1], ["same"], 1, 3, None),  # one layer through the deep kernels
    ((60,), [45, 3], [1, 2], ["same", "valid"], 1, 3, None),  # float64 rows too big to stage
], ids=["1d-sym", "2d-L3-cross", "1d-cross", "2d-L1", "1d-unstaged"])
def test_emulated_deep_kernels_match_core(emulator, poison, act, dtype, case):
    from lkr._cuda.deep import DeepEngine
    from lkr._deep_kernels import _tables

    shape, filts, strides, pads, C, P, P2 = case
    dg = DeepGeometry(shape, filts, strides, pads, channels=C)
    rng = np.random.default_rng(7)
    lams = (0.9, 1.2, 1.1, 0.8)[:dg.depth + 1]
    tables, norms = _tables(dg, lams)
    PX = np.ascontiguousarray(dg.patches(canonical(rng, dg, P)), dtype=dtype)
    PY = None if P2 is None else np.ascontiguousarray(dg.patches(canonical(rng, dg, P2)),
                                                     dtype=dtype)
    PX[0, 0] = 0  # a zero-variance window
    d = dg.num_patches
    A = rng.standard_normal((d, d))
    Q = np.ascontiguousarray((A + A.T) / 2, dtype=dtype)
    W = np.ascontiguousarray(rng.standard_normal((P, P if P2 is None else P2)), dtype=dtype)
    if P2 is None:
        W = np.ascontiguousarray((W + W.T) / 2)
    eng = DeepEngine(emulator)
    core = backend.core()
    tol = 10 * RTOL[np.dtype(dtype)]
    args = (tables, norms, act, lams[0])
    assert rel(eng.deep_local_kernel(PX, PY, *args), core.deep_local_kernel(PX, PY, *args, 0)) < tol
    assert rel(eng.deep_renormalized_kernel(PX, PY, Q, tables, norms, act, lams[0], lams[-1]),
               core.deep_renormalized_kernel(PX, PY, Q, tables, norms, act, lams[0], lams[-1],
                                             0)) < tol
    assert rel(eng.deep_local_kernel_adjoint(PX, PY, W, True, *args),
               core.deep_local_kernel_adjoint(PX, PY, W, True, *args, 0)) < tol
    assert rel(eng.deep_renormalized_kernel_diag(PX, Q, tables, norms, act, lams[0], lams[-1]),
               core.deep_renormalized_kernel_diag(PX, Q, tables, norms, act, lams[0], lams[-1],
                                                  0)) < tol


def test_emulated_deep_rejects_bad_tables(emulator):
    from lkr._cuda.deep import DeepEngine

    PX = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match="outside"):
        DeepEngine(emulator).deep_local_kernel(PX, None, [np.full((2, 2), 9, np.int32)], [1.0],
                                               "erf", 1.0)


def test_upper_strides_thin_out_the_layer1_pairs():
    """After a stride-2 layer only layer-1 pairs with p = q (mod 2) per axis are read: the
    engines compute a quarter of them in 2D (the results are checked above)."""
    from lkr._cuda.deep import needed_layer1_pairs

    dg = DeepGeometry((28, 28), [5, 3], 2, padding="same")
    tables = [t for t, _ in dg.gather_tables()]
    flat = needed_layer1_pairs(tables, 196)
    p, q = np.divmod(flat, 196)
    assert flat.size <= 196 * 196 // 4
    assert np.all((p // 14 - q // 14) % 2 == 0) and np.all((p % 14 - q % 14) % 2 == 0)
    assert set(range(196)) <= set(p[p == q].tolist())  # every position is read
    assert needed_layer1_pairs([], 5).size == 25
