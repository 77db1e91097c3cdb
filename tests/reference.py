"""Plain NumPy references for lkr's kernels, written from docs/theory.md section 2 and
independent of lkr's own code: patches by explicit slicing with wrap-around (not
PatchGeometry.patch_index), the NNGP maps spelt out with np.arcsin / np.arccos, the
4-index tensor by einsum, and K_R, its diagonal and G as contractions of that tensor.

Everything is computed in float64 (or longer) whatever the input dtype: these are the
oracle, not a peer in speed.
"""
from __future__ import annotations

import math

import numpy as np

# -- patches ------------------------------------------------------------------------------


def patch_starts(n, m, s, boundary):
    """Start offsets of the patches along one axis of n sites (filter m, stride s)."""
    if boundary == "periodic":
        count = n // s
    elif boundary == "valid":
        count = (n - m) // s + 1
    else:
        raise ValueError(boundary)
    return [s * i for i in range(count)]


def to_spatial(X, input_shape, channels, layout):
    """Bring inputs of any accepted shape to (P, *input_shape, C), channels last."""
    X = np.asarray(X)
    P = X.shape[0]
    spatial = tuple(input_shape)
    if X.ndim == 2 and X.shape[1] == int(np.prod(spatial)) * channels:
        if layout == "channels_first":
            return np.moveaxis(X.reshape((P, channels) + spatial), 1, -1)
        return X.reshape((P,) + spatial + (channels,))
    if X.ndim == 1 + len(spatial):
        assert channels == 1
        return X[..., None]
    if layout == "channels_first":
        return np.moveaxis(X, 1, -1)
    return X


def ref_patches(X, input_shape, filter_size, stride, channels=1, boundary="periodic",
                layout="channels_last"):
    """(P, Np, M) patches by slicing: patch i of a 1D input is x[S i : S i + m] (mod N0
    when periodic); 2D patches in row-major grid order with entries (row, col, channel)."""
    Xs = to_spatial(X, input_shape, channels, layout).astype(np.float64)
    P = Xs.shape[0]
    if len(input_shape) == 1:
        (n,), (m,), (s,) = input_shape, filter_size, stride
        out = []
        for a in patch_starts(n, m, s, boundary):
            rows = [(a + k) % n for k in range(m)]
            out.append(Xs[:, rows, :].reshape(P, -1))
        return np.stack(out, axis=1)
    (h, w), (mh, mw), (sh, sw) = input_shape, filter_size, stride
    out = []
    for a in patch_starts(h, mh, sh, boundary):
        for b in patch_starts(w, mw, sw, boundary):
            rows = [(a + k) % h for k in range(mh)]
            cols = [(b + k) % w for k in range(mw)]
            out.append(Xs[:, rows][:, :, cols].reshape(P, -1))
    return np.stack(out, axis=1)


def geometry_patches(X, g):
    """ref_patches with the settings of a PatchGeometry (read as plain attributes only)."""
    return ref_patches(X, g.input_shape, g.filter_size, g.stride, g.channels, g.boundary,
                       g.layout)


# -- NNGP maps ---------------------------------------------------------------------------


def ref_map(activation, cxx, cxy, cyy):
    """K_sigma(c_xx, c_xy, c_yy) exactly as docs/theory.md writes it."""
    cxx, cxy, cyy = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (cxx, cxy, cyy)))
    if activation == "linear":
        return cxy.copy()
    if activation == "erf":
        arg = 2 * cxy / np.sqrt((1 + 2 * cxx) * (1 + 2 * cyy))
        return (2 / np.pi) * np.arcsin(np.clip(arg, -1, 1))
    if activation == "relu":
        prod = cxx * cyy
        out = np.zeros_like(cxy)
        ok = prod > 0
        n = np.sqrt(prod[ok])
        u = np.clip(cxy[ok] / n, -1, 1)
        out[ok] = n / (2 * np.pi) * (u * (np.pi - np.arccos(u)) + np.sqrt((1 - u) * (1 + u)))
        return out
    raise ValueError(activation)


SIGMA = {
    "linear": lambda h: h,
    "erf": lambda h: _erf(h),
    "relu": lambda h: np.maximum(h, 0),
}


def _erf(x):
    from scipy.special import erf

    return erf(x)


def monte_carlo_map(activation, cxx, cxy, cyy, n=400_000, seed=0):
    """E[sigma(u) sigma(v)] for centred Gaussian (u, v) with the given covariance, and the
    standard error of the estimate."""
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(np.array([[cxx, cxy], [cxy, cyy]], dtype=np.float64))
    uv = rng.standard_normal((n, 2)) @ L.T
    s = SIGMA[activation]
    prod = s(uv[:, 0]) * s(uv[:, 1])
    return prod.mean(), prod.std() / np.sqrt(n)


# -- kernels -------------------------------------------------------------------------------


def ref_fc_nngp(X, Y=None, activation="erf", lambda0=1.0):
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = X if Y is None else np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
    N0 = X.shape[1]
    C = X @ Y.T / (lambda0 * N0)
    cx = np.einsum("pk,pk->p", X, X) / (lambda0 * N0)
    cy = np.einsum("pk,pk->p", Y, Y) / (lambda0 * N0)
    return ref_map(activation, cx[:, None], C, cy[None, :])


def ref_local_kernel(PX, PY=None, activation="erf", lambda0=1.0):
    """K[mu, nu, i, j] = K_sigma(C_ii^{mu mu}, C_ij^{mu nu}, C_jj^{nu nu}) from patch
    tensors (P, Np, M), C_ij^{mu nu} = x_i^mu . x_j^nu / (lambda0 M)."""
    PX = np.asarray(PX, dtype=np.float64)
    PY = PX if PY is None else np.asarray(PY, dtype=np.float64)
    M = PX.shape[2]
    C = np.einsum("aik,bjk->abij", PX, PY) / (lambda0 * M)
    cx = np.einsum("aik,aik->ai", PX, PX) / (lambda0 * M)
    cy = np.einsum("bjk,bjk->bj", PY, PY) / (lambda0 * M)
    return ref_map(activation, cx[:, None, :, None], C, cy[None, :, None, :])


def ref_bound(PX, PY=None, activation="erf", lambda0=1.0):
    """sqrt(K_ii^{mu mu} K_jj^{nu nu}): the Cauchy-Schwarz bound of |K_ij^{mu nu}| (K is a
    covariance), and the natural scale of its rounding error, which is that of the patch dot
    product u = z_i . z_j (about M eps |z_i| |z_j|), however small K itself is."""
    PX = np.asarray(PX, dtype=np.float64)
    PY = PX if PY is None else np.asarray(PY, dtype=np.float64)
    M = PX.shape[2]
    cx = np.einsum("aik,aik->ai", PX, PX) / (lambda0 * M)
    cy = np.einsum("bjk,bjk->bj", PY, PY) / (lambda0 * M)
    kx, ky = ref_map(activation, cx, cx, cx), ref_map(activation, cy, cy, cy)
    return np.sqrt(np.abs(kx)[:, None, :, None] * np.abs(ky)[None, :, None, :])


def ref_renormalized(PX, PY, Q, activation="erf", lambda0=1.0, lambda1=1.0):
    """K_R(Q)^{mu nu} = (1/(lambda1 Np)) sum_ij Q_ij K_ij^{mu nu}, and its error scale
    (1/(lambda1 Np)) sum_ij |Q_ij| sqrt(K_ii^{mu mu} K_jj^{nu nu})."""
    K = ref_local_kernel(PX, PY, activation, lambda0)
    Np = K.shape[2]
    Q = np.asarray(Q, dtype=np.float64)
    val = np.einsum("abij,ij->ab", K, Q) / (lambda1 * Np)
    B = ref_bound(PX, PY, activation, lambda0)
    scale = np.einsum("abij,ij->ab", B, np.abs(Q)) / (lambda1 * Np)
    return val, scale


def ref_renormalized_diag(PX, Q, activation="erf", lambda0=1.0, lambda1=1.0):
    PX = np.asarray(PX, dtype=np.float64)
    vals, scales = [], []
    for mu in range(PX.shape[0]):
        v, s = ref_renormalized(PX[mu:mu + 1], None, Q, activation, lambda0, lambda1)
        vals.append(v[0, 0])
        scales.append(s[0, 0])
    return np.array(vals), np.array(scales)


def ref_adjoint(PX, PY, W, activation="erf", lambda0=1.0):
    """G(W)_ij = sum_{mu nu} W_{mu nu} K_ij^{mu nu}, and its error scale (sum of |W| times
    the bound of |K|)."""
    K = ref_local_kernel(PX, PY, activation, lambda0)
    W = np.asarray(W, dtype=np.float64)
    B = ref_bound(PX, PY, activation, lambda0)
    return np.einsum("abij,ab->ij", K, W), np.einsum("abij,ab->ij", B, np.abs(W))


def ref_fc_bound(X, Y=None, activation="erf", lambda0=1.0):
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = X if Y is None else np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
    cx = np.einsum("pk,pk->p", X, X) / (lambda0 * X.shape[1])
    cy = np.einsum("pk,pk->p", Y, Y) / (lambda0 * X.shape[1])
    return np.sqrt(np.abs(ref_map(activation, cx, cx, cx))[:, None]
                   * np.abs(ref_map(activation, cy, cy, cy))[None, :])


def assert_close(actual, expected, scale, rtol, what=""):
    """|actual - expected| <= rtol * scale elementwise (scale: the sum of magnitudes that
    enter each entry, so that cancellations do not make a correct result look wrong)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), expected.shape)
    tol = rtol * (scale + 1e-300)
    err = np.abs(actual - expected)
    bad = err > tol
    if bad.any():
        k = np.unravel_index(np.argmax(err / tol), err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} entries off; worst at {k}: "
                             f"{actual[k]!r} vs {expected[k]!r} (scale {scale[k]:.3g}, "
                             f"rel err {err[k] / (scale[k] + 1e-300):.3g} > {rtol:g})")


# -- zero ("same") and circular padding, by numpy.pad and sliding windows -------------
def np_same_pads(n, m, s):
    """TF's rule written out: out = ceil(n / s), total = max((out-1) s + m - n, 0)."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + m - n, 0)
    return out, total // 2, total - total // 2


def ref_padded_patches(Xc, filt, stride, boundary):
    """(P, Np, M) from a channels-last (P, *spatial, C) array: pad (zeros or wrap) with
    numpy.pad, then take valid windows at stride S by slicing."""
    spatial = Xc.shape[1:-1]
    pads, outs = [], []
    for n, m, s in zip(spatial, filt, stride):
        out, left, right = np_same_pads(n, m, s)
        pads.append((left, right))
        outs.append(out)
    mode = "constant" if boundary == "same" else "wrap"
    Xp = np.pad(Xc.astype(np.float64), [(0, 0)] + pads + [(0, 0)], mode=mode)
    P = Xc.shape[0]
    if len(spatial) == 1:
        return np.stack([Xp[:, stride[0] * i: stride[0] * i + filt[0]].reshape(P, -1)
                         for i in range(outs[0])], axis=1)
    return np.stack([Xp[:, stride[0] * a: stride[0] * a + filt[0],
                        stride[1] * b: stride[1] * b + filt[1]].reshape(P, -1)
                     for a in range(outs[0]) for b in range(outs[1])], axis=1)
