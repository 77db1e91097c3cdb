"""Huge and tiny but finite inputs (issue 14, item 4): every kernel either gives the right
number or raises a ValueError naming the input's scale; never NaN, never a silently wrong
finite number.

Oracles: inputs are unit-scale X0 times a power of two a = 2^k, so that
* relu and linear, homogeneous of degree 2 in the inputs, satisfy K(a X0) = a^2 K(X0) exactly
  in real arithmetic (computed by tests/reference.py at unit scale, then scaled);
* erf has the analytic large-scale limit K -> (2/pi) arcsin(rho), rho the correlation
  c_xy / sqrt(c_xx c_yy) (independent of a), reached to double precision once c ~ 1e30; on
  the diagonal 2c / (1 + 2c) -> 1, so K -> 1.
"""
import math

import numpy as np
import pytest
from reference import (
    geometry_patches,
    ref_adjoint,
    ref_fc_nngp,
    ref_local_kernel,
    ref_renormalized,
    ref_renormalized_diag,
)

import lkr
from lkr import _scale

G = lkr.PatchGeometry((12,), 3, 3)  # Np = 4, M = 3
RNG = np.random.default_rng(14)
X0 = RNG.standard_normal((5, 12))
Y0 = RNG.standard_normal((3, 12))
Q = np.eye(4) + 0.3 * np.ones((4, 4))
W = RNG.standard_normal((5, 3))

# erf at float64 2^512 ~ 1.3e154 (the case: |x|^2 overflows), 2^600, 2^1000 ~ 1e301;
# float32 2^64 ~ 1.8e19 (|x|^2 ~ 3e38), 2^100 ~ 1.3e30.
CASES = [(np.float64, 512), (np.float64, 600), (np.float64, 1000), (np.float32, 64),
         (np.float32, 100)]
# relu / linear: the largest scale whose C = |x|^2 / M still fits (with room), by dtype
FITS = {np.float64: 500, np.float32: 60}


def _corr_limit(C, cx, cy):
    """(2/pi) arcsin(rho): the erf map as the covariances grow."""
    rho = C / np.sqrt(np.multiply.outer(cx, cy)) if np.ndim(C) == 2 else C
    return (2 / np.pi) * np.arcsin(np.clip(rho, -1, 1))


def _erf_limit_local(PX, PY):
    PX = np.asarray(PX, np.float64)
    PY = PX if PY is None else np.asarray(PY, np.float64)
    C = np.einsum("aik,bjk->abij", PX, PY)
    cx = np.einsum("aik,aik->ai", PX, PX)
    cy = np.einsum("bjk,bjk->bj", PY, PY)
    rho = C / np.sqrt(cx[:, None, :, None] * cy[None, :, None, :])
    return (2 / np.pi) * np.arcsin(np.clip(rho, -1, 1))


def _rtol(dtype):
    return 1e-11 if dtype == np.float64 else 2e-5


def assert_erf_close(K, want, dtype, scale=1.0):
    """K = (2/pi) arcsin(u) computed from a rounded u: near u = 1 (the diagonal in the limit)
    an ulp of u moves K by ~sqrt(eps), so compare u = sin(pi K / 2) to a few hundred eps and
    K itself to sqrt(eps). ``scale``: for contractions, the sum of |weights|."""
    eps = float(np.finfo(dtype).eps)
    K = np.asarray(K, np.float64)
    assert np.isfinite(K).all()
    np.testing.assert_allclose(K, want, rtol=0, atol=4 * math.sqrt(eps) * scale)
    if scale == 1.0:
        np.testing.assert_allclose(np.sin(np.pi / 2 * K), np.sin(np.pi / 2 * want), rtol=0,
                                   atol=300 * eps)


@pytest.mark.parametrize("dtype, k", CASES)
@pytest.mark.parametrize("two", [False, True])
def test_nngp_huge_inputs(dtype, k, two):
    X = np.ldexp(X0, k).astype(dtype)
    Y = np.ldexp(Y0, k).astype(dtype) if two else None
    K = lkr.nngp(X, Y, "erf")
    A, B = X0, (Y0 if two else X0)
    assert_erf_close(K, _corr_limit(A @ B.T, (A * A).sum(1), (B * B).sum(1)), dtype)
    if not two:
        assert_erf_close(np.diag(K), 1.0, dtype)
        np.testing.assert_array_equal(K, K.T)


def test_nngp_small_inputs_take_the_exact_map():
    """2^-490 (float64): rescaled internally, but C ~ 1e-295 is representable and the map
    must be the exact one, where 1 + 2c dominates: erf K = (4/pi) C_xy to first order."""
    k = -490
    X = np.ldexp(X0, k)
    C0 = X0 @ X0.T / 12
    np.testing.assert_allclose(lkr.nngp(X, None, "erf"), (4 / np.pi) * np.ldexp(C0, 2 * k),
                               rtol=1e-12)
    np.testing.assert_allclose(lkr.nngp(X, None, "linear"), np.ldexp(C0, 2 * k), rtol=1e-12)
    np.testing.assert_allclose(lkr.nngp(X, None, "relu"),
                               np.ldexp(ref_fc_nngp(X0, None, "relu"), 2 * k), rtol=1e-12)


@pytest.mark.parametrize("dtype, k", [(np.float64, -600), (np.float64, -1000), (np.float32, -70)])
def test_nngp_tiny_inputs(dtype, k):
    X = np.ldexp(X0, k).astype(dtype)
    for act in ("erf", "relu", "linear"):
        K = lkr.nngp(X, None, act)
        assert np.isfinite(K).all()
        # the true values are below the smallest normal number: at most subnormal noise
        assert np.abs(K).max() <= 1e3 * np.finfo(dtype).tiny


@pytest.mark.parametrize("dtype, k", CASES)
def test_local_kernels_huge_erf(dtype, k):
    X = np.ldexp(X0, k).astype(dtype)
    Y = np.ldexp(Y0, k).astype(dtype)
    PX, PY = geometry_patches(X0, G), geometry_patches(Y0, G)
    L = _erf_limit_local(PX, PY)
    assert_erf_close(lkr.local_kernel(X, Y, geometry=G), L, dtype)
    Kxx = lkr.local_kernel(X, geometry=G)
    ii = np.arange(4)
    assert_erf_close(Kxx[np.arange(5), np.arange(5)][:, ii, ii], 1.0, dtype)
    qs = np.abs(Q).sum() / 4
    assert_erf_close(lkr.renormalized_kernel(X, Y, Q=Q.astype(dtype), geometry=G),
                     np.einsum("abij,ij->ab", L, Q) / 4, dtype, qs)
    Lxx = _erf_limit_local(PX, None)
    assert_erf_close(lkr.renormalized_kernel_diag(X, Q=Q.astype(dtype), geometry=G),
                     np.einsum("aaij,ij->a", Lxx, Q) / 4, dtype, qs)
    assert_erf_close(lkr.local_kernel_adjoint(X, W.astype(dtype), geometry=G, Y=Y),
                     np.einsum("abij,ab->ij", L, W), dtype, np.abs(W).sum())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ["relu", "linear"])
def test_local_kernels_huge_homogeneous(dtype, act):
    """Large but representable: exact by homogeneity; beyond: a ValueError naming the scale."""
    k = FITS[dtype]  # |x|^2 ~ 2^1000 (f64), 2^120 (f32): representable
    X = np.ldexp(X0, k).astype(dtype)
    Y = np.ldexp(Y0, k).astype(dtype)
    PX, PY = geometry_patches(X0, G), geometry_patches(Y0, G)
    a2 = 2.0 ** (2 * k)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    want = ref_local_kernel(PX, PY, act) * a2
    got = lkr.local_kernel(X, Y, geometry=G, activation=act)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())
    want, _ = ref_renormalized(PX, PY, Q, act)
    got = lkr.renormalized_kernel(X, Y, Q=Q.astype(dtype), geometry=G, activation=act)
    np.testing.assert_allclose(got, want * a2, rtol=0, atol=tol * np.abs(want).max() * a2)
    want, _ = ref_renormalized_diag(PX, Q, act)
    got = lkr.renormalized_kernel_diag(X, Q=Q.astype(dtype), geometry=G, activation=act)
    np.testing.assert_allclose(got, want * a2, rtol=tol)
    want, _ = ref_adjoint(PX, PY, W, act)
    got = lkr.local_kernel_adjoint(X, W.astype(dtype), geometry=G, Y=Y, activation=act)
    np.testing.assert_allclose(got, want * a2, rtol=0, atol=tol * np.abs(want).max() * a2)
    want = ref_fc_nngp(X0, Y0, act)
    got = lkr.nngp(X, Y, act)
    np.testing.assert_allclose(got, want * a2, rtol=0, atol=tol * np.abs(want).max() * a2)
    # one more factor 2^40 and C no longer fits: every function says so, naming X's scale
    big = np.ldexp(X0, k + 40).astype(dtype)
    Qd, ones = Q.astype(dtype), np.ones((5, 5), dtype)
    calls = [lambda: lkr.local_kernel(big, geometry=G, activation=act),
             lambda: lkr.renormalized_kernel(big, Q=Qd, geometry=G, activation=act),
             lambda: lkr.renormalized_kernel_diag(big, Q=Qd, geometry=G, activation=act),
             lambda: lkr.local_kernel_adjoint(big, ones, geometry=G, activation=act),
             lambda: lkr.nngp(big, None, act)]
    for call in calls:
        with pytest.raises(ValueError, match=r"X has entries up to \d\.\d+e\+\d+.*rescale X"):
            call()


def test_result_overflow_from_Q_raises():
    """Representable inputs, but a K_R too large for float32 through Q: raise, not inf."""
    X = np.ldexp(X0, 50).astype(np.float32)  # C ~ 1e30: representable
    Qbig = np.full((4, 4), 1e10, dtype=np.float32)  # K_R ~ 1e40: not
    with pytest.raises(ValueError, match=r"renormalized_kernel overflows float32 for these "
                                         r"inputs \(max \|X\| = 3.*e\+15, max \|Q\| = 1e\+10\)"):
        lkr.renormalized_kernel(X, Q=Qbig, geometry=G, activation="relu")
    with pytest.raises(ValueError, match="local_kernel_adjoint overflows float32"):
        lkr.local_kernel_adjoint(X, np.full((5, 5), 1e10, np.float32), geometry=G,
                                 activation="relu")


@pytest.mark.parametrize("k", [-600, -1000])
def test_local_kernels_tiny_inputs(k):
    X = np.ldexp(X0, k)
    for act in ("erf", "relu", "linear"):
        for out in (lkr.local_kernel(X, geometry=G, activation=act),
                    lkr.renormalized_kernel(X, Q=Q, geometry=G, activation=act),
                    lkr.local_kernel_adjoint(X, np.ones((5, 5)), geometry=G, activation=act)):
            assert np.isfinite(out).all()
            assert np.abs(out).max() <= 1e3 * np.finfo(np.float64).tiny


def test_ordinary_inputs_are_bit_identical_to_the_unscaled_formulas():
    """The rescaling is by powers of two: scaling the inputs by 2^k scales relu and linear
    results by exactly 2^(2k), and leaves erf's limit behaviour alone (a property of exact
    rescaling that an approximate normalisation would break)."""
    X = X0.copy()
    for act in ("relu", "linear"):
        base = lkr.local_kernel(X, geometry=G, activation=act)
        np.testing.assert_array_equal(lkr.local_kernel(np.ldexp(X, 7), geometry=G, activation=act),
                                      np.ldexp(base, 14))
        base = lkr.nngp(X, None, act)
        np.testing.assert_array_equal(lkr.nngp(np.ldexp(X, 300), None, act), np.ldexp(base, 600))


def test_nngp_map_python_huge_covariances():
    c = np.array([1e300, 1e306])
    K = lkr.nngp_map("erf", c, c * 0.5, c)
    np.testing.assert_allclose(K, (2 / np.pi) * np.arcsin(0.5), rtol=1e-12)
    K = lkr.nngp_map("relu", c, c, c)
    np.testing.assert_allclose(K, c / 2, rtol=1e-12)


def test_scale_helpers():
    assert _scale.exponent(1.0, np.float64, 100) == 0
    assert _scale.exponent(1e200, np.float64, 100) == math.frexp(1e200)[1]
    assert _scale.exponent(0.0, np.float32, 10) == 0
    assert _scale.row_exponents(X0, np, np.float64, 12) is None
    e = _scale.row_exponents(np.ldexp(X0, 700), np, np.float64, 12)
    assert e is not None and (np.abs(np.ldexp(X0, 700 - e[:, None])).max(1) < 1).all()


@pytest.mark.parametrize("call", ["nngp", "local_kernel", "renormalized_kernel",
                                  "renormalized_kernel_diag", "local_kernel_adjoint"])
def test_nan_is_reported_at_the_inputs_own_index(call):
    """Issue 14, item 7: (sample, row, column) of a 2-d input, not (sample, patch, entry)."""
    g = lkr.PatchGeometry((6, 6), (2, 2), (2, 2))
    X = RNG.standard_normal((3, 6, 6))
    X[2, 4, 1] = np.nan
    Qg, Wg = np.eye(9), np.ones((3, 3))
    f = {"nngp": lambda: lkr.nngp(X),
         "local_kernel": lambda: lkr.local_kernel(X, geometry=g),
         "renormalized_kernel": lambda: lkr.renormalized_kernel(X, Q=Qg, geometry=g),
         "renormalized_kernel_diag": lambda: lkr.renormalized_kernel_diag(X, Q=Qg, geometry=g),
         "local_kernel_adjoint": lambda: lkr.local_kernel_adjoint(X, Wg, geometry=g)}[call]
    with pytest.raises(ValueError, match=r"^X has 1 non-finite value\(s\) \(NaN or inf\), "
                                         r"first at index \(2, 4, 1\)$"):
        f()
    if call != "nngp":
        Y = RNG.standard_normal((2, 6, 6))
        Y[1, 0, 5] = np.inf
        with pytest.raises(ValueError, match=r"^Y has 1 non-finite .*first at index \(1, 0, 5\)$"):
            lkr.local_kernel(X[:2] * 0 + 1, Y, geometry=g)
