"""The compiled training step (csrc/lkr/train_step.hpp), its task pool and the Philox
Langevin update (csrc/lkr/noise.hpp): values against NumPy references, bit-identical
results for every thread count, the BLAS and the plain-loop products, and the noise's
distribution."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import erf

import lkr
from lkr import backend, nets, train
from lkr._blas import blas_threads, gemm_capsules

eng = backend.implementation(np)


def _sigma(act, h):
    if act == "erf":
        return erf(h), 2 / math.sqrt(math.pi) * np.exp(-h * h)
    if act == "relu":
        return np.maximum(h, 0), (h > 0).astype(float)
    return h, np.ones_like(h)


def _reference(Z, W, u, y, R, scale, act):
    """f, gu, gW of train_step.hpp in float64 NumPy."""
    Z, W, u, y = (np.asarray(a, dtype=np.float64) for a in (Z, W, u, y))
    C, Kout, _ = W.shape
    n = Z.shape[0] // R
    H = (Z[None] @ W.transpose(0, 2, 1)).reshape(C, n, R * Kout)
    S, Dp = _sigma(act, H)
    f = scale * (S * u[:, None, :]).sum(-1)
    rc = scale * (f - y)
    gu = np.einsum("cp,cpk->ck", rc, S)
    D = (Dp * u[:, None, :] * rc[:, :, None]).reshape(C, n * R, Kout)
    gW = D.transpose(0, 2, 1) @ Z
    return f, gu, gW


def _problem(C, n, R, Kin, Kout, ychains, dtype, seed):
    rng = np.random.default_rng(seed)
    Z = (rng.standard_normal((n * R, Kin)) / math.sqrt(Kin)).astype(dtype)
    W = rng.standard_normal((C, Kout, Kin)).astype(dtype)
    u = rng.standard_normal((C, R * Kout)).astype(dtype)
    y = rng.standard_normal((C if ychains else 1, n)).astype(dtype)
    return Z, W, u, y


def _step(Z, W, u, y, R, scale, act, nthreads):
    C, Kout, _ = W.shape
    n = Z.shape[0] // R
    H = np.empty((C, n, R * Kout), dtype=W.dtype)
    S = np.empty_like(H)
    with blas_threads(1):
        return eng.train_step(Z, W, u, y, H, S, rows_per_sample=R, scale=scale, activation=act,
                              nthreads=nthreads)


@pytest.fixture(params=["blas", "loops"])
def products(request):
    """The step's products through SciPy's BLAS, or through the plain loops."""
    if request.param == "loops":
        eng.set_gemm(None, None)
    else:
        eng.set_gemm(*gemm_capsules())
    yield request.param
    eng.set_gemm(*gemm_capsules())


@settings(max_examples=25, deadline=None)
@given(C=st.integers(1, 3), n=st.integers(1, 70), R=st.integers(1, 9), Kin=st.integers(1, 40),
       Kout=st.integers(1, 40), ychains=st.booleans(),
       act=st.sampled_from(["erf", "relu", "linear"]), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 2**16))
def test_train_step_matches_numpy(C, n, R, Kin, Kout, ychains, act, dtype, seed):
    eng.set_gemm(*gemm_capsules())
    Z, W, u, y = _problem(C, n, R, Kin, Kout, ychains, dtype, seed)
    got = _step(Z, W, u, y, R, 0.37, act, 2)
    ref = _reference(Z, W, u, y, R, 0.37, act)
    rtol = 1e-12 if dtype == np.float64 else 2e-4
    for g, r in zip(got, ref):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * max(1.0, np.abs(r).max()))


@pytest.mark.parametrize("shape", [(2, 500, 16, 64, 64), (1, 300, 1, 784, 512), (3, 37, 5, 130, 300)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_train_step_is_identical_for_any_thread_count(shape, dtype, products):
    # the bench's CNN (one phase) and FC (three phases) tilings, and an odd shape
    C, n, R, Kin, Kout = shape
    Z, W, u, y = _problem(C, n, R, Kin, Kout, True, dtype, 1)
    runs = [_step(Z, W, u, y, R, 0.1, "erf", nt) for nt in (1, 2, 3, 5)]
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            np.testing.assert_array_equal(a, b)
    ref = _reference(Z, W, u, y, R, 0.1, "erf")
    rtol = 1e-11 if dtype == np.float64 else 1e-3
    for g, r in zip(runs[0], ref):
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * np.abs(r).max())


def test_train_step_rejects_bad_buffers():
    Z, W, u, y = _problem(1, 10, 2, 4, 3, False, np.float64, 0)
    H = np.zeros((1, 10, 6))
    with pytest.raises(ValueError, match="H must have shape"):
        eng.train_step(Z, W, u, y, H[:, :5], H.copy(), rows_per_sample=2, scale=1.0,
                       activation="erf", nthreads=1)
    with pytest.raises(ValueError, match=r"Z must be \(n \* 3, 4\)"):
        eng.train_step(Z, W, u, y, H, H.copy(), rows_per_sample=3, scale=1.0,
                       activation="erf", nthreads=1)
    with pytest.raises(TypeError, match="dtype"):
        eng.train_step(Z, W, u, y, H.astype(np.float32), H.copy(), rows_per_sample=2, scale=1.0,
                       activation="erf", nthreads=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_objectives_match_the_nets(dtype):
    # CNN and FC prepared objectives (the compiled step) against the nets' own passes
    rng = np.random.default_rng(0)
    g = lkr.PatchGeometry((12, 12), (4, 4), (4, 4))
    cnn = nets.CNNNet(geometry=g, width=7, seed=0, dtype=dtype)
    fc = nets.FCNet(20, 9, seed=0, dtype=dtype)
    for net, X in ((cnn, rng.standard_normal((11, 12, 12))), (fc, rng.standard_normal((11, 20)))):
        X = X.astype(dtype)
        y = rng.standard_normal(11).astype(dtype)
        p = {k: a.astype(dtype) for k, a in net.init_params(1, chains=2).items()}
        obj = net.prepare(X, dtype=dtype)
        f, grads = obj.value_and_grad(p, y)
        f0, g0 = net.value_and_grad(X, y, p)
        tol = 1e-12 if dtype == np.float64 else 1e-4
        np.testing.assert_allclose(f, f0, rtol=tol, atol=tol)
        for k in grads:
            np.testing.assert_allclose(grads[k], g0[k], rtol=tol, atol=tol * np.abs(g0[k]).max())


def test_langevin_cnn_identical_for_any_thread_count():
    rng = np.random.default_rng(0)
    g = lkr.PatchGeometry((16, 16), (4, 4), (4, 4))
    net = nets.CNNNet(geometry=g, width=32, seed=0)
    X, y = rng.standard_normal((120, 16, 16)), rng.standard_normal(120)
    before = lkr.get_num_threads()
    out = []
    try:
        for n in (1, 2, 4):
            lkr.set_num_threads(n)
            out.append(train.langevin(net, X, y, 0.1, lr=1e-3, steps=8, burn_in=0, chains=3,
                                      seed=5, progress=False))
    finally:
        lkr.set_num_threads(before)
    for r in out[1:]:
        for k in r.params:
            np.testing.assert_array_equal(r.params[k], out[0].params[k])
        np.testing.assert_array_equal(r.mean, out[0].mean)


# -- the noise --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_philox_normals_are_standard_normal(dtype):
    z = eng.philox_normals(400_000, dtype, 2024, 3, 11).astype(np.float64)
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-4
    # both tails reach out as far as 400k normals should (P(|z| > 4) = 6.3e-5: ~25 values)
    assert 5 < (np.abs(z) > 4).sum() < 60
    # uncorrelated neighbours, and across streams, steps and keys
    others = [eng.philox_normals(n, dtype, 2024, 4, 11), eng.philox_normals(n, dtype, 2024, 3, 12),
              eng.philox_normals(n, dtype, 2025, 3, 11)]
    for w in [z[1:]] + others:
        m = min(len(w), n - 1)
        assert abs(np.corrcoef(z[:m], w[:m])[0, 1]) < 5 / math.sqrt(m)


def test_langevin_update_is_the_formula_and_thread_independent():
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        a0 = rng.standard_normal(70_001).astype(dtype)
        g = rng.standard_normal(70_001).astype(dtype)
        xi = eng.philox_normals(a0.size, np.dtype(dtype).name, 9, 1, 4)
        outs = []
        for nt in (1, 2, 3):
            a = a0.copy()
            eng.langevin_update(a, g, decay=0.99, lr=0.01, amp=0.05, key=9, stream=1, step=4,
                                nthreads=nt)
            outs.append(a)
        ref = 0.99 * a0.astype(float) - 0.01 * g + 0.05 * xi
        tol = 1e-14 if dtype == np.float64 else 1e-6
        np.testing.assert_allclose(outs[0], ref, rtol=tol, atol=tol)
        for o in outs[1:]:
            np.testing.assert_array_equal(o, outs[0])
