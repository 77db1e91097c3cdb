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
    ref_deep_diagonal,
    ref_for,
    ref_pack,
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


def pattern_mask(rng, dg, pattern):
    d = dg.num_patches
    if pattern == "diagonal":
        return np.eye(d, dtype=bool)
    if pattern == "banded":
        return banded_mask(dg)
    m = rng.random((d, d)) < 0.3
    return m | m.T


@given(deep_geometries(min_depth=1), st.sampled_from(ACTS),
       st.sampled_from([np.float64, np.float32]), st.booleans(),
       st.sampled_from(["diagonal", "banded", "random"]), st.integers(0, 2**31 - 1))
@settings(max_examples=30)
def test_every_plan_matches_reference(dg, act, dtype, with_y, pattern, seed):
    """K_R(Q) picks its plan from the support of Q (diagonal, banded, any); on every plan
    the engines agree with the all-pairs recursion (and the diagonal plan with the
    diagonal-only one), L = 1..3, strides 1-2, every padding."""
    from lkr import _deep_kernels

    rng = np.random.default_rng(seed)
    lams = tuple(rng.uniform(0.5, 2.0, dg.depth + 1))
    Xc = canonical(rng, dg, 4, dtype)
    Yc = canonical(rng, dg, 3, dtype) if with_y else None
    X = given_form(Xc, dg)
    Y = None if Yc is None else given_form(Yc, dg)
    tol = 10 * RTOL[np.dtype(dtype)]
    want = ref_for(dg, Xc, Yc, act, lams)
    d = dg.num_patches
    mask = pattern_mask(rng, dg, pattern)
    A = rng.standard_normal((d, d))
    Q = np.where(mask, A + A.T, 0.0)
    plan = _deep_kernels.plan_for(dg, Q)
    if pattern == "diagonal":
        assert plan.pattern == ("dense" if d == 1 else "diagonal") and plan.counts[-1] == d
        assert all(c <= n for c, n in zip(plan.counts, dg.num_positions))  # the read ones
        assert all(np.all(p[:, 0] == p[:, 1]) for p in plan.pairs)
        diag = ref_deep_diagonal(Xc, Yc, dg.input_shape, dg.filter_sizes, dg.strides,
                                 dg.paddings, act, lams)
        assert rel(diag, np.einsum("abii->abi", want)) < 1e-12  # the two references agree
    kw = dict(geometry=dg, activation=act, lambdas=lams)
    KR = lkr.renormalized_kernel(X, Y, Q=Q.astype(dtype), **kw)
    want_R = np.einsum("ij,abij->ab", Q, want) / (lams[-1] * d)
    assert KR.dtype == dtype and rel(KR, want_R) < tol
    W = rng.standard_normal(want.shape[:2])
    if Y is None:
        W = W + W.T
    G = _deep_kernels.local_kernel_adjoint(X, W.astype(dtype), Y=Y, lambda0=1.0, nthreads=None,
                                           pattern=mask, **kw)
    assert rel(G, np.einsum("ab,abij->ij", W, want) * mask) < tol
    if Y is None:
        Kd = lkr.renormalized_kernel_diag(X, Q=Q.astype(dtype), **kw)
        assert rel(Kd, np.diag(want_R)) < tol
        S, plan = _deep_kernels.pack_compressed(X, pattern=mask, **kw)
        i, j = np.triu_indices(d)
        cols = np.flatnonzero(mask[i, j])
        np.testing.assert_array_equal(plan.col_pairs, np.stack([i, j], 1)[cols])
        assert S.dtype == dtype and rel(S, ref_pack(want)[:, cols]) < tol


def test_plans_cost_what_they_should():
    """The pairs a plan computes: the diagonal plan n_l per layer; the dense one d^2 at the
    top and, below a stride-S layer, only the displacements S times those above; every
    chunk holds whole components (its gathers stay inside it)."""
    dg = DeepGeometry((12, 12), [3, 3, 2], [1, 2, 1], ["same", "circular", "valid"])
    n1, n2, d = dg.num_positions
    diag = dg.pair_plan("diagonal")
    assert diag.counts == (n1, n2, d)
    dense = dg.pair_plan("dense")
    assert dense.counts[2] == d * d and dense.counts[1] < n2 * n2 and dense.counts[0] < n1 * n1
    for lev in (1, 2):
        g, ch = dense.gathers[lev - 1], dense.chunks
        for c in range(len(ch) - 1):
            rows = g[ch[c, lev]:ch[c + 1, lev]]
            inside = (rows >= ch[c, lev - 1]) & (rows < ch[c + 1, lev - 1])
            assert np.all(inside | (rows == dense.counts[lev - 1]))
    with pytest.raises(ValueError, match="pattern must be"):
        dg.pair_plan("banded")
    with pytest.raises(ValueError, match=r"shape \(25, 25\)"):
        dg.pair_plan(np.ones((3, 3), dtype=bool))
    empty = dg.pair_plan(np.zeros((d, d), dtype=bool))
    assert empty.counts == (0, 0, 0)
    X = np.random.default_rng(0).standard_normal((3, 12, 12))
    np.testing.assert_array_equal(lkr.renormalized_kernel(X, Q=np.zeros((d, d)), geometry=dg),
                                  np.zeros((3, 3)))


_ISA_SCRIPT = """
import sys
import numpy as np
import lkr
dg = lkr.DeepGeometry((9, 8), [3, 2], [2, 1], ["same", "circular"], channels=2)
rng = np.random.default_rng(3)
out = {}
for dt in ("float64", "float32"):
    X = rng.standard_normal((21, 9, 8, 2)).astype(dt)
    Y = rng.standard_normal((10, 9, 8, 2)).astype(dt)
    d = dg.num_patches
    A = rng.standard_normal((d, d))
    Q = (A @ A.T / d).astype(dt)
    W = rng.standard_normal((21, 21)).astype(dt)
    for act in ("erf", "relu"):
        k = f"{dt}_{act}"
        kw = dict(geometry=dg, activation=act)
        out[k + "_X"], out[k + "_Y"], out[k + "_Q"], out[k + "_W"] = X, Y, Q, W + W.T
        out[k + "_KR"] = lkr.renormalized_kernel(X, Q=Q, **kw)
        out[k + "_KRI"] = lkr.renormalized_kernel(X, Y, Q=np.eye(d, dtype=dt), **kw)
        out[k + "_G"] = lkr.local_kernel_adjoint(X, W + W.T, **kw)
        out[k + "_K"] = lkr.local_kernel(X[:5], Y[:4], **kw)
np.savez(sys.argv[1], **out)
"""


@pytest.mark.parametrize("isa", ["base", "v3", "fast-math-off"])
def test_deep_every_instruction_set_path(isa, tmp_path):
    """The deep tiles are compiled per instruction set and honour the cap (LKR_ISA, or
    set_fast_math(False) within a process) like every other kernel: each path against the
    reference."""
    import os
    import subprocess
    import sys

    path = tmp_path / "out.npz"
    env = dict(os.environ)
    script = _ISA_SCRIPT
    if isa == "fast-math-off":
        script = script.replace("import lkr\n", "import lkr\nfrom lkr import backend\n"
                                "backend.core().set_fast_math(False)\n")
    else:
        env["LKR_ISA"] = isa
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, timeout=300)
    data = np.load(path)
    dg = DeepGeometry((9, 8), [3, 2], [2, 1], ["same", "circular"], channels=2)
    d = dg.num_patches
    for dt in ("float64", "float32"):
        tol = RTOL[np.dtype(dt)]
        for act in ("erf", "relu"):
            k = f"{dt}_{act}"
            X, Y, Q, W = (data[k + s].astype(np.float64) for s in ("_X", "_Y", "_Q", "_W"))
            lams = (1.0, 1.0, 1.0)
            want = ref_for(dg, X, None, act, lams)
            wxy = ref_for(dg, X, Y, act, lams)
            assert rel(data[k + "_KR"], np.einsum("ij,abij->ab", Q, want) / d) < tol, (isa, k)
            assert rel(data[k + "_KRI"], np.einsum("abii->ab", wxy) / d) < tol, (isa, k)
            assert rel(data[k + "_G"], np.einsum("ab,abij->ij", W, want)) < tol, (isa, k)
            assert rel(data[k + "_K"], wxy[:5, :4]) < tol, (isa, k)


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
    FX = g.flatten(X)
    layers = (np.ascontiguousarray(g.patch_index(), dtype=np.int32), [], [])
    plan = dg.pair_plan("dense").arrays()
    np.testing.assert_allclose(core.deep_local_kernel(FX, None, layers, plan, act, 0.7, 0),
                               lkr.local_kernel(X, geometry=g, lambda0=0.7, **kw),
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(core.deep_renormalized_kernel(FX, None, Q, layers, plan, act, 0.7,
                                                             2.0, 0),
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


def banded_mask(dg, width=1):
    """|i - j| <= width along each axis of the final grid (a banded Q)."""
    grid = np.indices(dg.output_shapes[-1]).reshape(dg.ndim, -1)
    return (np.abs(grid[:, :, None] - grid[:, None, :]) <= width).all(axis=0)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [
    ((7,), [3, 2], [1, 2], ["same", "valid"], 1, 7, None),
    ((6, 5), [(3, 2), 2, 1], [2, 1, 1], ["circular", "same", "valid"], 2, 6, 4),
    ((9,), [4, 3], [2, 1], ["periodic", "same"], 1, 3, 2),
    ((5, 5), [3], [1], ["same"], 1, 3, None),  # one layer through the deep kernels
    ((60,), [45, 3], [1, 2], ["same", "valid"], 1, 3, None),  # float64 rows too big to stage
], ids=["1d-sym", "2d-L3-cross", "1d-cross", "2d-L1", "1d-unstaged"])
@pytest.mark.parametrize("pattern", ["dense", "diagonal", "banded"])
def test_emulated_deep_kernels_match_core(emulator, poison, act, dtype, case, pattern):
    """The CUDA kernels (host emulator) against the C++ engine on every plan pattern."""
    from lkr._cuda.deep import DeepEngine
    from lkr._deep_kernels import _layers

    shape, filts, strides, pads, C, P, P2 = case
    dg = DeepGeometry(shape, filts, strides, pads, channels=C)
    rng = np.random.default_rng(7)
    lams = (0.9, 1.2, 1.1, 0.8)[:dg.depth + 1]
    layers = _layers(dg, lams, np)
    plan = dg.pair_plan(banded_mask(dg) if pattern == "banded" else pattern)
    Xc = canonical(rng, dg, P)
    Xc[0, :dg.layers[0].filter_size[0]] = 0  # zero-variance windows
    FX = np.ascontiguousarray(dg.flatten(Xc), dtype=dtype)
    FY = None if P2 is None else np.ascontiguousarray(dg.flatten(canonical(rng, dg, P2)),
                                                     dtype=dtype)
    d = dg.num_patches
    A = rng.standard_normal((d, d))
    keep = np.zeros((d, d), dtype=bool)
    keep[plan.pairs[-1][:, 0], plan.pairs[-1][:, 1]] = True
    Q = np.ascontiguousarray(np.where(keep, (A + A.T) / 2, 0), dtype=dtype)
    W = np.ascontiguousarray(rng.standard_normal((P, P if P2 is None else P2)), dtype=dtype)
    if P2 is None:
        W = np.ascontiguousarray((W + W.T) / 2)
    eng = DeepEngine(emulator)
    core = backend.core()
    tol = 10 * RTOL[np.dtype(dtype)]
    pa = plan.arrays()
    args = (layers, pa, act, lams[0])
    K = core.deep_local_kernel(FX, FY, *args, 0)
    assert rel(eng.deep_local_kernel(FX, FY, *args), K) < tol
    assert np.all(K[:, :, ~keep] == 0)  # entries off the plan
    assert rel(eng.deep_renormalized_kernel(FX, FY, Q, layers, pa, act, lams[0], lams[-1]),
               core.deep_renormalized_kernel(FX, FY, Q, layers, pa, act, lams[0], lams[-1],
                                             0)) < tol
    assert rel(eng.deep_local_kernel_adjoint(FX, FY, W, True, *args),
               core.deep_local_kernel_adjoint(FX, FY, W, True, *args, 0)) < tol
    if FY is None:
        assert rel(eng.deep_renormalized_kernel_diag(FX, Q, layers, pa, act, lams[0], lams[-1]),
                   core.deep_renormalized_kernel_diag(FX, Q, layers, pa, act, lams[0], lams[-1],
                                                      0)) < tol
        assert rel(eng.deep_pack_compressed(FX, plan.cols, plan.ncols, *args),
                   core.deep_pack_compressed(FX, plan.cols, plan.ncols, *args, 0)) < tol


def test_emulated_deep_rejects_bad_tables(emulator):
    from lkr._cuda.deep import DeepEngine

    dg = DeepGeometry((4,), [1, 2], [1, 2], "valid")
    FX = np.zeros((2, 4))
    index1 = np.arange(4, dtype=np.int32)[:, None]
    plan = dg.pair_plan().arrays()
    eng = DeepEngine(emulator)
    with pytest.raises(ValueError, match="outside"):
        eng.deep_local_kernel(FX, None, (index1, [np.full((2, 2), 9, np.int32)], [1.0]), plan,
                              "erf", 1.0)
    with pytest.raises(ValueError, match="outside"):
        eng.deep_local_kernel(FX, None, (index1 + 5, [t for t, _ in dg.gather_tables()], [1.0]),
                              plan, "erf", 1.0)
    bad = (plan[0], [np.full_like(plan[1][0], 99)], plan[2])
    with pytest.raises(ValueError, match="reads pairs outside"):
        eng.deep_local_kernel(FX, None, (index1, [t for t, _ in dg.gather_tables()], [1.0]), bad,
                              "erf", 1.0)


def test_upper_strides_thin_out_the_layer1_pairs():
    """After a stride-2 layer only layer-1 pairs with p = q (mod 2) per axis are read: the
    dense plan holds a quarter of them in 2D; the diagonal plan only the n_l diagonal pairs
    of every layer (the results are checked above and below)."""
    dg = DeepGeometry((28, 28), [5, 3], 2, padding="same")
    plan = dg.pair_plan("dense")
    p, q = plan.pairs[0][:, 0], plan.pairs[0][:, 1]
    assert len(p) <= 196 * 196 // 4 and plan.counts[1] == 49 * 49
    assert np.all((p // 14 - q // 14) % 2 == 0) and np.all((p % 14 - q % 14) % 2 == 0)
    assert set(range(196)) <= set(p[p == q].tolist())  # every position is read
    diag = dg.pair_plan("diagonal")
    assert diag.counts == (196, 49)
    assert np.all(diag.pairs[0][:, 0] == diag.pairs[0][:, 1])
    assert dg.pair_plan(np.eye(49, dtype=bool)) is diag  # cached, found by its mask
    assert DeepGeometry((5,), [3], [1], "valid").pair_plan().counts == (9,)


# -- on a GPU (bench/gpu_check.sh runs these with LKR_REQUIRE_GPU=1) -------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pattern", ["dense", "diagonal", "banded"])
def test_gpu_deep_kernels_match_core(pattern, dtype):
    """The deep kernel's CUDA path on the device, every plan pattern, CuPy in -> CuPy out,
    against the C++ engine; and the theories on CuPy arrays against NumPy."""
    from testing import skip_or_fail_without_gpu, to_numpy

    from lkr import _deep_kernels
    from lkr.theory import DeepCNNTheory, GPTheory

    skip_or_fail_without_gpu()
    import cupy as cp

    dg = DeepGeometry((12, 11), [(3, 3), 2, 2], [2, 1, (1, 2)], ["same", "circular", "valid"],
                      channels=2)
    rng = np.random.default_rng(11)
    d = dg.num_patches
    X = canonical(rng, dg, 37, dtype)
    Y = canonical(rng, dg, 23, dtype)
    mask = pattern_mask(rng, dg, pattern)
    A = rng.standard_normal((d, d))
    Q = np.where(mask, A + A.T, 0).astype(dtype)
    W = rng.standard_normal((37, 37)).astype(dtype)
    W = W + W.T
    Xd, Yd, Qd, Wd = (cp.asarray(a) for a in (X, Y, Q, W))
    kw = dict(geometry=dg, activation="erf", lambdas=(0.9, 1.1, 1.2, 0.8))
    tol = 10 * RTOL[np.dtype(dtype)]
    cases = [
        (lkr.renormalized_kernel(Xd, Q=Qd, **kw), lkr.renormalized_kernel(X, Q=Q, **kw)),
        (lkr.renormalized_kernel(Xd, Yd, Q=Qd, **kw), lkr.renormalized_kernel(X, Y, Q=Q, **kw)),
        (lkr.renormalized_kernel_diag(Xd, Q=Qd, **kw), lkr.renormalized_kernel_diag(X, Q=Q, **kw)),
        (_deep_kernels.local_kernel_adjoint(Xd, Wd, Y=None, lambda0=1.0, nthreads=None,
                                            pattern=mask, **kw),
         _deep_kernels.local_kernel_adjoint(X, W, Y=None, lambda0=1.0, nthreads=None,
                                            pattern=mask, **kw)),
        (_deep_kernels.pack_compressed(Xd, pattern=mask, **kw)[0],
         _deep_kernels.pack_compressed(X, pattern=mask, **kw)[0]),
    ]
    if pattern == "dense":
        cases.append((lkr.local_kernel(Xd[:9], Yd[:7], **kw), lkr.local_kernel(X[:9], Y[:7], **kw)))
    for got, want in cases:
        assert isinstance(got, cp.ndarray) and got.dtype == dtype and got.shape == want.shape
        got = to_numpy(got)
        assert np.isfinite(got).all() and rel(got, want) < tol
    if pattern == "diagonal" and dtype == np.float64:
        y = rng.standard_normal(37)
        for th_gpu, th_cpu in ((GPTheory("cnn", geometry=dg, temperature=0.1),
                                GPTheory("cnn", geometry=dg, temperature=0.1)),
                               (DeepCNNTheory(dg, 40, 0.1), DeepCNNTheory(dg, 40, 0.1))):
            th_gpu.fit(Xd, cp.asarray(y))
            th_cpu.fit(X, y)
            assert rel(to_numpy(th_gpu.predict(Yd).mean), th_cpu.predict(Y).mean) < 1e-9
